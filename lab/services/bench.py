"""Time to ready of the seed's pair, per profile, broken into its parts.

"Ready" is lab.services.health.readiness (the same definition `lab up` and the health scenario
use). The parts come from three records of the run, all on the wall clock:
- the lab's event log: `lab.up.timing` (network and containers, configuration render),
  `disk.boot` / `disk.bootstrap` (the replicated disk), `node.boot` (each node's daemons
  started by the stack, heartbeat launched on the servers), `lab.ready`;
- the preferred node's ha-log (whole seconds), parsed by the timeline's own parser: heartbeat's
  start-up delay ('active' -> "Acquiring resource group": its hard-coded RQSTDELAY plus the
  initdead it waits for the peer), the resources before the IPv6 VIPs (drbddisk, Filesystem,
  IPaddr), the stock IPv6addr agents (each waits out DAD, then sends unsolicited NAs);
- the preferred node's syslog (microseconds): dnsmasq's start, each client's first DHCPACK,
  ddclient's updates.
The lab's own share is the critical path's part that is the lab's: everything before the pair's
heartbeats are launched, the time from dnsmasq serving to the lab's nudge of the clients (a fresh
dhclient where there is no lease, a router solicitation where there is no SLAAC address), and the
readiness polling after the last service was seen. Not the lab's:
heartbeat's (launch to dnsmasq started: its start-up delay, the resource agents), the clients'
DHCP exchange (or dhclient's retry backoff where no nudge came first) and SLAAC address (the
advertisement that answers the solicitation, then duplicate address detection unless the
profile's clients are optimistic), ddclient's update.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from datetime import datetime
from typing import Any

from lab.lab import Lab
from lab.probes.clock import ClockMap, sample_pair
from lab.probes.logparse import parse_ha_timestamp, parse_heartbeat_line
from lab.state import teardown

LAB_STEPS = ("switch_launch_s", "populate_s", "nodes_launch_s", "power_agent_s", "switch_s",
             "nodes_ready_s", "nodes_wired_s")
_SYSLOG = re.compile(r"^(?P<iso>\d{4}-\d\d-\d\dT[\d:.]+) \S+ +\d+ [\d:]+ "
                     r"(?P<proc>[\w.-]+)\[\d+\]: (?P<msg>.*)$")
_HA_STAMP = re.compile(r"^(?P<stamp>\d{4}/\d\d/\d\d_\d\d:\d\d:\d\d) ")

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


def syslog_times(text: str) -> list[tuple[float, str, str]]:
    """(wall time, process, message) of each line the lab's syslogd stamped (microseconds)."""
    out = []
    for line in text.splitlines():
        m = _SYSLOG.match(line)
        if m is not None:
            stamp = datetime.fromisoformat(m.group("iso"))
            out.append((time.mktime(stamp.timetuple()) + stamp.microsecond / 1e6,
                        m.group("proc"), m.group("msg")))
    return out


def ha_times(text: str) -> list[tuple[float, str]]:
    """(wall time, line) of each ha-log line in the resource agents' format (whole seconds)."""
    out = []
    for line in text.splitlines():
        m = _HA_STAMP.match(line)
        if m is not None:
            out.append((parse_ha_timestamp(m.group("stamp")), line))
    return out


def ready_parts(events: list[dict[str, Any]], ha_log: str, syslog: str) -> dict[str, float]:
    """The parts of one seed lab's time to ready, in seconds (pure: see the module's doc)."""
    def last(name: str) -> dict[str, Any] | None:
        return next((e for e in reversed(events) if e.get("event") == name), None)

    timing, ready = last("lab.up.timing"), last("lab.ready")
    if timing is None or ready is None:
        return {}
    total = float(timing["total_s"])
    began = float(timing["t_wall"]) - total
    parts: dict[str, float] = {
        "total_s": total,
        "lab_network_and_containers_s": sum(float(timing.get(k, 0.0)) for k in LAB_STEPS),
        "configuration_render_s": float(timing.get("configuration_s", 0.0)),
    }
    disk_boots = [e for e in events if e.get("event") == "disk.boot"]
    parts["disk_image_and_attach_s"] = sum(float(e["seconds"]) for e in disk_boots)
    bootstrap = last("disk.bootstrap")
    if bootstrap is not None:
        parts["disk_sync_mkfs_s"] = float(bootstrap["sync_mkfs_s"])
        parts["disk_files_s"] = float(bootstrap["files_s"])
    boots = [e for e in events if e.get("event") == "node.boot"]
    disk_total = (parts["disk_image_and_attach_s"] + parts.get("disk_sync_mkfs_s", 0.0)
                  + parts.get("disk_files_s", 0.0))
    for e in boots:
        parts[f"boot_{e['node']}_s"] = float(e["boot_s"])
    parts["daemons_start_s"] = sum(float(e["boot_s"]) for e in boots) - disk_total
    booted = max((float(e["t_wall"]) for e in boots), default=began)
    # heartbeat's time starts when the pair's heartbeats are launched: what the lab does after
    # that (the other nodes' boots, waiting for heartbeat to answer) overlaps its start-up
    # delay; older records have no launch event, and the last node booted stands in for it
    launches = [float(e["t_wall"]) for e in events if e.get("event") == "heartbeat.launch"]
    launched = max(launches, default=booted)
    parts["lab_before_heartbeat_s"] = launched - began
    nudges = [float(e["t_wall"]) for e in events if e.get("event") == "client.dhcp_nudge"]

    lines = syslog_times(syslog)
    dnsmasq = next((t for t, proc, _ in lines if t >= began and proc == "dnsmasq"), None)
    first_ack: dict[str, float] = {}
    for t, _, msg in lines:
        if t >= began and msg.startswith("DHCPACK"):
            first_ack.setdefault(msg.split()[-1], t)
    served = [t for t, proc, msg in lines if t >= began and proc == "ddclient"
              and msg.startswith("SUCCESS")]
    if dnsmasq is not None:
        parts["heartbeat_until_dnsmasq_s"] = dnsmasq - launched
        acks = max(first_ack.values(), default=dnsmasq)
        nudged = max((t for t in nudges if dnsmasq <= t <= acks), default=dnsmasq)
        # dnsmasq serving until the lab restarted the leaseless clients' dhclient: the lab's
        parts["clients_nudge_latency_s"] = nudged - dnsmasq
        # then each client's DISCOVER..ACK (or, not nudged, dhclient's own retry backoff)
        parts["clients_dhcp_backoff_s"] = max(0.0, acks - nudged)
        # ... and its SLAAC address (dnsmasq's first router advertisement), as the lab's
        # host-side look saw both (older records: the last ACK)
        seen = last("lab.clients_ready")
        configured = float(seen["t_wall"]) if seen is not None else acks
        parts["clients_configured_s"] = max(0.0, configured - nudged)
        if served:
            parts["ddclient_after_dnsmasq_s"] = max(0.0, min(served) - dnsmasq)
        parts["readiness_polling_s"] = max(0.0, float(ready["t_wall"])
                                           - max([configured, dnsmasq, *served]))
        parts["lab_own_s"] = (parts["lab_before_heartbeat_s"]
                              + parts["clients_nudge_latency_s"] + parts["readiness_polling_s"])
    agents = [(t, line) for t, line in ha_times(ha_log) if t >= began - 1]
    acquiring = next((t for t, line in agents if "Acquiring resource group" in line), None)
    first_v6 = next((t for t, line in agents if "Running" in line and "/IPv6addr " in line),
                    None)
    after_v6 = next((t for t, line in agents if "Running /etc/init.d/" in line), None)
    if acquiring is not None and first_v6 is not None:
        parts["heartbeat_resources_before_ipv6_s"] = first_v6 - acquiring
    if first_v6 is not None and after_v6 is not None:
        parts["heartbeat_ipv6addr_agents_s"] = after_v6 - first_v6
    phases = heartbeat_phases(ha_log, "")
    if "startup_delay_s" in phases:
        parts["heartbeat_startup_delay_s"] = phases["startup_delay_s"]
    return parts


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
        ha_log = lab[active].path("/var/log/ha-log").read_text()
        phases = heartbeat_phases(ha_log, active)
        heartbeat_s = sum(phases.values())
        syslog = lab[active].path("/var/log/syslog").read_text()
        parts = ready_parts(lab.events(), ha_log, syslog)
        return {"time_to_ready_s": total, "waiting_for_services_s": waited, **phases,
                "heartbeat_waits_s": heartbeat_s,
                "heartbeat_waits_share": heartbeat_s / total if total else None,
                "parts": parts}
    finally:
        teardown(name)


# fast's ready time varies by a second from lab to lab with heartbeat's own start (its children
# wait for their parent in 1 s sleeps when they run first), so a median needs several labs
REPEATS = {"fast": 5, "seed": 1}


def over_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several cold starts of one profile as one result: the run with the median time to ready
    (its fields as they were), every run's time, and the median of each part (pure)."""
    ordered = sorted(runs, key=lambda r: float(r["time_to_ready_s"]))
    middle = ordered[(len(ordered) - 1) // 2]
    keys = sorted({k for r in runs for k in r.get("parts", {})})
    return {**middle, "repeats": len(runs),
            "time_to_ready_s_all": [float(r["time_to_ready_s"]) for r in runs],
            "parts_median": {k: statistics.median(float(r["parts"][k]) for r in runs
                                                  if k in r.get("parts", {})) for k in keys}}


def run_all() -> dict[str, Any]:
    return {profile: over_runs([time_to_ready(profile) for _ in range(REPEATS[profile])])
            for profile in PROFILES}


if __name__ == "__main__":
    import json
    print(json.dumps(run_all(), indent=2))
