"""Timeline: record round-trips, merge order, wall→monotonic conversion, log parsers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.probes.clock import ClockMap, ClockPair, sample_pair
from lab.probes.logparse import (
    parse_dnsmasq_line,
    parse_ha_timestamp,
    parse_heartbeat_line,
    parse_replicator_line,
    parse_syslog_timestamp,
)
from lab.probes.records import (
    DhcpEvent,
    DnsSample,
    FaultEvent,
    LeaseSnapshot,
    LogEvent,
    Record,
    VipEvent,
    from_json,
    to_json,
)
from lab.timeline import Header, Timeline, build, merge

# A run that started at 2026-11-26 06:30:00.250 UTC, monotonic 1000.0
WALL0 = datetime(2026, 11, 26, 6, 30, 0, 250000, tzinfo=UTC).timestamp()
CLOCK = ClockMap(ClockPair(wall=WALL0, mono=1000.0))


# -- clock -------------------------------------------------------------------------------
def test_sample_pair_brackets_the_real_clocks() -> None:
    pair = sample_pair()
    assert pair.err_s >= 0
    assert abs((time.time() - time.monotonic()) - (pair.wall - pair.mono)) < 0.01


def test_second_resolution_stamp_maps_to_start_of_its_second() -> None:
    # a log line stamped 06:30:01 was written in [06:30:01.000, 06:30:02.000) wall, which is
    # [1000.75, 1001.75) monotonic since the run began at .250 past 06:30:00
    wall = parse_ha_timestamp("2026/11/26_06:30:01", UTC)
    assert CLOCK.to_mono(wall) == pytest.approx(1000.75)


def test_interpolates_between_start_and_end_pairs() -> None:
    # wall clock slewed +0.1 s over 100 s of run
    cm = ClockMap(ClockPair(1_000_000.0, 50.0), ClockPair(1_000_100.1, 150.0))
    assert cm.drift_s == pytest.approx(0.1)
    assert cm.to_mono(1_000_000.0) == pytest.approx(50.0)
    assert cm.to_mono(1_000_100.1) == pytest.approx(150.0)
    assert cm.to_mono(1_000_050.05) == pytest.approx(100.0)


@given(st.floats(min_value=-1e5, max_value=1e5, allow_nan=False))
def test_to_wall_inverts_to_mono(delta: float) -> None:
    cm = ClockMap(ClockPair(1_700_000_000.0, 500.0), ClockPair(1_700_200_000.0, 200_500.3))
    mono = 500.0 + abs(delta)
    assert cm.to_mono(cm.to_wall(mono)) == pytest.approx(mono, abs=1e-6)


def test_clockmap_roundtrips_through_dict() -> None:
    cm = ClockMap(ClockPair(1.5, 2.5, 1e-7), ClockPair(3.5, 4.5))
    assert ClockMap.from_dict(cm.to_dict()) == cm


# -- timestamps ---------------------------------------------------------------------------
def test_syslog_timestamp_picks_year_nearest_the_run() -> None:
    ref = datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC).timestamp()
    # a line written just before midnight on New Year's Eve belongs to the previous year
    got = parse_syslog_timestamp("Dec 31 23:59:58", ref, UTC)
    assert got == datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC).timestamp()


def test_syslog_timestamp_space_and_zero_padded_days() -> None:
    ref = datetime(2026, 11, 6, 12, 0, tzinfo=UTC).timestamp()
    a = parse_syslog_timestamp("Nov  6 06:30:01", ref, UTC)
    b = parse_syslog_timestamp("Nov 06 06:30:01", ref, UTC)
    assert a == b == datetime(2026, 11, 6, 6, 30, 1, tzinfo=UTC).timestamp()


def test_timezone_is_applied() -> None:
    tz = timezone(timedelta(hours=-5))
    got = parse_ha_timestamp("2026/11/26_01:30:01", tz)
    assert got == datetime(2026, 11, 26, 6, 30, 1, tzinfo=UTC).timestamp()


# -- heartbeat ----------------------------------------------------------------------------
def test_heartbeat_plain_format() -> None:
    ev = parse_heartbeat_line(
        "heartbeat[123]: 2026/11/26_06:30:01 WARN: node lsvm2: is dead", "lsvm1", CLOCK, UTC
    )
    assert ev is not None
    assert (ev.process, ev.pid, ev.level, ev.source) == ("heartbeat", 123, "warn", "heartbeat")
    assert ev.message == "node lsvm2: is dead"
    assert ev.t == pytest.approx(1000.75)
    assert ev.t_res_s == 1.0


def test_heartbeat_syslog_format() -> None:
    ev = parse_heartbeat_line(
        "Nov 26 06:30:02 lsvm2 heartbeat: [4567]: info: Link lsvm1:enp2s1 dead.",
        "lsvm2", CLOCK, UTC,
    )
    assert ev is not None
    assert (ev.pid, ev.level, ev.message) == (4567, "info", "Link lsvm1:enp2s1 dead.")
    assert ev.t == pytest.approx(1001.75)


def test_resource_script_formats_both_datefmts() -> None:
    # as ocf-shellfuncs' ha_log writes them (two spaces after the date, four before the text)
    hb = "2026/11/26_06:30:03  ResourceManager(default)[456]:    info: Running IPaddr start"
    ocf = "Nov 26 06:30:03  IPaddr(IPaddr_192.168.1.4)[789]:    INFO: Adding inet address"
    a = parse_heartbeat_line(hb, "lsvm1", CLOCK, UTC)
    b = parse_heartbeat_line(ocf, "lsvm1", CLOCK, UTC)
    assert a is not None and b is not None
    assert (a.process, a.source, a.fields["instance"], a.level) == (
        "ResourceManager", "resource", "default", "info"
    )
    assert (b.process, b.fields["instance"], b.message) == (
        "IPaddr", "IPaddr_192.168.1.4", "Adding inet address"
    )
    assert a.t == b.t == pytest.approx(1002.75)


def test_non_log_lines_are_skipped() -> None:
    assert parse_heartbeat_line(">>>", "n", CLOCK) is None
    assert parse_heartbeat_line("", "n", CLOCK) is None
    assert parse_dnsmasq_line("garbage", "n", CLOCK) is None


# -- dnsmasq ------------------------------------------------------------------------------
def test_dnsmasq_dhcpack() -> None:
    ev = parse_dnsmasq_line(
        "Nov 26 06:30:01 dnsmasq-dhcp[77]: DHCPACK(enp2s1) 192.168.1.50 aa:bb:cc:dd:ee:01 host1",
        "lsvm2", CLOCK, UTC,
    )
    assert ev is not None
    assert ev.fields == {
        "type": "DHCPACK", "iface": "enp2s1", "ip": "192.168.1.50",
        "mac": "aa:bb:cc:dd:ee:01", "hostname": "host1",
    }
    assert ev.t == pytest.approx(1000.75)


def test_dnsmasq_log_dhcp_serial_and_nak_reason() -> None:
    ev = parse_dnsmasq_line(
        "Nov 26 06:30:01 dnsmasq-dhcp[77]: 3795811090 DHCPNAK(enp2s1) 192.168.1.50 "
        "aa:bb:cc:dd:ee:01 address not available",
        "lsvm1", CLOCK, UTC,
    )
    assert ev is not None
    assert ev.fields["serial"] == 3795811090
    assert ev.fields["type"] == "DHCPNAK"
    assert ev.fields["reason"] == "address not available"


def test_dnsmasq_non_dhcp_line() -> None:
    ev = parse_dnsmasq_line("Nov 26 06:30:01 dnsmasq[77]: started, version 2.90", "n", CLOCK, UTC)
    assert ev is not None and ev.fields == {} and ev.process == "dnsmasq"


# -- replicator ---------------------------------------------------------------------------
def test_replicator_event_keeps_its_monotonic_time() -> None:
    line = json.dumps({"t_mono": 1234.5, "event": "peer-lost", "role": "Primary"})
    ev = parse_replicator_line(line, "lsvm1")
    assert ev is not None
    assert (ev.t, ev.message, ev.t_res_s) == (1234.5, "peer-lost", 0)
    assert ev.fields == {"role": "Primary"}
    assert parse_replicator_line("not json", "n") is None
    assert parse_replicator_line('{"event": "no time"}', "n") is None


# -- records and merge --------------------------------------------------------------------
SAMPLES: list[Record] = [
    DnsSample(t=1.0, probe="c1", server="192.168.1.4", name="lsvm1.internal.thesteins.org",
              qtype="A", transport="udp", rcode="NOERROR", latency_s=0.001,
              answers=("192.168.1.6",), node="lsvm2", mac="52:54:00:63:1e:59"),
    DhcpEvent(t=1.5, client="02:00:00:00:00:01", event="bound", state="BOUND",
              address="192.168.1.50", server_id="192.168.1.7"),
    FaultEvent(t=0.5, phase="start", fault="crash", fault_id="f1", targets=("lsvm2",)),
    LogEvent(t=0.7, node="lsvm1", source="heartbeat", message="x", fields={"a": [1, 2]}),
    VipEvent(t=0.9, vip="192.168.1.4", holders=("lsvm1",)),
    LeaseSnapshot(t=2.0, node="lsvm1", label="after",
                  entries=(("02:00:00:00:00:01", "192.168.1.50", "h1"),)),
]


@pytest.mark.parametrize("rec", SAMPLES, ids=lambda r: r.kind)
def test_records_roundtrip_json(rec: Record) -> None:
    assert from_json(to_json(rec)) == rec


def test_merge_orders_by_time_stably() -> None:
    a = [DnsSample(t=t, probe="a", server="s", name="n", qtype="A", transport="udp",
                   rcode="NOERROR") for t in (1.0, 2.0, 3.0)]
    b = [FaultEvent(t=2.0, phase="start", fault="crash", fault_id="x"),
         FaultEvent(t=0.5, phase="end", fault="crash", fault_id="y")]
    got = merge(a, b)
    assert [r.t for r in got] == [0.5, 1.0, 2.0, 2.0, 3.0]
    assert isinstance(got[2], DnsSample)  # equal stamps keep input order


def test_timeline_file_roundtrip_and_torn_line(tmp_path: Path) -> None:
    header = Header.start("run-1", seed=42, scenario="unit").finish()
    tl = Timeline(header, merge(SAMPLES))
    path = tmp_path / "timeline.jsonl"
    tl.dump(path)
    with path.open("a") as f:
        f.write('{"kind":"dns","t":9')  # a probe killed mid-write
    back = Timeline.load(path)
    assert back.header.run_id == "run-1" and back.header.seed == 42
    assert back.header.meta == {"scenario": "unit"}
    assert back.records == tl.records


def test_build_reads_probe_streams_and_logs(tmp_path: Path) -> None:
    probe = tmp_path / "dns-c1.jsonl"
    probe.write_text("\n".join(to_json(r) for r in SAMPLES[:2]) + "\n")
    hb = tmp_path / "ha-log"
    hb.write_text("heartbeat[1]: 2026/11/26_06:30:01 info: x\nnot a line\n")
    dm = tmp_path / "dnsmasq.log"
    dm.write_text("Nov 26 06:30:00 dnsmasq-dhcp[2]: DHCPACK(eth0) 10.0.0.2 02:00:00:00:00:01\n")
    tl = build(
        Header("r", CLOCK), jsonl=[probe, tmp_path / "missing.jsonl"],
        logs=[(hb, "lsvm1", "heartbeat"), (dm, "lsvm1", "dnsmasq")],
        records=[SAMPLES[2]], tz=UTC,
    )
    kinds = [r.kind for r in tl.records]
    assert kinds == ["fault", "dns", "dhcp", "log", "log"]
    assert [r.t for r in tl.records] == sorted(r.t for r in tl.records)
    logs = tl.of(LogEvent)
    assert {e.source for e in logs} == {"heartbeat", "dnsmasq"}


# -- real logs recorded from a lab (tests/data) -------------------------------------------
DATA = Path(__file__).parent / "data"


def _lab_clock() -> tuple[ClockMap, dict[str, float]]:
    """The lab's own (wall, mono) pairs from its events.jsonl, and node start times."""
    events = [json.loads(x) for x in (DATA / "lab-events.probe1.jsonl").read_text().splitlines()]
    up = events[0]
    starts = {e["node"]: e["t_mono"] for e in events if e["event"] == "node.start"}
    return ClockMap(ClockPair(up["t_wall"], up["t_mono"])), starts


def test_every_line_of_a_real_ha_log_parses_and_lines_up_with_the_lab() -> None:
    clock, starts = _lab_clock()
    lines = [x for x in (DATA / "ha-log.lsvm2.txt").read_text().splitlines() if x.strip()]
    events = [parse_heartbeat_line(x, "lsvm2", clock, UTC) for x in lines]
    unparsed = [x for x, e in zip(lines, events, strict=True) if e is None]
    assert unparsed == []
    evs = [e for e in events if e is not None]
    # heartbeat's first line is written right after the lab started lsvm2: the converted
    # time (start of its second) must sit within a second of that
    assert starts["lsvm2"] - 1.0 <= evs[0].t <= starts["lsvm2"] + 1.0
    agents = {e.process for e in evs if e.source == "resource"}
    assert {"ResourceManager", "IPaddr", "IPv6addr", "Filesystem"} <= agents
    levels = {e.level for e in evs}
    assert {"info", "warn", "error", "crit"} <= levels


def test_real_replicator_events_parse() -> None:
    lines = (DATA / "drbd-events.lsvm2.jsonl").read_text().splitlines()
    evs = [parse_replicator_line(x, "lsvm2") for x in lines if x.strip()]
    assert evs and all(e is not None for e in evs)
    first = evs[0]
    assert first is not None and first.message == "change" and first.fields["cstate"]


def test_dhclient_hook_events_become_dhcp_events() -> None:
    from lab.probes.logparse import parse_dhclient_event_line

    ev = parse_dhclient_event_line(
        '{"t_mono": 12.5, "reason": "RENEW", "interface": "eth0", "mac": "02:00:c0:a8:01:c1",'
        ' "ip": "192.168.1.30", "server_id": "192.168.1.7", "lease_s": "43200"}', "c1")
    assert ev is not None
    assert (ev.event, ev.client, ev.address, ev.server_id, ev.lease_s, ev.probe) == (
        "renewed", "02:00:c0:a8:01:c1", "192.168.1.30", "192.168.1.7", 43200, "dhclient@c1")
    assert parse_dhclient_event_line('{"t_mono": 1, "reason": "MEDIUM"}', "c1") is None


def test_registrar_record_becomes_updates_on_the_timeline_and_in_the_metrics() -> None:
    from lab import checks
    from lab.probes.logparse import parse_registrar_line
    from lab.probes.records import RegistrarUpdate
    recorded = Path(__file__).with_name("data") / "registrar.jsonl"  # three accepted, one not
    first = parse_registrar_line(recorded.read_text().splitlines()[0])
    assert first == RegistrarUpdate(t=11614.796714866, host="@.thesteins.org", ip="203.0.113.1",
                                    ok=True, node="lsvm2")
    assert parse_registrar_line("not json") is None
    tl = build(Header("r", CLOCK), logs=[(recorded, "inet", "registrar")])
    updates = tl.of(RegistrarUpdate)
    assert [u.ok for u in updates] == [True, True, True, False]
    assert updates[-1].node is None
    assert checks.metrics(tl).registrar_updates == {"ok": 3, "failed": 1}
