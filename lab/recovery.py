"""What the pair settled into once a fault was over, named.

After a split the seed's pair does not always come back healthy: heartbeat's resource
negotiation and DRBD's reconnect race each other, and which one wins decides the ending (finding
F23). A scenario that ends in such a race cannot honestly demand "healthy"; it names the endings
it knows (`Lab.expect_settled("healthy", "unserved")`), and any other ending fails it with the
state that was seen. Each ending is defined by what clients and the replicated disk see, never
by which node the design prefers, so the same names fit other designs' pairs.

Pure: a classifier over `lab.status()`, unit-tested on recorded states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab import audits

HEALTHY = "healthy"
UNSERVED = "unserved"
SERVED_UNREPLICATED = "served-unreplicated"
SERVED_ALONE = "served-alone"
UNEXPLAINED = "unexplained"

# What each ending means, as a person reading a failure needs it.
MEANING = {
    HEALTHY: "one node holds every VIP and runs dnsmasq; both disks Connected/UpToDate",
    UNSERVED: "no node holds any VIP or runs dnsmasq, and nothing is about to change that: "
              "clients go unserved until an operator acts",
    SERVED_UNREPLICATED: "one node holds every VIP, runs dnsmasq and is the only Primary, but "
                         "the replicated disk is disconnected (StandAlone): clients are served, "
                         "nothing is replicated until an operator reconnects it",
    SERVED_ALONE: "one node holds every VIP, runs dnsmasq and is the only Primary; its "
                  "replica waits for a peer that is not there (WFConnection)",
    UNEXPLAINED: "none of the named endings",
}
# The audit's state checks that each ending breaks on purpose (the others still apply).
BREAKS = {
    HEALTHY: (),
    UNSERVED: ("vips", "dnsmasq", "drbd"),
    SERVED_UNREPLICATED: ("drbd",),
    SERVED_ALONE: ("drbd",),
    UNEXPLAINED: (),
}
ENDINGS = tuple(MEANING)


@dataclass(frozen=True)
class Recovery:
    """One settled state, classified: its ending, the server left serving (if one is), and the
    audit's findings on it."""

    ending: str
    server: str | None
    findings: tuple[str, ...]

    def __str__(self) -> str:
        where = f" (serving: {self.server})" if self.server else ""
        seen = "; ".join(self.findings) or "no findings"
        return f"{self.ending}{where}: {MEANING[self.ending]} — {seen}"


def classify(status: Mapping[str, Any]) -> Recovery:
    """Name the ending `status` shows."""
    findings = tuple(str(f) for f in audits.state_findings(status))
    if not findings:
        return Recovery(HEALTHY, _serving(status), findings)
    holders = audits.holders_by_vip(status)
    dnsmasq = _dnsmasq_nodes(status)
    if not any(holders.values()) and not dnsmasq:
        return Recovery(UNSERVED, None, findings)
    server = _serving(status)
    drbd = status.get("drbd") or {}
    primaries = {n for n, s in drbd.items() if s.get("role") == "Primary"}
    if server is not None and dnsmasq == {server} and primaries == {server}:
        if any(s.get("cstate") == "StandAlone" for s in drbd.values()):
            return Recovery(SERVED_UNREPLICATED, server, findings)
        if drbd.get(server, {}).get("cstate") == "WFConnection" and len(drbd) == 1:
            return Recovery(SERVED_ALONE, server, findings)
    return Recovery(UNEXPLAINED, server, findings)


def signature(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must stay unchanged for the pair to count as settled: who holds each VIP, where
    dnsmasq runs, and each replica's role and connection and disk state."""
    holders = tuple(sorted((vip, tuple(sorted(nodes)))
                           for vip, nodes in audits.holders_by_vip(status).items()))
    drbd = tuple(sorted((node, s.get("role"), s.get("cstate"), s.get("dstate"))
                        for node, s in (status.get("drbd") or {}).items()))
    return holders, tuple(sorted(_dnsmasq_nodes(status))), drbd


def _serving(status: Mapping[str, Any]) -> str | None:
    """The one node holding every VIP, if there is one."""
    owners = {tuple(sorted(nodes)) for nodes in audits.holders_by_vip(status).values()}
    if len(owners) == 1:
        (nodes,) = owners
        if len(nodes) == 1:
            return nodes[0]
    return None


def _dnsmasq_nodes(status: Mapping[str, Any]) -> set[str]:
    return {n for n, s in (status.get("services") or {}).items() if s.get("dnsmasq")}
