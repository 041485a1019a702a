"""The parts of a seed lab's time to ready, from a recorded run (events, ha-log, syslog)."""

from __future__ import annotations

import time

import pytest

from lab.services.bench import ready_parts


def wall(clock: str) -> float:
    return time.mktime(time.strptime(f"2026-11-30 {clock[:8]}", "%Y-%m-%d %H:%M:%S")) + float(
        "0" + clock[8:])


EVENTS = [
    {"event": "lab.up", "t_wall": wall("01:57:07.40")},
    {"event": "disk.boot", "node": "lsvm1", "seconds": 0.2, "t_wall": wall("01:57:07.80")},
    {"event": "node.boot", "node": "lsvm1", "boot_s": 0.3, "t_wall": wall("01:57:07.81")},
    {"event": "disk.boot", "node": "lsvm2", "seconds": 0.2, "t_wall": wall("01:57:08.10")},
    {"event": "disk.bootstrap", "sync_mkfs_s": 0.1, "files_s": 0.2,
     "t_wall": wall("01:57:08.40")},
    {"event": "node.boot", "node": "lsvm2", "boot_s": 1.0, "t_wall": wall("01:57:09.00")},
    {"event": "node.boot", "node": "c1", "boot_s": 0.1, "t_wall": wall("01:57:09.20")},
    {"event": "lab.ready", "waited_s": 34.0, "t_wall": wall("01:57:43.50")},
    {"event": "lab.up.timing", "total_s": 36.2, "switch_launch_s": 0.1, "populate_s": 0.2,
     "configuration_s": 0.3, "nodes_launch_s": 0.1, "nodes_wired_s": 0.1,
     "t_wall": wall("01:57:43.50")},
]
HA_LOG = """\
Nov 30 01:57:09 lsvm2 heartbeat: [52]: info: Local status now set to: 'active'
2026/11/30_01:57:19  ResourceManager(default)[281]:    info: Acquiring resource group: lsvm2 drbddisk::drbd0
2026/11/30_01:57:20  ResourceManager(default)[281]:    info: Running /etc/ha.d//resource.d/drbddisk drbd0 start
2026/11/30_01:57:21  ResourceManager(default)[281]:    info: Running /etc/ha.d//resource.d/IPv6addr 2001:db8:4100:13c2:0:ffff:c0a8:0104/64/enp2s1 start
2026/11/30_01:57:35  ResourceManager(default)[281]:    info: Running /etc/init.d/dnsmasq  start
"""  # noqa: E501
SYSLOG = """\
2026-11-30T01:57:35.250000 Nov 30 01:57:35 dnsmasq[1326]: started, version 2.90 cachesize 150
2026-11-30T01:57:35.384176 Nov 30 01:57:35 ddclient[1355]: SUCCESS:  updating @: good: IP address set to 203.0.113.1
2026-11-30T01:57:40.989108 Nov 30 01:57:40 dnsmasq-dhcp[1326]: DHCPACK(enp2s1.3) 192.168.3.123 02:00:c0:a8:03:91 g1
2026-11-30T01:57:43.250000 Nov 30 01:57:43 dnsmasq-dhcp[1326]: DHCPACK(enp2s1) 192.168.1.155 02:00:c0:a8:01:c1 c1
2026-11-30T01:57:44.000000 Nov 30 01:57:44 dnsmasq-dhcp[1326]: DHCPACK(enp2s1) 192.168.1.155 02:00:c0:a8:01:c1 c1
"""  # noqa: E501


def test_parts_of_a_recorded_run() -> None:
    parts = ready_parts(EVENTS, HA_LOG, SYSLOG)
    assert parts["total_s"] == 36.2
    assert parts["lab_network_and_containers_s"] == pytest.approx(0.5)
    assert parts["configuration_render_s"] == 0.3
    assert parts["disk_image_and_attach_s"] == pytest.approx(0.4)
    assert (parts["disk_sync_mkfs_s"], parts["disk_files_s"]) == (0.1, 0.2)
    assert parts["daemons_start_s"] == pytest.approx(1.4 - 0.7)
    assert parts["heartbeat_startup_delay_s"] == 10.0
    assert parts["heartbeat_resources_before_ipv6_s"] == 2.0
    assert parts["heartbeat_ipv6addr_agents_s"] == 14.0
    # from the last node booted (01:57:09.20) to dnsmasq's first line (01:57:35.25)
    assert parts["heartbeat_until_dnsmasq_s"] == pytest.approx(26.05)
    # each client's first ACK counts: c1's at 43.25, not its renewal at 44.0
    assert parts["clients_dhcp_backoff_s"] == pytest.approx(8.0)
    assert parts["clients_nudge_latency_s"] == 0.0
    assert parts["ddclient_after_dnsmasq_s"] == pytest.approx(0.134176)
    assert parts["readiness_polling_s"] == pytest.approx(0.25)
    # lab.up.timing's total began at 01:57:07.30; no launch event: the last boot stands in
    assert parts["lab_before_heartbeat_s"] == pytest.approx(1.9)
    assert parts["lab_own_s"] == pytest.approx(1.9 + 0.25)


def test_heartbeat_launch_and_nudge_split_the_critical_path() -> None:
    events = [*EVENTS[:5],
              {"event": "heartbeat.launch", "node": "lsvm1", "t_wall": wall("01:57:08.50")},
              {"event": "heartbeat.launch", "node": "lsvm2", "t_wall": wall("01:57:08.60")},
              *EVENTS[5:7],
              {"event": "client.dhcp_nudge", "node": "g1", "t_wall": wall("01:57:35.40")},
              {"event": "client.dhcp_nudge", "node": "c1", "t_wall": wall("01:57:35.50")},
              {"event": "lab.clients_ready", "t_wall": wall("01:57:43.30")},
              *EVENTS[7:]]
    parts = ready_parts(events, HA_LOG, SYSLOG)
    # heartbeat's share starts at the later launch, not at c1's boot after it
    assert parts["lab_before_heartbeat_s"] == pytest.approx(1.3)
    assert parts["heartbeat_until_dnsmasq_s"] == pytest.approx(26.65)
    assert parts["clients_nudge_latency_s"] == pytest.approx(0.25)
    assert parts["clients_dhcp_backoff_s"] == pytest.approx(7.75)
    # leases and SLAAC addresses seen at 43.30: polling is what follows
    assert parts["clients_configured_s"] == pytest.approx(7.8)
    assert parts["readiness_polling_s"] == pytest.approx(0.2)
    assert parts["lab_own_s"] == pytest.approx(1.3 + 0.25 + 0.2)
    # the critical path adds up: lab before heartbeat, heartbeat, nudge, clients, polling
    assert sum(parts[k] for k in ("lab_before_heartbeat_s", "heartbeat_until_dnsmasq_s",
                                  "clients_nudge_latency_s", "clients_configured_s",
                                  "readiness_polling_s")) == pytest.approx(36.2)


def test_no_parts_before_the_lab_was_ready() -> None:
    assert ready_parts(EVENTS[:-2], HA_LOG, SYSLOG) == {}
