"""One ordered timeline per run: probe samples, DHCP transitions, faults, node log events, VIP
ownership and lease snapshots, all on CLOCK_MONOTONIC.

A timeline is a header (run id, random seed, the wall↔monotonic clock pairs, free metadata)
plus records sorted by ``t``. On disk it is ``timeline.jsonl``: the header on the first line,
one record per line after it (formats in :mod:`lab.probes.records`). Merging is a stable sort,
so records with the same stamp keep the order their sources wrote them in.

Why the clock pairs live in the header: wall-clock logs can be re-converted later (for
instance with a corrected timezone) from the raw logs kept next to the timeline, and anyone
reading the artifact can see how good the conversion was (``err_s``, ``drift_s``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from pathlib import Path
from typing import Any, TypeVar

from lab.probes.clock import ClockMap, ClockPair, sample_pair
from lab.probes.logparse import parse_dhclient_event_line, parse_lines, parse_registrar_line
from lab.probes.records import Record, from_dict, to_dict

R = TypeVar("R")


@dataclass(frozen=True)
class Header:
    run_id: str
    clock: ClockMap
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "header",
            "run_id": self.run_id,
            "seed": self.seed,
            "clock": self.clock.to_dict(),
            "drift_s": self.clock.drift_s,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Header:
        return cls(
            run_id=str(data["run_id"]),
            clock=ClockMap.from_dict(data["clock"]),
            seed=data.get("seed"),
            meta=dict(data.get("meta") or {}),
        )

    @classmethod
    def start(cls, run_id: str, seed: int | None = None, **meta: Any) -> Header:
        """The header of a run starting now: samples the clock pair once."""
        return cls(run_id=run_id, clock=ClockMap(sample_pair()), seed=seed, meta=dict(meta))

    def finish(self) -> Header:
        """Sample the end pair, so conversions interpolate any slew during the run."""
        return replace(self, clock=ClockMap(self.clock.start, sample_pair()))


@dataclass(frozen=True)
class Timeline:
    header: Header
    records: tuple[Record, ...] = ()

    def of(self, cls: type[R]) -> list[R]:
        """All records of one type, in time order."""
        return [r for r in self.records if isinstance(r, cls)]

    def where(self, pred: Callable[[Record], bool]) -> list[Record]:
        return [r for r in self.records if pred(r)]

    @property
    def t0(self) -> float | None:
        return self.records[0].t if self.records else None

    @property
    def t_end(self) -> float | None:
        return self.records[-1].t if self.records else None

    def with_records(self, *more: Iterable[Record]) -> Timeline:
        return Timeline(self.header, merge(self.records, *more))

    # -- files --------------------------------------------------------------------------
    def dump(self, path: Path) -> None:
        with path.open("w") as f:
            f.write(json.dumps(self.header.to_dict(), separators=(",", ":")) + "\n")
            for r in self.records:
                f.write(json.dumps(to_dict(r), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path) -> Timeline:
        with path.open() as f:
            first = f.readline()
            header = Header.from_dict(json.loads(first))
            return cls(header, merge(read_records(f)))


def merge(*streams: Iterable[Record]) -> tuple[Record, ...]:
    """All records of all streams in time order (stable: equal stamps keep input order)."""
    out: list[Record] = []
    for s in streams:
        out.extend(s)
    out.sort(key=lambda r: r.t)
    return tuple(out)


def read_records(lines: Iterable[str]) -> Iterator[Record]:
    """Records from JSON lines; blank lines, headers, a torn last line (a probe killed
    mid-write leaves one) and lines that are not records are skipped."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or data.get("kind") == "header":
            continue
        try:
            yield from_dict(data)
        except (TypeError, ValueError):
            continue  # a record from an unknown writer, or two torn lines glued together


def read_jsonl(path: Path) -> list[Record]:
    with path.open() as f:
        return list(read_records(f))


def read_log(
    path: Path, node: str, source: str, clock: ClockMap, tz: tzinfo | None = None
) -> list[Record]:
    """A node's log file (heartbeat / dnsmasq / replicator / dhclient / registrar) as timeline
    records."""
    with path.open(errors="replace") as f:
        if source == "dhclient":
            return [e for e in map(lambda x: parse_dhclient_event_line(x, node), f) if e]
        if source == "registrar":
            return [e for e in map(parse_registrar_line, f) if e]
        return list(parse_lines(f, node, source, clock, tz))


def build(
    header: Header,
    jsonl: Iterable[Path] = (),
    logs: Iterable[tuple[Path, str, str]] = (),
    records: Iterable[Record] = (),
    tz: tzinfo | None = None,
) -> Timeline:
    """Assemble a run's timeline from probe streams, node logs ``(path, node, source)`` and
    records already in memory (fault events, VIP changes, lease snapshots)."""
    streams: list[Iterable[Record]] = [records]
    for p in jsonl:
        if p.exists():
            streams.append(read_jsonl(p))
    for p, node, source in logs:
        if p.exists():
            streams.append(read_log(p, node, source, header.clock, tz))
    return Timeline(header, merge(*streams))


__all__ = [
    "ClockMap",
    "ClockPair",
    "Header",
    "Timeline",
    "build",
    "merge",
    "read_jsonl",
    "read_log",
    "read_records",
]
