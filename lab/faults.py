"""The nemesis: faults as context managers that always undo themselves.

Node faults (crash, freeze, cable pull, VLAN cut) are the node's own methods, which log their
events; the nemesis only pairs each with its repair so a scenario reads like the story of the
fault. Network faults (partition, packet loss, switch reboot) happen in the switch: nftables
rules of the bridge family inside the lab's switch namespace, so they hit the wire and not the
nodes -- a frozen node is partitioned just as well, and nothing inside a node can see the rules.
Those log ``fault.start``/``fault.end`` events themselves. Every fault is bounded: leaving the
``with`` block (normally or by an exception) repairs it.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.lab import Lab

TABLE = "hapair_nemesis"


class FaultError(RuntimeError):
    pass


class Nemesis:
    def __init__(self, lab: Lab, seed: int | None = None) -> None:
        self.lab = lab
        self.seed = random.randrange(2**32) if seed is None else seed
        self.random = random.Random(self.seed)
        self._ids = itertools.count(1)
        lab.log_event("nemesis.seed", seed=self.seed)

    # -- node faults ------------------------------------------------------------------------------
    @contextmanager
    def crash(self, node: str, restart: bool = True) -> Iterator[None]:
        """Power loss now; power back on when the block ends (unless `restart` is False)."""
        self.lab[node].crash()
        try:
            yield
        finally:
            if restart and self.lab[node].state == "stopped":
                self.lab[node].start()

    @contextmanager
    def freeze(self, node: str) -> Iterator[None]:
        self.lab[node].freeze()
        try:
            yield
        finally:
            if self.lab[node].state == "frozen":
                self.lab[node].thaw()

    @contextmanager
    def cut(self, node: str, name: str | None = None) -> Iterator[None]:
        """Pull a cable (a port name, or all of the node's) or take one VLAN off its port."""
        self.lab[node].block(name)
        try:
            yield
        finally:
            if self.lab[node].state != "stopped":
                self.lab[node].unblock(name)

    # -- network faults ---------------------------------------------------------------------------
    @contextmanager
    def partition(self, a: str, b: str, ports: Sequence[str] = ()) -> Iterator[None]:
        """Drop every frame between nodes `a` and `b` (only to/from `ports` such as
        ``"694/udp"`` if given), in both directions, in the switch."""
        macs_a, macs_b = self._macs(a), self._macs(b)
        matches = _port_matches(ports)
        rules = [f"ether saddr {x} ether daddr {y} {m} drop"
                 for x, y in itertools.chain(itertools.product(macs_a, macs_b),
                                             itertools.product(macs_b, macs_a))
                 for m in matches]
        # traffic to a VIP goes to whoever holds it: block by MAC covers that too
        with self._rules("partition", (a, b), ", ".join(ports) or "all traffic", rules):
            yield

    @contextmanager
    def loss(self, node: str, percent: int) -> Iterator[None]:
        """Drop `percent`% of the frames to and from `node`, at random (nftables numgen)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"loss: percent must be 0-100, not {percent}")
        rules = [f"ether {d} {mac} numgen random mod 100 < {percent} drop"
                 for mac in self._macs(node) for d in ("saddr", "daddr")]
        with self._rules("loss", (node,), f"{percent}%", rules):
            yield

    @contextmanager
    def switch_reboot(self) -> Iterator[None]:
        """Every bridge down for as long as the block lasts: all links of all nodes lose
        carrier at once, as when the seed's switch reboots."""
        fid = self._start("switch_reboot", (), None)
        self.lab.fabric.set_switch_power(False)
        try:
            yield
        finally:
            self.lab.fabric.set_switch_power(True)
            self._end("switch_reboot", fid, (), None)

    # -- plumbing ---------------------------------------------------------------------------------
    def _macs(self, node: str) -> list[str]:
        return [p.mac for p in self.lab[node].spec.ports]

    @contextmanager
    def _rules(self, fault: str, targets: tuple[str, ...], detail: str,
               rules: list[str]) -> Iterator[None]:
        chain = f"f{next(self._ids)}"
        script = [f"add table bridge {TABLE}",
                  f"add chain bridge {TABLE} {chain} {{ type filter hook forward priority 0; }}",
                  *[f"add rule bridge {TABLE} {chain} {rule}" for rule in rules]]
        fid = self._start(fault, targets, detail)
        self._nft("\n".join(script))
        try:
            yield
        finally:
            self._nft(f"delete chain bridge {TABLE} {chain}")
            self._end(fault, fid, targets, detail)

    def _nft(self, script: str) -> None:
        argv = ["nsenter", f"--net={self.lab.switch_netns}", "--", "nft", "-f", "-"]
        result = subprocess.run(argv, input=script, capture_output=True, text=True)
        if result.returncode != 0:
            raise FaultError(f"nft in the switch namespace failed: {result.stderr.strip()}")

    def _start(self, fault: str, targets: tuple[str, ...], detail: str | None) -> str:
        fid = f"{fault}-{next(self._ids)}"
        self.lab.log_event("fault.start", fault=fault, fault_id=fid, targets=list(targets),
                           detail=detail)
        return fid

    def _end(self, fault: str, fid: str, targets: tuple[str, ...], detail: str | None) -> None:
        self.lab.log_event("fault.end", fault=fault, fault_id=fid, targets=list(targets),
                           detail=detail)

    def pause(self, low_s: float, high_s: float) -> float:
        """A random pause from the nemesis's seeded generator (logged seed: repeatable)."""
        seconds = self.random.uniform(low_s, high_s)
        time.sleep(seconds)
        return seconds


def _port_matches(ports: Sequence[str]) -> list[str]:
    if not ports:
        return [""]
    matches: list[str] = []
    for spec in ports:
        number, _, proto = spec.partition("/")
        if not number.isdigit() or proto not in ("tcp", "udp"):
            raise ValueError(f"partition: port {spec!r} must look like 694/udp or 7788/tcp")
        # both directions of a conversation: to the port, and replies from it
        matches += [f"meta l4proto {proto} th dport {number}",
                    f"meta l4proto {proto} th sport {number}"]
    return matches


def describe(fault: dict[str, Any]) -> str:
    return f"{fault.get('fault')} {','.join(fault.get('targets') or [])} {fault.get('detail')}"
