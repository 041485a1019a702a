"""``lab watch`` and ``lab measure``: the instrument at the terminal.

``lab watch`` starts a DNS probe in each client (20 Hz, its segment's VIPs), and redraws
:func:`lab.watch.render` a few times a second from the probe streams plus VIP holders, DRBD
and heartbeat readings. ``lab measure --duration S`` runs the DNS probes and a DHCP fleet for
S seconds, then prints the checks (``--json``: the metrics dict) and leaves the artifacts in
``results/measure-<time>/``. Both stop their probes by PID on exit.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from lab import watch
from lab.probes.live import StreamTail
from lab.probes.records import DnsSample

RESULTS = Path("results")


def register(sub: Any) -> None:
    w = sub.add_parser("watch", help="live view: DNS success per VIP, who answers, VIP holders")
    w.add_argument("--name", help="which lab (default: $LAB_NAME, or the only one up)")
    w.add_argument("--rate", type=float, default=20.0, help="DNS queries per second per client")
    w.add_argument("--clients", default="c1,g1")
    w.add_argument("--window", type=float, default=5.0, help="seconds of history per row")
    w.add_argument("--refresh", type=float, default=4.0, help="redraws per second")
    w.add_argument("--duration", type=float, default=3600.0, help="stop after this long")
    w.add_argument("--server", action="append", default=None,
                   help="ask this address instead of the clients' segment VIPs (repeat)")
    w.set_defaults(handler=cmd_watch)

    m = sub.add_parser("measure", help="run the probes for a while and print the checks")
    m.add_argument("--name", help="which lab (default: $LAB_NAME, or the only one up)")
    m.add_argument("--duration", type=float, required=True, help="seconds")
    m.add_argument("--rate", type=float, default=20.0)
    m.add_argument("--clients", default="c1,g1")
    m.add_argument("--dhcp-clients", type=int, default=20)
    m.add_argument("--server", action="append", default=None,
                   help="ask this address instead of the clients' segment VIPs (repeat)")
    m.add_argument("--json", action="store_true", help="print metrics as JSON")
    m.add_argument("--out", type=Path, default=None, help="artifact directory")
    m.set_defaults(handler=cmd_measure)


def _lab(args: argparse.Namespace) -> Any:
    from lab.lab import Lab, resolve_lab_name

    return Lab.attach(resolve_lab_name(args.name))


def cmd_measure(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lab.probes.fixture import Probes

    lab = _lab(args)
    out = args.out or RESULTS / f"measure-{time.strftime('%Y%m%d-%H%M%S')}"
    probes = Probes(lab, out.resolve(), run_id=out.name, command="lab measure")
    clients = [c for c in args.clients.split(",") if c]
    if args.dhcp_clients > 0:
        with probes.dhcp(clients=args.dhcp_clients, node=clients[0]):
            time.sleep(0.5)  # the fleet's stream exists before the DNS probe looks for names
            with probes.dns(rate_hz=args.rate, clients=clients, servers=args.server):
                measure_window(probes, args.duration)
    else:
        with probes.dns(rate_hz=args.rate, clients=clients, servers=args.server):
            time.sleep(args.duration)
    m = probes.write_artifacts(title=f"lab measure {lab.name}")
    if args.json:
        print(json.dumps(m.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        con = Console()
        con.print(f"[bold]{lab.name}[/]: {m.queries} queries, {m.failed} failed "
                  f"{m.failed_by_kind}; longest outage {m.outage_s:.2f} s; "
                  f"DHCP {m.dhcp_bound_at_end}/{m.dhcp_clients} bound; artifacts in {out}")
    return 0


def measure_window(probes: Any, duration: float) -> None:
    """Let the probes run for `duration` seconds; if a fault starts meanwhile (`lab crash` in
    another terminal), make the fleet ask again once clients are served again, so lease
    survival is measured instead of left unmeasured."""
    deadline = time.monotonic() + duration
    confirmed: set[str] = set()
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.5, left))
        try:
            fault = probes.last_fault()
        except AssertionError:
            continue  # no fault yet
        if fault.fault_id in confirmed or not probes.vips:
            continue
        taken_over = probes.view().takeover_s(fault, probes.vips)
        if any(v is not None for v in taken_over.values()):
            confirmed.add(fault.fault_id)
            probes.confirm_leases(timeout=max(1.0, min(30.0, deadline - time.monotonic())))


class Tail:
    """Reads probe streams incrementally (a watch may run for an hour) and keeps only recent
    DNS samples."""

    def __init__(self) -> None:
        self.tails: dict[Path, StreamTail] = {}
        self.samples: list[DnsSample] = []

    def read(self, paths: list[Path], keep_s: float) -> list[DnsSample]:
        for p in paths:
            tail = self.tails.setdefault(p, StreamTail(p))
            self.samples += [r for r in tail.read_new() if isinstance(r, DnsSample)]
        cutoff = time.monotonic() - keep_s
        self.samples = [s for s in self.samples if s.t >= cutoff]
        return self.samples


def cmd_watch(args: argparse.Namespace) -> int:
    from rich.live import Live

    from lab.probes import labview
    from lab.probes.fixture import Probes

    lab = _lab(args)
    out = RESULTS / f"watch-{time.strftime('%Y%m%d-%H%M%S')}"
    probes = Probes(lab, out.resolve(), run_id=out.name, command="lab watch")
    clients = [c for c in args.clients.split(",") if c]
    slow: dict[str, Any] = {"drbd": {}, "heartbeat": {}}
    stop = threading.Event()

    def poll_slow() -> None:  # node commands take tens of ms: off the drawing thread
        while not stop.is_set():
            slow["drbd"] = labview.drbd_states(lab)
            slow["heartbeat"] = labview.heartbeat_views(lab)
            stop.wait(1.0)

    poller = threading.Thread(target=poll_slow, daemon=True)
    poller.start()
    end = time.monotonic() + args.duration
    try:
        with probes.dns(rate_hz=args.rate, clients=clients, os_mode=False,
                        servers=args.server), \
                Live(refresh_per_second=args.refresh, screen=False) as live:
            tail = Tail()
            while time.monotonic() < end:
                samples = tail.read(probes.streams, keep_s=args.window + 60)
                events = [f"{e.get('event')} {e.get('node', '')}".strip()
                          for e in lab.events()[-5:]]
                state = watch.state_from(
                    lab.name, samples, time.monotonic(), args.window,
                    vip_holders=labview.vip_holders(lab), drbd=slow["drbd"],
                    heartbeat=slow["heartbeat"], events=events)
                live.update(watch.render(state))
                time.sleep(1.0 / args.refresh)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
    return 0
