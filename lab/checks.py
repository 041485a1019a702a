"""Checks: pure functions over a timeline that say what clients experienced.

Nothing here touches the system; every function takes records (or a Timeline) and returns
numbers, so each one is unit-tested on hand-made and recorded timelines. The definitions are
written once, here, and quoted in metrics.json by name:

* a DNS query is *good* when its rcode is NOERROR (an empty NOERROR answer is a valid "no such
  record type"); timeouts, transport errors, SERVFAIL, NXDOMAIN and REFUSED are failures;
* an *outage* of one client stream (one probe, one server address) starts when the first failing
  query of a run of failures was sent and ends when the first good reply after it arrived; an
  outage still open when the stream stops is *ongoing* and lasts to the stream's last query;
  questions never answered well in the whole run are not part of any outage (see outages());
* *takeover* is the time from a fault's start to the first good reply, on the VIP, from a node
  the fault did not hit;
* a DHCP client *waits* from the first request it sends without a pending one to the next ACK;
  NAKs and retransmissions do not end a wait, since the client still has no lease;
* *split brain* is time during which two or more nodes hold one VIP (from VIP ownership records)
  and, separately, time during which two nodes both answered for one VIP (from the probes: each
  node's answers form spans, broken where it was silent for more than ``gap_s``; overlapping
  spans of different nodes are split-brain time as clients saw it).
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.probes.records import (
    DhcpEvent,
    DnsSample,
    FaultEvent,
    LeaseSnapshot,
    RegistrarUpdate,
    VipEvent,
)
from lab.timeline import Timeline

ACK_EVENTS = frozenset({"bound", "renewed", "rebound"})
FAILURE_KINDS = ("timeout", "SERVFAIL", "NXDOMAIN", "REFUSED")


# -- DNS ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outage:
    probe: str
    server: str
    start: float  # send time of the first failed query
    end: float  # reply time of the first good answer after it (or last query if ongoing)
    failed: int
    ongoing: bool

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def _streams(samples: Iterable[DnsSample]) -> dict[tuple[str, str], list[DnsSample]]:
    out: dict[tuple[str, str], list[DnsSample]] = defaultdict(list)
    for s in samples:
        out[(s.probe, s.server)].append(s)
    for v in out.values():
        v.sort(key=lambda s: s.t)
    return dict(out)


def outages(samples: Iterable[DnsSample]) -> list[Outage]:
    """Every run of failed queries per (probe, server) stream, in time order.

    Questions that never got a good answer in the whole run (a PTR zone the server does not
    serve, a name nobody registered) are configuration facts, counted in failed_by_kind but
    left out here: an outage is a time when something that works stopped working."""
    samples = list(samples)
    works = {(s.name, s.qtype) for s in samples if s.ok}
    samples = [s for s in samples if (s.name, s.qtype) in works]
    found: list[Outage] = []
    for (probe, server), stream in _streams(samples).items():
        first_fail: DnsSample | None = None
        n = 0
        for s in stream:
            if not s.ok:
                if first_fail is None:
                    first_fail = s
                n += 1
            elif first_fail is not None:
                end = s.t_reply if s.t_reply is not None else s.t
                found.append(Outage(probe, server, first_fail.t, end, n, False))
                first_fail, n = None, 0
        if first_fail is not None:
            found.append(Outage(probe, server, first_fail.t, stream[-1].t, n, True))
    found.sort(key=lambda o: o.start)
    return found


def outage_s(samples: Iterable[DnsSample]) -> float:
    """The longest client-visible DNS gap (0.0 when every query was good)."""
    return max((o.duration_s for o in outages(samples)), default=0.0)


def longest_since(outs: Iterable[Outage], since: float | None) -> float:
    """The longest outage still going on at ``since`` (the fault's start) or after it, each
    whole (a query in flight when the fault hit is part of what clients saw); every outage
    with ``since`` None. One that ended before the fault is the pair's steady state (in seed,
    DNS over TCP stalls while dnsmasq pings for new DHCP clients: F13), not the fault's cost."""
    return max((o.duration_s for o in outs if since is None or o.end > since), default=0.0)


def outage_in_window_s(found: Iterable[Outage], start: float, end: float) -> float:
    """The longest outage that overlaps [start, end] (0.0 if none): what clients saw during
    one fault, apart from outages before or after it."""
    return max((o.duration_s for o in found if o.start <= end and o.end >= start), default=0.0)


def failed_by_kind(samples: Iterable[DnsSample]) -> dict[str, int]:
    """Failed queries counted by what went wrong (timeout, SERVFAIL, NXDOMAIN, REFUSED, ...)."""
    counts = Counter(s.rcode for s in samples if not s.ok)
    return {k: counts.get(k, 0) for k in FAILURE_KINDS} | {
        k: v for k, v in counts.items() if k not in FAILURE_KINDS
    }


def first_fault(records: Iterable[Any], fault_id: str | None = None) -> FaultEvent | None:
    """The fault with this id, or the first injected one (not what the design did to
    itself, such as a DRBD handler's reboot)."""
    for r in records:
        if isinstance(r, FaultEvent) and r.phase == "start" and (
                r.fault_id == fault_id if fault_id is not None else r.injected):
            return r
    return None


def fault_end(records: Iterable[Any], fault_id: str) -> FaultEvent | None:
    for r in records:
        if isinstance(r, FaultEvent) and r.phase == "end" and r.fault_id == fault_id:
            return r
    return None


def takeover_s(
    samples: Iterable[DnsSample], fault: FaultEvent | None, vip: str | None = None
) -> float | None:
    """Fault start → first good reply on ``vip`` (any server if None) from a node the fault did
    not hit. When the fault hits every node that answers (a partition between the two
    servers), "surviving" means any node other than the one that answered last before the
    fault. None when there was no fault, or no such node ever answered."""
    if fault is None:
        return None
    mine = [s for s in samples if s.ok and s.node is not None and s.t_reply is not None
            and (vip is None or s.server == vip)]
    hit = set(fault.targets)
    if not hit or {s.node for s in mine} <= hit:
        before = [s for s in mine if s.t_reply is not None and s.t_reply < fault.t]
        last = max(before, key=lambda s: s.t_reply or 0.0).node if before else None
        hit = {last} if last is not None else set()
    best: float | None = None
    for s in mine:
        t = s.t_reply
        if s.node in hit or t is None or t < fault.t:
            continue
        if best is None or t < best:
            best = t
    return None if best is None else best - fault.t


def latency_quantiles(samples: Iterable[DnsSample]) -> dict[str, float | None]:
    lat = sorted(s.latency_s for s in samples if s.ok and s.latency_s is not None)
    if not lat:
        return {"p50": None, "p99": None, "max": None}

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, max(0, math.ceil(p * len(lat)) - 1))]

    return {"p50": q(0.50), "p99": q(0.99), "max": lat[-1]}


# -- split brain --------------------------------------------------------------------------
def _measure(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of intervals."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def split_brain_holders_s(vip_events: Sequence[VipEvent], t_end: float) -> dict[str, float]:
    """Per VIP: time during which two or more nodes held it (open intervals end at ``t_end``)."""
    by_vip: dict[str, list[VipEvent]] = defaultdict(list)
    for e in vip_events:
        by_vip[e.vip].append(e)
    out: dict[str, float] = {}
    for vip, evs in by_vip.items():
        evs.sort(key=lambda e: e.t)
        total = 0.0
        for i, e in enumerate(evs):
            if len(set(e.holders)) >= 2:
                nxt = evs[i + 1].t if i + 1 < len(evs) else t_end
                total += max(0.0, nxt - e.t)
        out[vip] = total
    return out


def answer_spans(samples: Iterable[DnsSample], gap_s: float) -> dict[tuple[str, str], list[
    tuple[float, float]
]]:
    """Per (server, node): spans of good replies, broken where the node was silent > gap_s."""
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in samples:
        if s.ok and s.node is not None and s.t_reply is not None:
            times[(s.server, s.node)].append(s.t_reply)
    spans: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for key, ts in times.items():
        ts.sort()
        cur: list[tuple[float, float]] = []
        start = prev = ts[0]
        for t in ts[1:]:
            if t - prev > gap_s:
                cur.append((start, prev))
                start = t
            prev = t
        cur.append((start, prev))
        spans[key] = cur
    return spans


def split_brain_answers_s(samples: Iterable[DnsSample], gap_s: float = 2.0) -> dict[str, float]:
    """Per server address: time during which two nodes both answered for it (see module doc)."""
    spans = answer_spans(samples, gap_s)
    by_server: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(dict)
    for (server, node), sp in spans.items():
        by_server[server][node] = sp
    out: dict[str, float] = {}
    for server, nodes in by_server.items():
        overlaps: list[tuple[float, float]] = []
        names = sorted(nodes)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for s1, e1 in nodes[a]:
                    for s2, e2 in nodes[b]:
                        lo, hi = max(s1, s2), min(e1, e2)
                        if hi > lo:
                            overlaps.append((lo, hi))
        out[server] = _measure(overlaps)
    return out


# -- DHCP ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DhcpWait:
    client: str
    start: float
    end: float
    ongoing: bool

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def dhcp_waits(events: Iterable[DhcpEvent], t_end: float) -> list[DhcpWait]:
    """Every interval a client spent asking without an ACK."""
    waiting: dict[str, float] = {}
    out: list[DhcpWait] = []
    for e in sorted(events, key=lambda e: e.t):
        if e.event == "send" and e.msg in ("DISCOVER", "REQUEST"):
            waiting.setdefault(e.client, e.t)
        elif e.event in ACK_EVENTS and e.client in waiting:
            out.append(DhcpWait(e.client, waiting.pop(e.client), e.t, False))
        elif e.event in ("released", "stopped") and e.client in waiting:
            out.append(DhcpWait(e.client, waiting.pop(e.client), e.t, True))
    for client, start in waiting.items():
        out.append(DhcpWait(client, start, max(t_end, start), True))
    out.sort(key=lambda w: w.start)
    return out


def dhcp_outage_s(events: Iterable[DhcpEvent], t_end: float,
                  since: float | None = None) -> float:
    """The longest time any DHCP client waited for an ACK (0.0 if none waited). With
    ``since`` (the fault's start) only waits still going on then or later count, each whole: a
    wait that ended before it (a new client's first binding, seconds per client behind
    dnsmasq's ping check in the seed's configuration: F13) is what the design costs without any
    fault, not what the fault cost."""
    return max((w.duration_s for w in dhcp_waits(events, t_end)
                if since is None or w.end > since), default=0.0)


def bound_at(events: Iterable[DhcpEvent], t: float) -> dict[str, str]:
    """client MAC → address it held at time ``t`` (ACKed and not given up since)."""
    held: dict[str, str] = {}
    for e in sorted(events, key=lambda e: e.t):
        if e.t > t:
            break
        if e.event in ACK_EVENTS and e.address:
            held[e.client] = e.address
        elif e.event in ("nak", "released", "expired", "stopped"):
            held.pop(e.client, None)
    return held


def fleet_end(events: Sequence[DhcpEvent], t_end: float) -> float:
    """Just before the fleet began to stop (its RELEASEs on exit), else ``t_end``: "bound at
    the end" means bound while the clients were still running."""
    stops = [e.t for e in events if e.event in ("released", "stopped")]
    return min(stops) - 1e-9 if stops else t_end


def duplicate_ips(events: Iterable[DhcpEvent]) -> list[dict[str, Any]]:
    """Every moment an address was ACKed to a client while another client still held it."""
    held: dict[str, str] = {}
    found: list[dict[str, Any]] = []
    for e in sorted(events, key=lambda e: e.t):
        if e.event in ACK_EVENTS and e.address:
            holders = sorted(c for c, a in held.items() if a == e.address and c != e.client)
            if holders:
                found.append({"t": e.t, "ip": e.address, "clients": [*holders, e.client]})
            held[e.client] = e.address
        elif e.event in ("nak", "released", "expired", "stopped"):
            held.pop(e.client, None)
    return found


def _reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


@dataclass(frozen=True)
class LeaseSurvival:
    bound_before: int
    same_address: int
    changed: list[str]  # clients that got another address
    unanswered: list[str]  # clients that asked after the fault started and got no ACK
    names_checked: int
    names_ok: int
    unasked: list[str] = field(default_factory=list)  # bound, but never asked after the fault

    @property
    def measured(self) -> int:
        """Clients whose lease was put to the test: they asked after the fault."""
        return self.bound_before - len(self.unasked)

    @property
    def fraction(self) -> float | None:
        """Share of the tested leases that kept their address; None when no client asked
        after the fault (nothing was measured, which is not 0 %)."""
        return None if self.measured == 0 else self.same_address / self.measured

    @property
    def reason(self) -> str | None:
        if self.bound_before == 0:
            return "no client was bound when the fault started"
        if self.measured == 0:
            return ("no client asked for its lease after the fault (renew the fleet once the "
                    "takeover is seen: probes.confirm_leases())")
        return None


def lease_survival(
    events: Sequence[DhcpEvent], samples: Sequence[DnsSample], fault: FaultEvent | None
) -> LeaseSurvival | None:
    """Leases bound before the fault and ACKed again with the same address after it; for those
    the probes asked about, whether the forward (A) and reverse (PTR) names still resolved."""
    if fault is None:
        return None
    before = bound_at(events, fault.t)
    hostnames = {e.client: e.hostname for e in events if e.hostname}
    after: dict[str, DhcpEvent] = {}
    for e in sorted(events, key=lambda e: e.t):
        if e.t >= fault.t and e.event in ACK_EVENTS and e.client in before:
            after.setdefault(e.client, e)
    same = [c for c, ip in before.items() if c in after and after[c].address == ip]
    changed = sorted(c for c, ip in before.items() if c in after and after[c].address != ip)
    asked = {e.client for e in events if e.t >= fault.t and e.event == "send"
             and e.msg in ("REQUEST", "DISCOVER")}
    unanswered = sorted(c for c in before if c not in after and c in asked)
    unasked = sorted(c for c in before if c not in after and c not in asked)
    checked = ok = 0
    for c in same:
        host, ip, t_ack = hostnames.get(c), before[c], after[c].t
        if not host:
            continue
        fwd = [s for s in samples if s.t >= t_ack and s.qtype == "A"
               and s.name.split(".")[0] == host]
        rev = [s for s in samples if s.t >= t_ack and s.qtype == "PTR"
               and s.name.rstrip(".") == _reverse_name(ip)]
        if not fwd and not rev:
            continue
        checked += 1
        fwd_ok = all(s.ok and ip in s.answers for s in fwd[-1:])
        rev_ok = all(s.ok and any(a.split(".")[0] == host for a in s.answers) for s in rev[-1:])
        ok += int(fwd_ok and rev_ok)
    return LeaseSurvival(len(before), len(same), changed, unanswered, checked, ok, unasked)


# -- lease file, registrar ----------------------------------------------------------------
def leases_lost(snapshots: Sequence[LeaseSnapshot]) -> int | None:
    """Entries (MAC, IP) of the first lease-file snapshot missing from the last one."""
    if len(snapshots) < 2:
        return None
    first, last = snapshots[0], snapshots[-1]
    after = {(m, ip) for m, ip, _ in last.entries}
    return sum(1 for m, ip, _ in first.entries if (m, ip) not in after)


def registrar_updates(updates: Iterable[RegistrarUpdate]) -> dict[str, int]:
    c = Counter("ok" if u.ok else "failed" for u in updates)
    return {"ok": c.get("ok", 0), "failed": c.get("failed", 0)}


# -- everything ---------------------------------------------------------------------------
@dataclass
class Metrics:
    queries: int = 0
    failed: int = 0
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    success_rate: float | None = None
    latency_s: dict[str, float | None] = field(default_factory=dict)
    outage_s: float = 0.0
    outage_ongoing: bool = False
    outages: list[dict[str, Any]] = field(default_factory=list)
    fault: str | None = None
    fault_outage_s: float | None = None  # longest outage overlapping the fault's window
    takeover_s: float | None = None
    takeover_complete: bool | None = None
    answered_by: dict[str, dict[str, int]] = field(default_factory=dict)
    split_brain_s: float = 0.0
    split_brain_answers_s: float = 0.0
    dhcp_clients: int = 0
    real_dhcp_clients: dict[str, str] = field(default_factory=dict)  # client -> last state
    dhcp_bound_at_end: int = 0
    dhcp_outage_s: float = 0.0
    dhcp_naks: int = 0
    dhcp_timeouts: int = 0
    lease_survival: float | None = None
    lease_survival_detail: dict[str, Any] | None = None
    duplicate_ips: int = 0
    duplicate_ip_detail: list[dict[str, Any]] = field(default_factory=list)
    leases_lost: int | None = None
    registrar_updates: dict[str, int] = field(default_factory=dict)
    # each client's own resolver path (what its OS learned by DHCP/RA), apart from the VIP
    # figures above: probe -> server -> {queries, failed, success_rate, outage_s}
    resolver_paths: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_real_client(event: DhcpEvent) -> bool:
    """Events of a real OS DHCP client (isc dhclient's hook), not of the simulated fleet."""
    return (event.probe or "").startswith("dhclient@")


def answered_by(samples: Iterable[DnsSample]) -> dict[str, dict[str, int]]:
    """server → node → good replies (``?`` for replies whose node could not be told)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for s in samples:
        if s.ok:
            out[s.server][s.node or "?"] += 1
    return {k: dict(v) for k, v in out.items()}


def metrics(tl: Timeline, vip: str | None = None, fault_id: str | None = None) -> Metrics:
    """All checks over one timeline. ``vip`` narrows takeover to one address; ``fault_id``
    picks the fault (default: the first one)."""
    every_sample = tl.of(DnsSample)
    # the headline is the VIPs as asked directly; each client's OS resolver path is its own
    # metric (a guest whose resolver is the router fails by design, F6: not a VIP outage)
    samples = [s for s in every_sample if s.mode != "os"]
    # the fleet's clients are the DHCP metrics; real OS clients (isc dhclient) are reported
    # beside them, so that a fleet of N is still N with c1's own dhclient on the same VLAN
    all_dhcp = tl.of(DhcpEvent)
    dhcp = [e for e in all_dhcp if not is_real_client(e)]
    real = [e for e in all_dhcp if is_real_client(e)]
    t_end = tl.t_end or 0.0
    fault = first_fault(tl.records, fault_id)
    outs = outages(samples)
    failed = [s for s in samples if not s.ok]
    m = Metrics(
        queries=len(samples),
        failed=len(failed),
        failed_by_kind=failed_by_kind(samples),
        success_rate=None if not samples else 1 - len(failed) / len(samples),
        latency_s=latency_quantiles(samples),
        outage_s=longest_since(outs, fault.t if fault is not None else None),
        outage_ongoing=any(o.ongoing for o in outs),
        outages=[asdict(o) | {"duration_s": o.duration_s} for o in outs],
        answered_by=answered_by(samples),
    )
    if fault is not None:
        m.fault = fault.fault_id
        m.takeover_s = takeover_s(samples, fault, vip)
        end = fault_end(tl.records, fault.fault_id)
        m.fault_outage_s = outage_in_window_s(outs, fault.t, end.t if end else t_end)
        m.takeover_complete = m.takeover_s is not None
    holders = split_brain_holders_s(tl.of(VipEvent), t_end)
    m.split_brain_s = max(holders.values(), default=0.0)
    m.split_brain_answers_s = max(split_brain_answers_s(samples).values(), default=0.0)
    clients = {e.client for e in dhcp}
    m.dhcp_clients = len(clients)
    m.real_dhcp_clients = {e.client: e.state for e in sorted(real, key=lambda e: e.t)}
    m.dhcp_bound_at_end = len(bound_at(dhcp, fleet_end(dhcp, t_end)))
    m.dhcp_outage_s = dhcp_outage_s(dhcp, t_end, fault.t if fault is not None else None)
    m.dhcp_naks = sum(1 for e in dhcp if e.event == "nak")
    m.dhcp_timeouts = sum(1 for e in dhcp if e.event == "timeout")
    ls = lease_survival(dhcp, samples, fault) if dhcp else None
    if ls is not None:
        m.lease_survival = ls.fraction
        m.lease_survival_detail = asdict(ls) | {"measured": ls.measured, "reason": ls.reason}
    dups = duplicate_ips(dhcp)
    m.duplicate_ips = len(dups)
    m.duplicate_ip_detail = dups
    m.leases_lost = leases_lost(tl.of(LeaseSnapshot))
    m.registrar_updates = registrar_updates(tl.of(RegistrarUpdate))
    m.resolver_paths = resolver_paths([s for s in every_sample if s.mode == "os"])
    return m


def resolver_paths(samples: Sequence[DnsSample]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per client and server of its OS resolver: queries, failures, success rate and the
    longest outage, measured like the VIPs but reported apart from them."""
    by: dict[tuple[str, str], list[DnsSample]] = defaultdict(list)
    for s in samples:
        by[(s.probe, s.server)].append(s)
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (probe, server), mine in sorted(by.items()):
        failed = sum(1 for s in mine if not s.ok)
        out[probe][server] = {"queries": len(mine), "failed": failed,
                              "success_rate": 1 - failed / len(mine),
                              "outage_s": outage_s(mine)}
    return dict(out)
