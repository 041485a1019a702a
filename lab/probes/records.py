"""Record formats of the measuring instrument: one JSON object per line, one ``kind`` per type.

Every record carries ``t``: CLOCK_MONOTONIC seconds (``time.monotonic()`` on Linux). That clock is
system-wide, so records written by probes in client namespaces, by the nemesis on the host and
by log parsers converting wall-clock log lines all sit on one axis without any exchange.

The records are plain frozen dataclasses so that checks stay pure and tests can build timelines
by hand; ``to_json``/``from_json`` are the only (de)serialisers, so the on-disk format has exactly
one definition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

# What a DNS query ended with: a DNS rcode name, or what went wrong before one arrived.
TIMEOUT = "timeout"
ERROR = "error"  # e.g. connection refused on TCP, network unreachable: no DNS reply at all
GOOD_RCODES = frozenset({"NOERROR"})


@dataclass(frozen=True)
class DnsSample:
    """One DNS query as a client saw it.

    ``t`` is when the query left, ``latency_s`` how long until the reply (None on timeout/error),
    ``node`` which server node answered (from the responder's MAC, see lab.probes.dns).
    """

    kind: ClassVar[str] = "dns"
    t: float
    probe: str  # which probe process (e.g. "c1"), so two clients' streams stay apart
    server: str  # the address the query was sent to (a VIP or a DHCP-learned server)
    name: str
    qtype: str
    transport: Literal["udp", "tcp"]
    rcode: str  # NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ..., "timeout" or "error"
    latency_s: float | None = None
    answers: tuple[str, ...] = ()
    node: str | None = None
    mac: str | None = None
    mode: Literal["vip", "os"] = "vip"  # "os": resolver settings learned from DHCP/RA
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.rcode in GOOD_RCODES

    @property
    def t_reply(self) -> float | None:
        """When the reply arrived, on the same clock as ``t``."""
        return None if self.latency_s is None else self.t + self.latency_s


@dataclass(frozen=True)
class DhcpEvent:
    """One DHCP client transition or packet outcome.

    ``event`` is one of: send (a DISCOVER/REQUEST/RELEASE left; ``msg`` says which), offer,
    bound (first ACK, from SELECTING or INIT-REBOOT), renewed, rebound, nak, timeout (a state gave
    up waiting), released, expired.
    """

    kind: ClassVar[str] = "dhcp"
    t: float
    client: str  # the client's MAC
    event: str
    state: str  # the client's state after the event
    hostname: str | None = None
    msg: str | None = None  # DISCOVER / REQUEST / RELEASE for "send"
    reason: str | None = None  # why a request was sent: init, renew, rebind, init_reboot, ...
    address: str | None = None  # offered / acked / released address
    server_id: str | None = None
    server_mac: str | None = None
    lease_s: int | None = None
    probe: str | None = None


@dataclass(frozen=True)
class FaultEvent:
    """A fault window edge: ``phase`` start or end of fault ``fault_id``.

    ``injected`` tells the faults a test or a person caused (the nemesis, `lab crash`) from
    what the design did to itself (a DRBD handler's ``reboot -f``): both are drawn, only the
    injected ones are "the fault" that takeover and lease survival are measured from."""

    kind: ClassVar[str] = "fault"
    t: float
    phase: Literal["start", "end"]
    fault: str  # crash, freeze, partition, cut, ..., self_reboot
    fault_id: str
    targets: tuple[str, ...] = ()  # nodes the fault hits (empty: the network as a whole)
    detail: str | None = None
    injected: bool = True


@dataclass(frozen=True)
class LogEvent:
    """One line of a node's log, parsed; ``t_res_s`` is the log's timestamp resolution.

    Wall-clock logs with whole seconds put ``t`` at the start of the second the line was written
    in (the event happened in ``[t, t + t_res_s)``).
    """

    kind: ClassVar[str] = "log"
    t: float
    node: str
    source: str  # heartbeat, resource (ResourceManager/IPaddr/...), dnsmasq, replicator
    message: str
    level: str | None = None
    process: str | None = None
    pid: int | None = None
    t_res_s: float = 0.0
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VipEvent:
    """Who holds a VIP from ``t`` on (the full set, so one event says everything)."""

    kind: ClassVar[str] = "vip"
    t: float
    vip: str
    holders: tuple[str, ...]


@dataclass(frozen=True)
class LeaseSnapshot:
    """The replicated lease file's entries at one moment (label: "before", "after", ...)."""

    kind: ClassVar[str] = "leases"
    t: float
    node: str
    label: str
    entries: tuple[tuple[str, str, str], ...]  # (mac, ip, hostname or "*")


@dataclass(frozen=True)
class RegistrarUpdate:
    """One dynamic-DNS update the fake registrar received."""

    kind: ClassVar[str] = "registrar"
    t: float
    host: str
    ip: str
    ok: bool
    node: str | None = None


@dataclass(frozen=True)
class StateSample:
    """A periodic status reading (DRBD roles, heartbeat views) for the watch view and plots."""

    kind: ClassVar[str] = "state"
    t: float
    node: str
    what: str  # drbd, heartbeat, dnsmasq
    value: str


Record = (
    DnsSample
    | DhcpEvent
    | FaultEvent
    | LogEvent
    | VipEvent
    | LeaseSnapshot
    | RegistrarUpdate
    | StateSample
)

RECORD_TYPES: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        DnsSample,
        DhcpEvent,
        FaultEvent,
        LogEvent,
        VipEvent,
        LeaseSnapshot,
        RegistrarUpdate,
        StateSample,
    )
}


def to_dict(record: Record) -> dict[str, Any]:
    """The record as a JSON-ready dict, ``kind`` first; None fields are left out."""
    body = {k: v for k, v in asdict(record).items() if v is not None}
    return {"kind": record.kind, **body}


def to_json(record: Record) -> str:
    return json.dumps(to_dict(record), separators=(",", ":"))


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def from_dict(data: dict[str, Any]) -> Record:
    """Rebuild a record; unknown keys are ignored so that newer writers stay readable."""
    kind = data.get("kind")
    cls = RECORD_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown record kind {kind!r}")
    names = {f.name for f in fields(cls)}
    kwargs = {
        k: (v if k == "fields" else _tuplify(v)) for k, v in data.items() if k in names
    }
    record: Record = cls(**kwargs)
    return record


def from_json(line: str) -> Record:
    return from_dict(json.loads(line))
