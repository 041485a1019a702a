"""The nemesis: faults as context managers that always undo themselves.

Node faults (crash, freeze, cable pull, VLAN cut) are the node's own methods, which log their
events; the nemesis only pairs each with its repair so a scenario reads like the story of the
fault. Network faults (partition, packet loss, switch reboot) happen in the switch: nftables
rules of the bridge family inside the lab's switch namespace, so they hit the wire and not the
nodes -- a frozen node is partitioned just as well, and nothing inside a node can see the rules.
Those log ``fault.start``/``fault.end`` events themselves. Every fault is bounded: leaving the
``with`` block (normally or by an exception) repairs it.

Service and disk faults (a daemon SIGKILLed, I/O errors under the replicated disk) act inside
one node, on processes found in that node's own cgroup. Each network, service and disk fault
also has a ``start_*`` half returning its fault id and a ``stop(fault_id)`` that another process
can call (`lab partition ...` now, `lab heal ID` later): the lab's event log, not this object,
is the record of what is in force, so ``open_faults()`` and ``heal_all()`` work from any process.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.lab import Lab

TABLE = "hapair_nemesis"
# a node, or its name: faults are aimed by role (`nemesis.crash(lab.active())`) or by name
Target = Any


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
    def crash(self, node: Target, restart: bool = True) -> Iterator[None]:
        """Power loss now; power back on when the block ends (unless `restart` is False)."""
        node = _name(node)
        self.lab[node].crash()
        try:
            yield
        finally:
            if restart and self.lab[node].state == "stopped":
                self.lab[node].start()

    @contextmanager
    def freeze(self, node: Target) -> Iterator[None]:
        node = _name(node)
        self.lab[node].freeze()
        try:
            yield
        finally:
            if self.lab[node].state == "frozen":
                self.lab[node].thaw()

    @contextmanager
    def cut(self, node: Target, name: str | None = None) -> Iterator[None]:
        """Pull a cable (a port name, or all of the node's) or take one VLAN off its port."""
        node = _name(node)
        self.lab[node].block(name)
        try:
            yield
        finally:
            if self.lab[node].state != "stopped":
                self.lab[node].unblock(name)

    # -- network faults ---------------------------------------------------------------------------
    @contextmanager
    def partition(self, a: Target, b: Target, ports: Sequence[str] = (),
                  direction: str = "both") -> Iterator[None]:
        """Drop every frame between nodes `a` and `b` (only to/from `ports` such as
        ``"694/udp"`` if given), in the switch. ``direction="a_to_b"`` drops only what `a`
        sends to `b` (a one-sided firewall rule, a broken receive path): `a` still hears `b`."""
        fid = self.start_partition(a, b, ports, direction)
        try:
            yield
        finally:
            self.stop(fid)

    def start_partition(self, a: Target, b: Target, ports: Sequence[str] = (),
                        direction: str = "both") -> str:
        """The first half of :meth:`partition` (for `lab partition`); returns the fault id."""
        a, b = _name(a), _name(b)
        if direction not in ("both", "a_to_b"):
            raise ValueError(f"partition: direction must be 'both' or 'a_to_b', not "
                             f"{direction!r}")
        macs_a, macs_b = self._macs(a), self._macs(b)
        matches = _port_matches(ports)
        pairs = list(itertools.product(macs_a, macs_b))
        if direction == "both":
            pairs += list(itertools.product(macs_b, macs_a))
        # traffic to a VIP goes to whoever holds it: block by MAC covers that too
        rules = [f"ether saddr {x} ether daddr {y} {m} drop" for x, y in pairs for m in matches]
        detail = (", ".join(ports) or "all traffic") + (f", {a} to {b} only"
                                                       if direction == "a_to_b" else "")
        return self._start_rules("partition", (a, b), detail, rules)

    @contextmanager
    def loss(self, node: Target, percent: int, ports: Sequence[str] = ()) -> Iterator[None]:
        """Drop `percent`% of the frames to and from `node` (only those to/from `ports` if
        given), at random (nftables numgen)."""
        fid = self.start_loss(node, percent, ports)
        try:
            yield
        finally:
            self.stop(fid)

    def start_loss(self, node: Target, percent: int, ports: Sequence[str] = ()) -> str:
        node = _name(node)
        if not 0 <= percent <= 100:
            raise ValueError(f"loss: percent must be 0-100, not {percent}")
        rules = [f"ether {d} {mac} {m} numgen random mod 100 < {percent} drop"
                 for mac in self._macs(node) for d in ("saddr", "daddr")
                 for m in _port_matches(ports)]
        detail = f"{percent}%" + (f" of {', '.join(ports)}" if ports else "")
        return self._start_rules("loss", (node,), detail, rules)

    @contextmanager
    def switch_reboot(self) -> Iterator[None]:
        """Every bridge down for as long as the block lasts: all links of all nodes lose
        carrier at once, as when the seed's switch reboots."""
        fid = self.start_switch_reboot()
        try:
            yield
        finally:
            self.stop(fid)

    def start_switch_reboot(self) -> str:
        fid = self._start("switch_reboot", (), None)
        self.lab.fabric.set_switch_power(False)
        return fid

    # -- service and disk faults ------------------------------------------------------------------
    @contextmanager
    def kill_service(self, node: Target, service: str) -> Iterator[None]:
        """SIGKILL one daemon of a node (``dnsmasq``, ``heartbeat``, ``replicator``): what a
        crash of that daemon alone does. Nothing restarts it on exit: whether the design
        notices and recovers is what a scenario measures."""
        fid = self.start_kill_service(node, service)
        try:
            yield
        finally:
            self._end("kill_service", fid, (_name(node),), service)

    def start_kill_service(self, node: Target, service: str) -> str:
        node = _name(node)
        from lab.services.proc import service_pids
        pids = service_pids(self.lab[node], service)
        if not pids:
            raise FaultError(f"kill_service: {node} runs no {service}")
        fid = self._start("kill_service", (node,), service)
        for pid in pids:  # PIDs read from the node's own cgroup just now
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return fid

    @contextmanager
    def disk_error(self, node: Target) -> Iterator[None]:
        """Every I/O on the node's replicated-disk backing image fails (EIO) until the block
        ends; DRBD's ``on-io-error`` policy decides what follows."""
        fid = self.start_disk_error(node)
        try:
            yield
        finally:
            self.stop(fid)

    def start_disk_error(self, node: Target) -> str:
        node = _name(node)
        fid = self._start("disk_error", (node,), "drbd0 backing image")
        self._set_disk_error(node, True)
        return fid

    def _set_disk_error(self, node: str, on: bool) -> None:
        target = self.lab[node]
        if target.state != "running":
            return  # a stopped node's disk has no daemon to fail; its next boot is clean
        rc, out = target.execute(f"drbdadm lab-io-error {'on' if on else 'off'} drbd0",
                                 timeout=10)
        if rc != 0:
            raise FaultError(f"disk_error on {node}: drbdadm lab-io-error failed: {out.strip()}")

    # -- ending faults ----------------------------------------------------------------------------
    def stop(self, fault_id: str) -> None:
        """End one fault this lab started (from this process or another: `lab heal`)."""
        start = next((e for e in self.lab.events() if e.get("event") == "fault.start"
                      and e.get("fault_id") == fault_id), None)
        if start is None:
            raise FaultError(f"no fault {fault_id!r} was started in lab {self.lab.name}")
        fault, targets = str(start["fault"]), tuple(start.get("targets") or ())
        if fault in ("partition", "loss"):
            self._nft(f"delete chain bridge {TABLE} {_chain(fault_id)}", missing_ok=True)
        elif fault == "switch_reboot":
            self.lab.fabric.set_switch_power(True)
        elif fault == "disk_error":
            self._set_disk_error(targets[0], False)
        self._end(fault, fault_id, targets, start.get("detail"))

    def open_faults(self) -> list[str]:
        """Ids of the faults started in this lab and not ended yet, oldest first."""
        started: dict[str, None] = {}
        for e in self.lab.events():
            if e.get("event") == "fault.start":
                started[str(e.get("fault_id"))] = None
            elif e.get("event") == "fault.end":
                started.pop(str(e.get("fault_id")), None)
        return list(started)

    def heal_all(self) -> list[str]:
        """End every open fault and put every running node's cables and VLANs back: the
        network as it was built. Frozen nodes stay frozen (thaw is its own verb)."""
        done = []
        for fid in self.open_faults():
            with suppress(FaultError):
                self.stop(fid)
            done.append(fid)
        self._nft(f"delete table bridge {TABLE}", missing_ok=True)
        self.lab.fabric.set_switch_power(True)
        for node in self.lab:
            if node.state == "stopped":
                continue
            self.lab.fabric.set_cable(node.spec, None, plugged=True)
            for iface in node.spec.interfaces:
                self.lab.fabric.set_vlan(node.spec, iface.name, attached=True)
        self.lab.log_event("heal.all", faults=done)
        return done

    # -- plumbing ---------------------------------------------------------------------------------
    def _macs(self, node: str) -> list[str]:
        return [p.mac for p in self.lab[node].spec.ports]

    def _start_rules(self, fault: str, targets: tuple[str, ...], detail: str,
                     rules: list[str]) -> str:
        fid = self._new_id(fault)
        chain = _chain(fid)
        script = [f"add table bridge {TABLE}",
                  f"add chain bridge {TABLE} {chain} {{ type filter hook forward priority 0; }}",
                  *[f"add rule bridge {TABLE} {chain} {rule}" for rule in rules]]
        self._nft("\n".join(script))
        self.lab.log_event("fault.start", fault=fault, fault_id=fid, targets=list(targets),
                           detail=detail)
        return fid

    def _nft(self, script: str, missing_ok: bool = False) -> None:
        argv = ["nsenter", f"--net={self.lab.switch_netns}", "--", "nft", "-f", "-"]
        result = subprocess.run(argv, input=script, capture_output=True, text=True)
        if result.returncode != 0:
            if missing_ok and "No such file or directory" in result.stderr:
                return
            raise FaultError(f"nft in the switch namespace failed: {result.stderr.strip()}")

    def _new_id(self, fault: str) -> str:
        """A fault id unique in the lab, also across `lab` processes (the event log counts)."""
        n = sum(1 for e in self.lab.events() if e.get("event") == "fault.start")
        return f"{fault}-{n + next(self._ids)}"

    def _start(self, fault: str, targets: tuple[str, ...], detail: str | None) -> str:
        fid = self._new_id(fault)
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


def _name(node: Target) -> str:
    return str(getattr(node, "name", node))


def _chain(fault_id: str) -> str:
    """The nftables chain that holds one fault's rules (named after the fault)."""
    return "f_" + fault_id.replace("-", "_")


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
