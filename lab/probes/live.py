"""What the probes have seen so far, read incrementally while they run.

Scenarios wait on what clients see ("the fleet is bound", "clients are served again"). Polling
those by rebuilding the whole timeline would reparse every stream and node log on every poll;
:class:`LiveView` instead remembers how far it read each probe stream and parses only the lines
written since (a line still being written is left for the next read). The questions it answers
are the checks' own definitions (lab.checks), applied to the records read so far.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab import checks
from lab.probes.records import DhcpEvent, DnsSample, FaultEvent, Record
from lab.timeline import read_records


@dataclass
class StreamTail:
    """One JSON-lines stream read from where the last read stopped; a line still being
    written waits for the next read."""

    path: Path
    offset: int = 0

    def read_new(self) -> list[Record]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return list(read_records(chunk[:end + 1].decode(errors="replace").splitlines()))


@dataclass
class LiveView:
    """DNS samples and DHCP events of a set of streams, kept current by :meth:`refresh`."""

    samples: list[DnsSample] = field(default_factory=list)
    dhcp: list[DhcpEvent] = field(default_factory=list)
    bound: dict[str, str] = field(default_factory=dict)  # fleet client MAC -> address now
    _tails: dict[Path, StreamTail] = field(default_factory=dict)

    def refresh(self, streams: Iterable[Path]) -> LiveView:
        for path in streams:
            tail = self._tails.setdefault(path, StreamTail(path))
            for record in tail.read_new():
                if isinstance(record, DnsSample):
                    self.samples.append(record)
                elif isinstance(record, DhcpEvent) and not checks.is_real_client(record):
                    self._dhcp(record)
        return self

    def _dhcp(self, event: DhcpEvent) -> None:
        self.dhcp.append(event)
        if event.event in checks.ACK_EVENTS and event.address:
            self.bound[event.client] = event.address
        elif event.event in ("nak", "released", "expired", "stopped"):
            self.bound.pop(event.client, None)

    # -- questions ------------------------------------------------------------------------------
    def servers(self) -> list[str]:
        """The addresses the DNS probes ask (VIPs, or the OS resolver's servers)."""
        return sorted({s.server for s in self.samples if s.mode == "vip"})

    def takeover_s(self, fault: FaultEvent, vips: Sequence[str]) -> dict[str, float | None]:
        """Per VIP: seconds from the fault to the first good reply from a node it did not hit."""
        return {vip: checks.takeover_s(self.samples, fault, vip) for vip in vips}

    def last_answerer(self, vip: str) -> str | None:
        """The node that gave the latest good reply on `vip` (None if none yet)."""
        for s in reversed(self.samples):
            if s.server == vip and s.ok and s.node is not None:
                return s.node
        return None

    def acked_since(self, t: float) -> dict[str, str]:
        """Fleet clients ACKed at or after `t`: MAC -> address of their first such ACK."""
        out: dict[str, str] = {}
        for e in self.dhcp:
            if e.t >= t and e.event in checks.ACK_EVENTS and e.address:
                out.setdefault(e.client, e.address)
        return out
