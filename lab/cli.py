"""`lab`: the terminal front door. Exit codes: 0 ok, 1 failure, 2 bad input."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from lab.lab import (
    DEFAULT_TOPOLOGY,
    PROFILES,
    ConfigurationError,
    Lab,
    LabExists,
    LabNotFound,
    resolve_lab_name,
)
from lab.node import NodeError
from lab.stack import available_stacks
from lab.state import LabStateError, known_labs, teardown
from lab.topology import TopologyError, load_topology
from lab.wait import WaitTimeout

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
# modules that add their own subcommands with `register(subparsers)`, if present
COMMAND_MODULES = ("lab.services.cli", "lab.replicator.cli", "lab.probes.cli", "lab.faults_cli")
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
    except (LabStateError, NodeError, WaitTimeout, OSError) as exc:
        err.print(f"lab: {exc}", markup=False, highlight=False)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        err.print("lab: interrupted")
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
    up.set_defaults(handler=cmd_up)

    down = named(sub.add_parser("down", help="remove a lab and everything it made"))
    down.add_argument("--all", action="store_true", help="every lab on this machine")
    down.set_defaults(handler=cmd_down)

    sub.add_parser("list", help="labs on this machine").set_defaults(handler=cmd_list)

    status = named(sub.add_parser("status", help="nodes, addresses, services"))
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    exe = named(sub.add_parser("exec", help="run a command inside a node"))
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
                            ("heal", "undo a cut")):
        p = named(sub.add_parser(verb, help=help_text))
        p.add_argument("target", metavar="NODE:IFACE")
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
    lab = Lab.create(name, topology, profile=args.profile, stack=stack, **options)
    started = time.monotonic()
    with console.status(f"[bold]lab {name}[/]: starting") as spinner:
        last = [started]

        def progress(step: str) -> None:
            now = time.monotonic()
            spinner.update(f"[bold]lab {name}[/]: {step}")
            last[0] = now
        lab.up(progress)
    console.print(f"lab [bold]{name}[/] up in {time.monotonic() - started:.1f} s "
                  f"(profile {args.profile}, stack {stack})")
    print_status(lab.status())
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    names = known_labs() if args.all else [resolve_lab_name(args.name)]
    if not names:
        console.print("no labs to remove")
    for name in names:
        done = teardown(name)
        console.print(f"lab [bold]{name}[/] removed" + (f" ({len(done)} steps)" if done else ""))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    table = Table("lab", "profile", "stack", "nodes running")
    for name in known_labs():
        try:
            lab = Lab.attach(name)
            running = sum(1 for n in lab if n.state != "stopped")
            table.add_row(name, lab.profile, lab.stack_name, f"{running}/{len(lab.nodes)}")
        except (LabNotFound, LabStateError, TopologyError):
            table.add_row(name, "?", "?", "half-made: `lab down --name " + name + "`")
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
    table = Table(title=f"lab {status['name']} · {status['network_mode']} · "
                        f"profile {status['profile']}")
    table.add_column("node")
    table.add_column("role")
    table.add_column("state")
    table.add_column("addresses")
    colours = {"running": "green", "frozen": "cyan", "stopped": "red"}
    for name, node in status["nodes"].items():
        addresses = []
        for iface, addrs in node.get("interfaces", {}).items():
            shown = [a for a in addrs if not a.startswith("fe80")]
            addresses.append(f"{iface}: {', '.join(shown) or '-'}")
        state = node["state"]
        table.add_row(name, node.get("role", ""), f"[{colours.get(state, 'white')}]{state}[/]",
                      "\n".join(addresses))
    console.print(table)
    if "services" in status or "drbd" in status:
        console.print(services_table(status))


def services_table(status: dict[str, Any]) -> Table:
    """One row per server: what heartbeat gave it (VIPs, disk, daemons) and DRBD's view."""
    vips = status.get("vip", {})
    table = Table(title="the HA pair")
    for column in ("server", "VIPs", "DRBD", "mounted", "heartbeat", "dnsmasq", "ddclient"):
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
                      mark(services.get("ddclient")))
    unheld = [vip for vip, holder in vips.items() if not holder]
    if unheld:
        table.caption = f"held by nobody: {', '.join(unheld)}"
    return table


def _node(args: argparse.Namespace) -> Any:
    lab = Lab.attach(resolve_lab_name(args.name))
    if args.node not in lab.nodes:
        raise BadInput(f"lab {lab.name} has no node {args.node!r} (nodes: "
                       f"{', '.join(lab.nodes)})")
    return lab[args.node]


def cmd_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise BadInput("exec: give a command after the node, e.g. `lab exec c1 -- ip addr`")
    node = _node(args)
    process = node.popen(command)
    return int(process.wait())


def cmd_shell(args: argparse.Namespace) -> int:
    node = _node(args)
    env = {**os.environ, "PS1": f"[lab {node.lab.name}:{node.name}] \\w# "}
    process = node.popen(["bash", "--norc", "-i"], env=env, stdin=None)
    try:
        return int(process.wait())
    except KeyboardInterrupt:
        return int(process.wait())


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


def cmd_node_fault(args: argparse.Namespace) -> int:
    node = _node(args)
    started = time.monotonic()
    getattr(node, args.fault)()
    console.print(f"{node.name}: {args.fault} done in {time.monotonic() - started:.2f} s "
                  f"(now {node.state})")
    return EXIT_OK


def cmd_cut(args: argparse.Namespace) -> int:
    node_name, sep, iface = args.target.partition(":")
    if not sep or not iface:
        raise BadInput(f"{args.verb}: expected NODE:IFACE, e.g. lsvm1:enp2s1, not "
                       f"{args.target!r}")
    args.node = node_name
    node = _node(args)
    (node.block if args.verb == "cut" else node.unblock)(iface)
    console.print(f"{node.name}:{iface} {'cut' if args.verb == 'cut' else 'healed'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
