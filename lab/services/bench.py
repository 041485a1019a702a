"""Time to ready of the seed's pair, per profile, and how much of it heartbeat's own waits are.

"Ready" is lab.services.health.readiness (the same definition `lab up` and the health scenario
use). The split comes from the preferred node's ha-log, parsed by the timeline's own parser:
- start-up delay: heartbeat going 'active' -> "Acquiring resource group" (its hard-coded
  RQSTDELAY plus the initdead it waits for the peer);
- IPv6addr: the stock agent's two starts (it waits out DAD, then sends unsolicited NAs);
- the rest of the resource group (drbddisk, Filesystem, IPaddr, dnsmasq, ddclient).
"""

from __future__ import annotations

import os
import time
from typing import Any

from lab.lab import Lab
from lab.probes.clock import ClockMap, sample_pair
from lab.probes.logparse import parse_heartbeat_line
from lab.state import teardown

PROFILES = ("fast", "seed")


def heartbeat_phases(ha_log: str, node: str) -> dict[str, float]:
    """Seconds spent in heartbeat's own phases, from an ha-log (whole-second timestamps)."""
    clock = ClockMap(sample_pair())
    events = [e for e in (parse_heartbeat_line(line, node, clock) for line in
                          ha_log.splitlines()) if e is not None]

    def first(text: str) -> float | None:
        return next((e.t for e in events if text in e.message), None)

    phases: dict[str, float] = {}
    active = first("Local status now set to: 'active'")
    acquiring = first("Acquiring resource group")
    if active is not None and acquiring is not None:
        phases["startup_delay_s"] = acquiring - active
    # in log order: the first IPv6addr start until the next resource that is not IPv6addr
    runs = [e for e in events if e.message.startswith("Running /etc/")]
    v6 = [i for i, e in enumerate(runs) if "/IPv6addr " in e.message]
    if v6 and v6[-1] + 1 < len(runs):
        phases["ipv6addr_s"] = runs[v6[-1] + 1].t - runs[v6[0]].t
    return phases


def time_to_ready(profile: str) -> dict[str, Any]:
    name = f"sb{os.getpid() % 100000}{profile[0]}"
    lab = Lab.create(name, profile=profile, stack="seed")
    try:
        t0 = time.monotonic()
        lab.up()  # returns once ready (SeedStack.wait_ready)
        total = time.monotonic() - t0
        waited = next((e.get("waited_s") for e in reversed(lab.events())
                       if e.get("event") == "lab.ready"), None)
        active = lab.active().name  # ready means it holds everything
        phases = heartbeat_phases(lab[active].path("/var/log/ha-log").read_text(), active)
        heartbeat_s = sum(phases.values())
        return {"time_to_ready_s": total, "waiting_for_services_s": waited, **phases,
                "heartbeat_waits_s": heartbeat_s,
                "heartbeat_waits_share": heartbeat_s / total if total else None}
    finally:
        teardown(name)


def run_all() -> dict[str, Any]:
    return {profile: time_to_ready(profile) for profile in PROFILES}


if __name__ == "__main__":
    import json
    print(json.dumps(run_all(), indent=2))
