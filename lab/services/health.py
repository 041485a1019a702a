"""Is the seed's pair ready? The readiness checks, and a wait on them.

Why here: `lab up`, the bench ("time to ready") and the health scenario must agree on what
"ready" means: the preferred node holds every VIP, is DRBD Primary with both disks UpToDate and
Connected, has the disk mounted, runs dnsmasq and ddclient; the peer runs heartbeat only; the
clients hold leases, and a SLAAC address where the servers advertise a prefix; the registrar
has heard from ddclient.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import TYPE_CHECKING, Any

from lab.services import dhclient, registrar
from lab.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    from lab.lab import Lab


_RA_RANGE = re.compile(r"^\s*dhcp-range=.*\bconstructor:([\w.]+).*\bra-", re.M)


def advertised_segments(lab: Lab) -> set[str]:
    """Segments whose clients configure IPv6 from the servers' router advertisements: those
    of the interfaces the rendered dnsmasq.conf names in a `constructor:IFACE,...,ra-...`
    range (the seed advertises on VLAN 1 only)."""
    stack = lab.stack
    if stack is None or not hasattr(stack, "configs"):
        return set()
    segments: set[str] = set()
    for name, cfg in stack.configs(lab).items():
        conf = next((f.content for f in cfg.files if f.path.endswith("/dnsmasq.conf")), "")
        ifaces = set(_RA_RANGE.findall(conf))
        segments |= {i.segment for i in lab[name].spec.interfaces if i.name in ifaces}
    return segments


def _has_address_in(interfaces: dict[str, list[str]], prefix: Any) -> bool:
    for addrs in interfaces.values():
        for a in addrs:
            word = a.split()[0]
            if ":" in word and ipaddress.ip_interface(word).ip in prefix:
                return True
    return False


def readiness(lab: Lab, status: dict[str, Any] | None = None,
              advertised: set[str] | None = None) -> dict[str, bool]:
    """Each readiness condition by name (pure over `lab.status()` plus two file reads).
    ``advertised``: the segments with router advertisements (default: read from the rendered
    configuration); their clients must also hold a SLAAC address."""
    st = status if status is not None else lab.status()
    if advertised is None:
        advertised = advertised_segments(lab)
    stack = lab.stack
    preferred = stack.preferred(lab) if stack is not None and hasattr(stack, "preferred") else ""
    servers = [n.name for n in lab if n.spec.role == "server"]
    peers = [n for n in servers if n != preferred]
    svc = st.get("services", {})
    drbd = st.get("drbd", {})
    checks = {
        "vips on preferred": bool(st.get("vip")) and all(
            v == preferred for v in st["vip"].values()),
        "preferred runs dnsmasq+ddclient+heartbeat": all(svc.get(preferred, {}).values())
        and bool(svc.get(preferred)),
        "peers run heartbeat only": all(
            svc.get(p, {}) == {"heartbeat": True, "dnsmasq": False, "ddclient": False}
            for p in peers),
        "disk mounted on preferred only": st.get("mounts", {}).get(preferred) == ["/srv/drbd0"]
        and all(not st.get("mounts", {}).get(p) for p in peers),
    }
    if st.get("disk_mode") == "replicated":
        checks["drbd primary, connected, uptodate"] = (
            drbd.get(preferred, {}).get("role") == "Primary"
            and all(drbd.get(p, {}).get("role") == "Secondary" for p in peers)
            and all(drbd.get(n, {}).get("cstate") == "Connected"
                    and drbd.get(n, {}).get("dstate") == "UpToDate" for n in servers))
    for node in lab:
        if node.spec.role == "client":
            try:
                leases = node.path("/var/lib/dhcp/dhclient.leases").read_text()
            except FileNotFoundError:
                leases = ""
            checks[f"{node.name} has a lease"] = "fixed-address" in leases
            for iface in node.spec.interfaces:
                prefix = lab.topology.segments[iface.segment].ipv6
                if iface.segment in advertised and prefix is not None:
                    interfaces = st.get("nodes", {}).get(node.name, {}).get("interfaces", {})
                    checks[f"{node.name} has a SLAAC address"] = _has_address_in(
                        {iface.name: interfaces.get(iface.name, [])}, prefix)
        elif node.spec.role == "internet":
            checks["registrar updated by preferred"] = any(
                u.get("accepted") and u.get("node") == preferred for u in registrar.updates(node))
    return checks


# How long dnsmasq must have been running before a client still without a lease is nudged.
# A margin for dnsmasq to listen once the pid file status looks for exists (in the runs
# looked at, the nudged client's DISCOVER was answered at once); a client nudged too early
# retries on its own backoff. That dnsmasq binds before writing the pid file was not checked
# in its source.
NUDGE_AFTER_S = 0.1


class ClientNudger:
    """Restarts, once, the DHCP client of each client node still without a lease once dnsmasq
    serves. At `lab up` the clients boot with the servers and their dhclient backs off
    (seconds between DISCOVERs: 3.9 s of the fast profile's time to ready, 12.5 s of seed's)
    while heartbeat waits out its start-up delay; a fresh dhclient asks at once, as a device
    plugged in after the servers came up would. Only readiness uses it: a client's behaviour
    during a scenario is dhclient's own."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.serving_since: float | None = None
        self.nudged: set[str] = set()

    def __call__(self, status: dict[str, Any], checks: dict[str, bool]) -> None:
        if not any(s.get("dnsmasq") for s in status.get("services", {}).values()):
            self.serving_since = None
            return
        now = time.monotonic()
        if self.serving_since is None:
            self.serving_since = now
        if now - self.serving_since < NUDGE_AFTER_S:
            return
        for node in self.lab:
            if (node.spec.role == "client" and node.name not in self.nudged
                    and node.state == "running" and not checks.get(f"{node.name} has a lease")):
                self.nudged.add(node.name)
                dhclient.restart(node, node.spec.interfaces[0].name)
                self.lab.log_event("client.dhcp_nudge", node=node.name)


def wait_ready(lab: Lab, timeout: float = 120.0, poll: float = 0.25) -> float:
    """Wait until every readiness check holds; returns the seconds waited. On timeout the
    error names the checks still failing and ends with the servers' heartbeat logs."""
    start = time.monotonic()
    nudge = ClientNudger(lab)
    advertised = advertised_segments(lab)

    def look() -> dict[str, bool]:
        status = lab.status()
        checks = readiness(lab, status, advertised)
        nudge(status, checks)
        return checks
    try:
        wait_for(look, until=lambda checks: bool(checks) and all(checks.values()),
                 timeout=timeout, interval=poll, max_interval=poll,
                 what=f"lab {lab.name} to be ready")
    except WaitTimeout as exc:
        checks = exc.last if isinstance(exc.last, dict) else {}
        failing = [k for k, ok in checks.items() if not ok]
        detail = ""
        for node in lab:
            if node.spec.role == "server" and node.state == "running":
                _, tail = node.execute("tail -n 8 /var/log/ha-log", timeout=10)
                detail += f"\n--- {node.name} ha-log ---\n{tail}"
        raise TimeoutError(f"lab {lab.name} not ready after {timeout} s: {', '.join(failing)}"
                           f"{detail}") from None
    return time.monotonic() - start
