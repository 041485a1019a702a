"""Is the seed's pair ready? The checks behind acceptance 1 and 5, and a wait on them.

Why here: `lab up`, the bench ("time to ready") and the health scenario must agree on what
"ready" means: the preferred node holds every VIP, is DRBD Primary with both disks UpToDate and
Connected, has the disk mounted, runs dnsmasq and ddclient; the peer runs heartbeat only; the
clients hold leases; the registrar has heard from ddclient.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lab.services import registrar
from lab.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    from lab.lab import Lab


def readiness(lab: Lab, status: dict[str, Any] | None = None) -> dict[str, bool]:
    """Each readiness condition by name (pure over `lab.status()` plus two file reads)."""
    st = status if status is not None else lab.status()
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
        elif node.spec.role == "internet":
            checks["registrar updated by preferred"] = any(
                u.get("accepted") and u.get("node") == preferred for u in registrar.updates(node))
    return checks


def wait_ready(lab: Lab, timeout: float = 120.0, poll: float = 0.25) -> float:
    """Wait until every readiness check holds; returns the seconds waited. On timeout the
    error names the checks still failing and ends with the servers' heartbeat logs."""
    start = time.monotonic()
    try:
        wait_for(lambda: readiness(lab), until=lambda checks: bool(checks) and all(
            checks.values()), timeout=timeout, interval=poll, max_interval=poll,
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
