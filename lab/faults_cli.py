"""`lab partition`, `lab loss`, `lab switch-reboot`, `lab kill-service`, `lab disk-error`,
`lab faults`: the nemesis at a terminal.

A fault started here stays in force after the command returns (it lives in the lab's switch or
node, and in the lab's event log) until `lab heal --all` or `lab heal FAULT-ID` ends it, so a
person can watch the pair live with it; a switch reboot is the exception, it lasts `--seconds`
and ends by itself. Each fault is logged like the scenarios' faults, so `lab measure` and the
timeline draw it the same way.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from lab.faults import Nemesis
from lab.lab import Lab, resolve_lab_name

console = Console()


def register(sub: Any) -> None:
    def named(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--name", help="which lab (default: $LAB_NAME, or the only one up)")
        return p

    p = named(sub.add_parser("partition", help="drop traffic between two nodes (in the switch)"))
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--port", action="append", default=[], metavar="N/PROTO",
                   help="only this port, e.g. 694/udp (repeatable)")
    p.add_argument("--one-way", action="store_true", help="drop only what A sends to B")
    p.set_defaults(handler=cmd_partition)

    p = named(sub.add_parser("loss", help="drop a share of a node's frames at random"))
    p.add_argument("node")
    p.add_argument("percent", type=int)
    p.add_argument("--port", action="append", default=[], metavar="N/PROTO")
    p.set_defaults(handler=cmd_loss)

    p = named(sub.add_parser("switch-reboot", help="every link down for SECONDS, then up"))
    p.add_argument("--seconds", type=float, default=15.0)
    p.set_defaults(handler=cmd_switch_reboot)

    p = named(sub.add_parser("kill-service", help="SIGKILL one daemon of a node"))
    p.add_argument("node")
    p.add_argument("service", choices=("dnsmasq", "heartbeat", "replicator", "ddclient"))
    p.set_defaults(handler=cmd_kill_service)

    p = named(sub.add_parser("disk-error", help="I/O errors under a node's replicated disk"))
    p.add_argument("node")
    p.set_defaults(handler=cmd_disk_error)

    p = named(sub.add_parser("faults", help="faults in force (started and not healed)"))
    p.set_defaults(handler=cmd_faults)


def _nemesis(args: argparse.Namespace, *nodes: str) -> Nemesis:
    lab = Lab.attach(resolve_lab_name(args.name))
    for node in nodes:
        lab[node]  # a KeyError naming the lab's nodes, for a typo
    return Nemesis(lab)


def _started(fid: str) -> int:
    console.print(f"{fid} in force; end it with `lab heal {fid}` or `lab heal --all`")
    return 0


def cmd_partition(args: argparse.Namespace) -> int:
    nemesis = _nemesis(args, args.a, args.b)
    return _started(nemesis.start_partition(args.a, args.b, args.port,
                                            "a_to_b" if args.one_way else "both"))


def cmd_loss(args: argparse.Namespace) -> int:
    return _started(_nemesis(args, args.node).start_loss(args.node, args.percent, args.port))


def cmd_switch_reboot(args: argparse.Namespace) -> int:
    if not 0 < args.seconds <= 600:
        raise ValueError(f"switch-reboot: --seconds must be in (0, 600], not {args.seconds}")
    nemesis = _nemesis(args)
    with nemesis.switch_reboot():
        console.print(f"switch off for {args.seconds:g} s")
        time.sleep(args.seconds)
    console.print("switch on")
    return 0


def cmd_kill_service(args: argparse.Namespace) -> int:
    nemesis = _nemesis(args, args.node)
    with nemesis.kill_service(args.node, args.service):
        pass
    console.print(f"{args.node}: {args.service} killed")
    return 0


def cmd_disk_error(args: argparse.Namespace) -> int:
    return _started(_nemesis(args, args.node).start_disk_error(args.node))


def cmd_faults(args: argparse.Namespace) -> int:
    nemesis = _nemesis(args)
    starts = {e["fault_id"]: e for e in nemesis.lab.events() if e.get("event") == "fault.start"}
    table = Table("fault", "targets", "detail", "for", title=f"lab {nemesis.lab.name}: faults "
                  "in force")
    now = time.monotonic()
    for fid in nemesis.open_faults():
        e = starts[fid]
        table.add_row(fid, ", ".join(e.get("targets") or []) or "network",
                      str(e.get("detail") or ""), f"{now - float(e['t_mono']):.0f} s")
    console.print(table)
    return 0
