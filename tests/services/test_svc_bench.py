"""The bench of the seed's pair: heartbeat's phases from a recorded ha-log (a real lab's, lsvm2,
profile fast), and several cold starts read as one result."""

from __future__ import annotations

from lab.services.bench import heartbeat_phases

RECORDED = """\
Nov 26 07:58:06 lsvm2 heartbeat: [145]: info: Local status now set to: 'up'
Nov 26 07:58:07 lsvm2 heartbeat: [145]: info: Local status now set to: 'active'
2026/11/26_07:58:17  ResourceManager(default)[343]:    info: Acquiring resource group: lsvm2 drbddisk::drbd0
2026/11/26_07:58:18  ResourceManager(default)[343]:    info: Running /etc/ha.d//resource.d/drbddisk drbd0 start
2026/11/26_07:58:18  ResourceManager(default)[343]:    info: Running /etc/ha.d//resource.d/IPv6addr 2001:db8:4100:13c2:0:ffff:c0a8:0104/64/enp2s1 start
2026/11/26_07:58:25  ResourceManager(default)[343]:    info: Running /etc/ha.d//resource.d/IPv6addr 2001:db8:4100:13c2:0:ffff:c0a8:0304/64/enp2s1.3 start
2026/11/26_07:58:32  ResourceManager(default)[343]:    info: Running /etc/init.d/dnsmasq  start
"""  # noqa: E501


def test_phases_from_a_recorded_ha_log() -> None:
    phases = heartbeat_phases(RECORDED, "lsvm2")
    assert phases == {"startup_delay_s": 10.0, "ipv6addr_s": 14.0}


def test_no_phases_when_heartbeat_never_acquired() -> None:
    assert heartbeat_phases(RECORDED.splitlines()[0] + "\n", "lsvm2") == {}


def test_several_cold_starts_read_as_their_median() -> None:
    from lab.services.bench import over_runs
    runs = [{"time_to_ready_s": t, "active": f"run{i}", "parts": {"lab_own_s": own}}
            for i, (t, own) in enumerate([(12.8, 0.7), (11.3, 0.5), (12.0, 0.9)])]
    result = over_runs(runs)
    assert result["time_to_ready_s"] == 12.0 and result["active"] == "run2"
    assert result["time_to_ready_s_all"] == [12.8, 11.3, 12.0]
    assert result["parts_median"] == {"lab_own_s": 0.7}
    assert result["repeats"] == 3
