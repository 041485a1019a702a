"""`lab`: the terminal front door. Exit codes: 0 ok, 1 failure (or a node in the wrong state
for the verb), 2 bad input; `lab exec` ends with its command's status, 124 after --timeout.

Every refusal and failure is one line on stderr, ``lab: ...``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lab.backend import BACKENDS, BackendError
from lab.container import ContainerError
from lab.lab import (
    DEFAULT_TOPOLOGY,
    PROFILES,
    ConfigurationError,
    Lab,
    LabExists,
    LabNotFound,
    resolve_lab_name,
)
from lab.node import Node, NodeError, exited
from lab.stack import available_stacks
from lab.state import LabStateError, ProcessRef, check_lab_name, known_labs, teardown
from lab.topology import TopologyError, load_topology
from lab.wait import WaitTimeout, wait_for

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
EXIT_TIMEOUT = 124  # as coreutils `timeout`: the command was killed after --timeout
# modules that add their own subcommands with `register(subparsers)`, if present
COMMAND_MODULES = ("lab.services.cli", "lab.replicator.cli", "lab.probes.cli", "lab.faults_cli",
                   "lab.image.cli",
                   "lab.report_cli")
NODE_FAULTS = ("crash", "start", "shutdown", "reboot", "freeze", "thaw")

console = Console()
err = Console(stderr=True, soft_wrap=True)


class BadInput(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return handler(args)
    except (TopologyError, ConfigurationError) as exc:
        for problem in exc.problems:
            err.print(problem, markup=False, highlight=False)
        return EXIT_BAD_INPUT
    except (BadInput, ValueError, LabNotFound, LabExists, KeyError) as exc:
        err.print(f"lab: {exc.args[0] if exc.args else exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    except (LabStateError, NodeError, WaitTimeout, OSError, ContainerError, BackendError) as exc:
        err.print(f"lab: {exc}", markup=False, highlight=False)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        err.print("lab: interrupted")
        return EXIT_FAILURE
    except Exception as exc:  # one line, not a traceback; LAB_DEBUG=1 shows it
        if os.environ.get("LAB_DEBUG"):
            raise
        err.print(f"lab: {type(exc).__name__}: {exc} (LAB_DEBUG=1 shows where)", markup=False,
                  highlight=False)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="hapair-lab: the seed's HA "
                                     "DNS/DHCP pair in namespaces, and the faults to break it")
    sub = parser.add_subparsers(metavar="COMMAND")

    def named(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--name", help="which lab (default: $LAB_NAME, or the only one up)")
        return p

    up = named(sub.add_parser("up", help="bring a lab up"))
    up.add_argument("--profile", choices=PROFILES, default="seed")
    up.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    up.add_argument("--stack", choices=["none", "seed"], default=None,
                    help="services to run (default: seed when available)")
    up.add_argument("--keep-finding", action="append", default=[], metavar="ID",
                    help="leave the seed's problem ID unfixed (see `lab findings`), e.g. F1")
    up.add_argument("--backend", choices=BACKENDS, default=None,
                    help="what a node is: namespaces around the host's userland, or a Docker "
                         "container from a node image (default: $LAB_BACKEND or namespace)")
    up.add_argument("--image", default=None,
                    help="the node image for --backend docker (default: hapair-node:bookworm; "
                         "`lab image build` makes it)")
    up.set_defaults(handler=cmd_up)

    down = named(sub.add_parser("down", help="remove a lab and everything it made"))
    down.add_argument("--all", action="store_true", help="every lab on this machine")
    down.set_defaults(handler=cmd_down)

    sub.add_parser("list", help="labs on this machine").set_defaults(handler=cmd_list)

    status = named(sub.add_parser("status", help="nodes, addresses, services"))
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    exe = named(sub.add_parser("exec", help="run a command inside a node"))
    exe.add_argument("--timeout", type=float, metavar="S",
                     help="kill the command after S seconds (exit 124); on a frozen node, "
                          "wait up to S seconds for it to be thawed")
    exe.add_argument("node")
    exe.add_argument("command", nargs=argparse.REMAINDER)
    exe.set_defaults(handler=cmd_exec)

    shell = named(sub.add_parser("shell", help="an interactive shell inside a node"))
    shell.add_argument("node")
    shell.set_defaults(handler=cmd_shell)

    doctor = sub.add_parser("doctor", help="what this machine can do for a lab")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(handler=cmd_doctor)

    for fault in NODE_FAULTS:
        p = named(sub.add_parser(fault, help=f"{fault} a node"))
        p.add_argument("node")
        p.set_defaults(handler=cmd_node_fault, fault=fault)
    for verb, help_text in (("cut", "pull a cable (NODE:PORT) or take a VLAN off (NODE:IFACE)"),
                            ("heal", "undo a cut (NODE:IFACE), end a fault (FAULT-ID), or --all")):
        p = named(sub.add_parser(verb, help=help_text))
        p.add_argument("target", metavar="NODE:IFACE" if verb == "cut" else "NODE:IFACE|FAULT-ID",
                       nargs=None if verb == "cut" else "?")
        if verb == "heal":
            p.add_argument("--all", action="store_true",
                           help="end every fault in force and plug every cable and VLAN back")
        p.set_defaults(handler=cmd_cut, verb=verb)

    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


# -- commands --------------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    topology = load_topology(args.topology)
    stack = args.stack or ("seed" if "seed" in available_stacks() else "none")
    name = args.name or os.environ.get("LAB_NAME") or "hapair"
    options = {"keep_findings": args.keep_finding} if stack == "seed" else {}
    lab = Lab.create(name, topology, profile=args.profile, stack=stack, backend=args.backend,
                     image=args.image, **options)
    started = time.monotonic()
    with console.status(f"[bold]lab {name}[/]: starting") as spinner:
        last = [started]

        def progress(step: str) -> None:
            now = time.monotonic()
            spinner.update(f"[bold]lab {name}[/]: {step}")
            last[0] = now
        lab.up(progress)
    console.print(f"lab [bold]{name}[/] up in {time.monotonic() - started:.1f} s "
                  f"(profile {args.profile}, stack {stack}, backend {lab.backend.name})")
    print_status(lab.status())
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    names = known_labs() if args.all else [_existing_lab(resolve_lab_name(args.name))]
    if not names:
        console.print("no labs to remove")
    for name in names:
        done = teardown(name)
        console.print(f"lab [bold]{name}[/] removed" + (f" ({len(done)} steps)" if done else ""))
    if args.all:
        _stop_own_dockerd()
    return EXIT_OK


def _stop_own_dockerd() -> None:
    """The lab's own Docker engine goes with the last lab: it is something the lab started.
    Left running (and said so) while containers of labs elsewhere still use it."""
    from lab import dockerd
    if dockerd.external_host() or dockerd.running() is None:
        return
    try:
        console.print(f"the lab's Docker engine: {dockerd.stop()}")
    except dockerd.DockerUnavailable as exc:
        console.print(f"the lab's Docker engine keeps running: {exc}")


def _existing_lab(name: str) -> str:
    """`name` if such a lab exists on this machine, even half-made (so `down` can remove it)."""
    check_lab_name(name)
    if name not in known_labs():
        raise LabNotFound(f"no lab named {name!r} (see `lab list`)")
    return name


def cmd_list(args: argparse.Namespace) -> int:
    table = Table("lab", "profile", "stack", "backend", "nodes running")
    for name in known_labs():
        try:
            lab = Lab.attach(name)
            running = sum(1 for n in lab if n.state != "stopped")
            table.add_row(name, lab.profile, lab.stack_name, lab.backend.name,
                          f"{running}/{len(lab.nodes)}")
        except (LabNotFound, LabStateError, TopologyError):
            table.add_row(name, "?", "?", "?", "half-made: `lab down --name " + name + "`")
    console.print(table)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    lab = Lab.attach(resolve_lab_name(args.name))
    status = lab.status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print_status(status)
    return EXIT_OK


def print_status(status: dict[str, Any]) -> None:
    backend = status.get("backend", "namespace")
    shown_backend = f" · {backend}" + (f" {status['image']}" if status.get("image") else "")
    table = Table(title=f"lab {status['name']} · {status['network_mode']} · "
                        f"profile {status['profile']}{shown_backend}")
    table.add_column("node")
    table.add_column("role")
    table.add_column("state")
    table.add_column("addresses")
    with_machines = any(n.get("container") for n in status["nodes"].values())
    if with_machines:
        table.add_column("container")
    colours = {"running": "green", "frozen": "cyan", "stopped": "red"}
    for name, node in status["nodes"].items():
        addresses = []
        for iface, addrs in node.get("interfaces", {}).items():
            shown = [a for a in addrs if not a.startswith("fe80")]
            addresses.append(f"{iface}: {', '.join(shown) or '-'}")
        state = node["state"]
        machine = [f"{node.get('container') or '-'}\n{node.get('image', '')}"] \
            if with_machines else []
        table.add_row(name, node.get("role", ""), f"[{colours.get(state, 'white')}]{state}[/]",
                      "\n".join(addresses), *machine)
    console.print(table)
    if "services" in status or "drbd" in status:
        console.print(services_table(status))


def services_table(status: dict[str, Any]) -> Table:
    """One row per server: what heartbeat gave it (VIPs, disk, daemons) and DRBD's view."""
    vips = status.get("vip", {})
    table = Table(title="the HA pair")
    columns = ["server", "VIPs", "DRBD", "mounted", "heartbeat", "dnsmasq", "ddclient"]
    firewall = status.get("firewall") or {}
    if firewall:
        columns.append("firewall")
    for column in columns:
        table.add_column(column, no_wrap=column == "VIPs")

    def mark(value: Any) -> str:
        return "[green]yes[/]" if value else "[dim]no[/]"
    for node, services in sorted(status.get("services", {}).items()):
        drbd = status.get("drbd", {}).get(node) or {}
        held = [vip for vip, holder in vips.items() if holder == node]
        table.add_row(node, "\n".join(held) or "-",
                      f"{drbd.get('role', '?')} {drbd.get('cstate', '?')}/"
                      f"{drbd.get('dstate', '?')}" if drbd else "-",
                      ", ".join(status.get("mounts", {}).get(node, [])) or "-",
                      mark(services.get("heartbeat")), mark(services.get("dnsmasq")),
                      mark(services.get("ddclient")),
                      *([firewall_cell(firewall.get(node))] if firewall else []))
    unheld = [vip for vip, holder in vips.items() if not holder]
    if unheld:
        table.caption = f"held by nobody: {', '.join(unheld)}"
    return table


def firewall_cell(fw: dict[str, Any] | None) -> str:
    """The seed's ufw on one server: loaded or not, its rules, what its policy denied
    (`lab fw NODE` lists every rule with its counters)."""
    if not fw:
        return "-"
    if not fw.get("active"):
        return "[red]not loaded[/]"
    return f"ufw, {fw.get('rules', 0)} rules\n{fw.get('denied', 0)} denied"


def _node(args: argparse.Namespace) -> Node:
    lab = Lab.attach(resolve_lab_name(args.name))
    if args.node not in lab.nodes:
        raise BadInput(f"lab {lab.name} has no node {args.node!r} (nodes: "
                       f"{', '.join(lab.nodes)})")
    return lab[args.node]


def cmd_exec(args: argparse.Namespace) -> int:
    """Run a command in a node and end with it: its exit status, 124 after --timeout, 128+N
    on signal N (forwarded to the command's process group, which is then killed)."""
    command = _exec_command(args)
    node = _node(args)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    if not _thawed_by(node, deadline):
        err.print(f"lab: {node.name} stayed frozen for {args.timeout:g} s (--timeout)",
                  markup=False, highlight=False)
        return EXIT_TIMEOUT
    with Supervisor() as supervisor:
        process = node.popen(command, start_new_session=True)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        status = supervisor.wait(process, left, group=True)
    if supervisor.timed_out:
        err.print(f"lab: {node.name}: `{shlex.join(command)}` killed after {args.timeout:g} s "
                  "(--timeout)", markup=False, highlight=False)
    return status


def _exec_command(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise BadInput("exec: give a command after the node, e.g. `lab exec c1 -- ip addr`")
    if args.timeout is not None and not args.timeout > 0:
        raise BadInput(f"exec: --timeout must be a positive number of seconds, not "
                       f"{args.timeout:g}")
    return command


def _thawed_by(node: Node, deadline: float | None) -> bool:
    """Whether `node` is not frozen (now, or by `deadline` if one is given). Without a
    deadline a frozen node is refused at once: a command there would hang until the thaw."""
    if node.state != "frozen":
        return True
    if deadline is None:
        raise NodeError(f"{node.name} is frozen: `lab thaw {node.name}` first, or --timeout S "
                        "to wait")
    try:
        wait_for(lambda: node.state, until=lambda state: state != "frozen",
                 timeout=max(0.0, deadline - time.monotonic()),
                 what=f"{node.name} to be thawed")
    except WaitTimeout:
        return False
    return True


def cmd_shell(args: argparse.Namespace) -> int:
    node = _node(args)
    if node.state == "frozen":
        raise NodeError(f"{node.name} is frozen: `lab thaw {node.name}` first")
    env = {**os.environ, "PS1": f"[lab {node.lab.name}:{node.name}] \\w# "}
    # Ctrl-C belongs to the shell (it runs in the terminal's foreground): lab ignores it
    with Supervisor((signal.SIGTERM, signal.SIGHUP), ignored=(signal.SIGINT,)) as supervisor:
        process = node.popen(["bash", "--norc", "-i"], env=env, stdin=None)
        return supervisor.wait(process, None, group=False)


class _Signalled(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Supervisor:
    """Runs while lab waits for a command it started in a node, so that lab ends with it.

    One of `signals` sent to lab is forwarded to the command, which is then stopped, and lab
    returns 128+N: lab never outlives its signal, nor leaves its command behind. The handlers
    are installed before the command starts, so a signal that arrives meanwhile is acted on
    once the command exists instead of killing lab between fork and exec. `ignored` signals
    are ignored while lab waits (only then: an ignored signal is inherited across exec, and the
    command must not start with it ignored)."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP),
                 ignored: tuple[int, ...] = ()) -> None:
        self.signals = signals
        self.ignored = ignored
        self.pending: int | None = None
        self.armed = False
        self.timed_out = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Supervisor:
        for sig in self.signals:
            self.previous[sig] = signal.signal(sig, self._caught)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _caught(self, signum: int, frame: Any) -> None:
        if self.armed:
            raise _Signalled(signum)
        self.pending = self.pending or signum

    def wait(self, process: subprocess.Popen[Any], timeout: float | None, group: bool) -> int:
        """The command's exit status as a shell gives it (128+N when signal N ended it); after
        `timeout` seconds it is stopped and 124 returned (coreutils `timeout`'s status).
        `group`: the command has a process group of its own, and the whole group is signalled;
        otherwise only it and its own children."""
        for sig in self.ignored:
            self.previous.setdefault(sig, signal.signal(sig, signal.SIG_IGN))
        self.armed = True
        try:
            if self.pending is not None:
                raise _Signalled(self.pending)
            return _shell_status(process.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self._stop(process, signal.SIGTERM, group)
            return EXIT_TIMEOUT
        except _Signalled as caught:
            self._stop(process, caught.signum, group)
            return 128 + caught.signum

    def _stop(self, process: subprocess.Popen[Any], first: int, group: bool) -> None:
        for sig in self.signals:
            signal.signal(sig, signal.SIG_IGN)
        _stop(process, first, group)


def _stop(process: subprocess.Popen[Any], first: int, group: bool, grace: float = 2.0) -> None:
    """Send `first` to the command, SIGKILL whatever of it still runs after `grace` seconds,
    and reap `nsenter`. Bounded even in a node frozen meanwhile (a frozen process dies only on
    thaw: lab leaves it its pending SIGKILL and ends)."""
    # taken before any signal: once `nsenter` dies its child is no longer listed as its own
    targets = [ref for pid in [process.pid, *_children(process.pid)]
               if (ref := _ref(pid)) is not None]
    _signal_command(process.pid, targets, first, group)
    try:
        wait_for(lambda: all(exited(ref) for ref in targets), timeout=grace,
                 what="the command to end")
    except WaitTimeout:
        _signal_command(process.pid, targets, signal.SIGKILL, group)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1.0)


def _signal_command(pgid: int, targets: list[ProcessRef], sig: int, group: bool) -> None:
    """Signal what lab started: `nsenter` and the command it forked inside the node (its only
    child), and with `group` their whole process group, which lab made theirs alone."""
    if group:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for ref in targets:
        ref.kill(sig)


def _ref(pid: int) -> ProcessRef | None:
    try:
        return ProcessRef.of(pid)
    except LabStateError:
        return None


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _shell_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def cmd_doctor(args: argparse.Namespace) -> int:
    from lab import doctor
    checks = doctor.run_checks()
    mode, why = doctor.vlan_mode()
    disk = doctor.replicated_disk_mode()
    if args.json:
        print(json.dumps({"checks": [c.__dict__ for c in checks], "vlan_mode": mode,
                          "vlan_mode_reason": why, "replicated_disk": disk}, indent=2))
    else:
        table = Table("check", "", "detail", title="lab doctor")
        for c in checks:
            mark = "[green]ok[/]" if c.ok else ("[red]MISSING[/]" if c.required
                                               else "[yellow]no[/]")
            table.add_row(c.name, mark, c.detail)
        table.add_row("VLAN mode", "[green]ok[/]", f"{mode}: {why}")
        table.add_row("replicated disk", "[green]ok[/]", disk)
        console.print(table)
    return EXIT_OK if all(c.ok or not c.required for c in checks) else EXIT_FAILURE


# what a node verb that had nothing to do says instead of "done"
NOTHING_TO_DO = {"freeze": "already frozen", "thaw": "not frozen, nothing to thaw",
                 "cut": "already cut", "heal": "not cut, nothing to heal"}


def cmd_node_fault(args: argparse.Namespace) -> int:
    node = _node(args)
    started = time.monotonic()
    changed = getattr(node, args.fault)()
    if changed is False:
        console.print(f"{node.name}: {NOTHING_TO_DO[args.fault]} (now {node.state})")
        return EXIT_OK
    console.print(f"{node.name}: {args.fault} done in {time.monotonic() - started:.2f} s "
                  f"(now {node.state})")
    return EXIT_OK


def cmd_cut(args: argparse.Namespace) -> int:
    if args.verb == "heal" and (args.all or (args.target and ":" not in args.target)):
        return cmd_heal_faults(args)
    if args.target is None:
        raise BadInput("heal: give NODE:IFACE, a fault id (see `lab faults`), or --all")
    node_name, sep, iface = args.target.partition(":")
    if not sep or not iface:
        raise BadInput(f"{args.verb}: expected NODE:IFACE, e.g. lsvm1:enp2s1, not "
                       f"{args.target!r}")
    args.node = node_name
    node = _node(args)
    changed = (node.block if args.verb == "cut" else node.unblock)(iface)
    if not changed:
        console.print(f"{node.name}:{iface} {NOTHING_TO_DO[args.verb]}")
    else:
        console.print(f"{node.name}:{iface} {'cut' if args.verb == 'cut' else 'healed'}")
    return EXIT_OK


def cmd_heal_faults(args: argparse.Namespace) -> int:
    """`lab heal --all` / `lab heal FAULT-ID`: end nemesis faults (partitions, loss, disk
    errors) and, with --all, put every running node's cables and VLANs back."""
    from lab.faults import FaultError, Nemesis

    if args.all and args.target:
        raise BadInput("heal: give either a target or --all, not both")
    nemesis = Nemesis(Lab.attach(resolve_lab_name(args.name)))
    if args.all:
        ended = nemesis.heal_all()
        console.print(f"healed: {', '.join(ended) or 'no faults were in force'}; every cable "
                      "and VLAN plugged back")
        return EXIT_OK
    if args.target not in nemesis.open_faults():
        raise BadInput(f"heal: no fault {args.target!r} in force (see `lab faults`)")
    try:
        nemesis.stop(args.target)
    except FaultError as exc:
        raise LabStateError(str(exc)) from exc
    console.print(f"{args.target} ended")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
