"""Audits on recorded status and log data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab import audits

HEALTHY: dict[str, Any] = {
    "vip": {"192.168.1.4": "lsvm2", "2001:db8:4100:13c2:0:ffff:c0a8:104": "lsvm2"},
    "services": {"lsvm1": {"dnsmasq": False}, "lsvm2": {"dnsmasq": True}},
    "drbd": {"lsvm1": {"role": "Secondary", "cstate": "Connected", "dstate": "UpToDate"},
             "lsvm2": {"role": "Primary", "cstate": "Connected", "dstate": "UpToDate"}},
    "nodes": {"lsvm1": {"interfaces": {"enp2s1": ["192.168.1.6/24"]}},
              "lsvm2": {"interfaces": {"enp2s1": ["192.168.1.7/24", "192.168.1.4/24 (enp2s1:0)",
                                                  "2001:db8:4100:13c2:0:ffff:c0a8:104/64"]}}},
}


def split(status: dict[str, Any], **changes: object) -> dict[str, Any]:
    return {**status, **changes}


def test_healthy_status_has_no_findings() -> None:
    assert audits.state_findings(HEALTHY) == []


def test_vip_on_both_nodes_is_found_although_status_names_one() -> None:
    nodes = {"lsvm1": {"interfaces": {"enp2s1": ["192.168.1.6/24", "192.168.1.4/24"]}},
             "lsvm2": HEALTHY["nodes"]["lsvm2"]}
    found = audits.vip_findings(split(HEALTHY, nodes=nodes))
    assert [str(f) for f in found] == ["[vips] 192.168.1.4 is held by 2 nodes (lsvm1, lsvm2)"]


def test_vip_held_by_nobody() -> None:
    status = split(HEALTHY, vip={"192.168.1.4": None}, nodes={})
    assert [str(f) for f in audits.vip_findings(status)] == [
        "[vips] 192.168.1.4 is held by 0 nodes (none)"]


def test_dnsmasq_twice_and_drbd_standalone() -> None:
    status = split(HEALTHY, services={"lsvm1": {"dnsmasq": True}, "lsvm2": {"dnsmasq": True}},
                   drbd={"lsvm1": {"role": "Primary", "cstate": "StandAlone",
                                   "dstate": "UpToDate"},
                         "lsvm2": {"role": "Primary", "cstate": "StandAlone",
                                   "dstate": "UpToDate"}})
    assert [str(f) for f in audits.state_findings(status)] == [
        "[dnsmasq] dnsmasq runs on 2 nodes (lsvm1, lsvm2)",
        "[drbd] lsvm1: Primary StandAlone/UpToDate",
        "[drbd] lsvm2: Primary StandAlone/UpToDate",
        "[drbd] 2 Primary (lsvm1, lsvm2)"]
    assert [f.audit for f in audits.state_findings(status, skip=["drbd"])] == ["dnsmasq"]


RECORDED_HA_LOG = """\
Nov 26 07:33:09 lsvm1 heartbeat: [49]: ERROR: Cannot lock ourselves into memory:  System limits on locked-in memory are too small.
Nov 26 07:33:09 lsvm1 heartbeat: [48]: WARN: Initial dead time [3000 ms] may be too small!
Nov 26 07:35:11 lsvm1 ResourceManager(default)[5120]: ERROR: Return code 1 from /etc/ha.d/resource.d/drbddisk
Nov 26 07:35:11 lsvm1 ResourceManager(default)[5120]: CRIT: Giving up resources due to failure of drbddisk::drbd0
"""  # noqa: E501


def test_bad_news_in_logs_with_ignore_lists() -> None:
    found = audits.log_findings({"lsvm1/ha-log": RECORDED_HA_LOG})
    assert [f.message.split(": ", 1)[0] for f in found] == ["lsvm1/ha-log"] * 2
    assert "Return code 1 from /etc/ha.d/resource.d/drbddisk" in found[0].message
    assert "Giving up resources" in found[1].message
    assert audits.log_findings({"lsvm1/ha-log": RECORDED_HA_LOG},
                               ignore=[r"drbddisk"]) == []


def test_read_logs_from_offsets(tmp_path: Path) -> None:
    (tmp_path / "lsvm1").mkdir()
    (tmp_path / "lsvm1" / "ha-log").write_text("old line\nnew ERROR: line\n")
    logs = audits.read_logs({"lsvm1": tmp_path / "lsvm1"}, {"lsvm1/ha-log": 9})
    assert logs == {"lsvm1/ha-log": "new ERROR: line\n"}


def test_evidence_names_the_vips_resource_lines_in_any_spelling() -> None:
    ha_log = (
        "2026/11/26_09:09:46  ResourceManager(default)[497]:    info: Running "
        "/etc/ha.d//resource.d/IPv6addr 2001:db8:4100:13c2:0:ffff:c0a8:0104/64/enp2s1 start\n"
        "2026/11/26_09:09:53  /usr/lib/ocf/resource.d//heartbeat/IPv6addr(IPv6addr_2001:db8:"
        "4100:13c2:0:ffff:c0a8:0304/64/enp2s1.3)[1217]:    INFO:  Running OK\n"
        "Nov 26 09:09:45 lsvm1 heartbeat: [29]: WARN: node lsvm2: is dead\n")
    found = audits.vip_findings(split(HEALTHY, vip={"2001:db8:4100:13c2:0:ffff:c0a8:304": None},
                                      nodes={}))
    lines = audits.evidence(found, {"lsvm1/ha-log": ha_log, "lsvm1/syslog": ha_log})
    assert len(lines) == 1 and lines[0].startswith("lsvm1/ha-log: ")
    assert lines[0].endswith("INFO:  Running OK")


def test_evidence_for_drbd_is_the_nodes_last_events() -> None:
    found = [audits.Finding("drbd", "lsvm1: Primary StandAlone/UpToDate", "lsvm1")]
    events = "".join(f'{{"n": {i}}}\n' for i in range(10))
    lines = audits.evidence(found, {"lsvm1/drbd-events.log": events}, lines=2)
    assert lines == ['lsvm1/drbd-events.log: {"n": 8}', 'lsvm1/drbd-events.log: {"n": 9}']
