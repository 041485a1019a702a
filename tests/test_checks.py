"""Checks on hand-made timelines, incl. the issue's edge cases; recorded timelines from real
lab runs in tests/data/ are checked in tests/test_checks_recorded section at the bottom."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from lab import checks
from lab.probes.clock import ClockMap, ClockPair
from lab.probes.records import (
    DhcpEvent,
    DnsSample,
    FaultEvent,
    LeaseSnapshot,
    Record,
    RegistrarUpdate,
    VipEvent,
)
from lab.timeline import Header, Timeline, merge

VIP = "192.168.1.4"
HDR = Header("unit", ClockMap(ClockPair(0.0, 0.0)))
DATA = Path(__file__).parent / "data"


def q(t: float, node: str | None = "lsvm2", rcode: str = "NOERROR", lat: float | None = 0.001,
      server: str = VIP, probe: str = "c1", name: str = "lsvm1.internal.thesteins.org",
      qtype: str = "A", answers: tuple[str, ...] = ()) -> DnsSample:
    if rcode == "timeout":
        lat, node = None, None
    return DnsSample(t=t, probe=probe, server=server, name=name, qtype=qtype, transport="udp",
                     rcode=rcode, latency_s=lat, node=node, answers=answers)


def steady(t0: float, t1: float, node: str = "lsvm2", hz: float = 20.0, **kw: object) -> list[
    DnsSample
]:
    n = round((t1 - t0) * hz)
    return [q(t0 + i / hz, node, **kw) for i in range(n)]  # type: ignore[arg-type]


def crash(t: float, node: str = "lsvm2", fid: str = "f1") -> FaultEvent:
    return FaultEvent(t=t, phase="start", fault="crash", fault_id=fid, targets=(node,))


def tl(*streams: Sequence[Record]) -> Timeline:
    return Timeline(HDR, merge(*streams))


# -- no outage ----------------------------------------------------------------------------
def test_no_outage() -> None:
    m = checks.metrics(tl(steady(0, 10)))
    assert m.queries == 200 and m.failed == 0 and m.success_rate == 1.0
    assert m.outage_s == 0.0 and not m.outage_ongoing and m.outages == []
    assert m.takeover_s is None and m.fault is None
    assert m.answered_by == {VIP: {"lsvm2": 200}}
    assert m.failed_by_kind == {"timeout": 0, "SERVFAIL": 0, "NXDOMAIN": 0, "REFUSED": 0}


# -- one crash, takeover ------------------------------------------------------------------
def test_crash_and_takeover() -> None:
    samples = steady(0, 5) + [q(5 + i / 20, rcode="timeout") for i in range(60)] + steady(
        8, 10, node="lsvm1"
    )
    m = checks.metrics(tl(samples, [crash(5.02)]))
    assert m.fault == "f1"
    # first good reply from lsvm1: sent at 8.0, arrived 8.001
    assert m.takeover_s == pytest.approx(8.001 - 5.02)
    assert m.takeover_complete is True
    # outage: first failure sent at 5.0, first good reply at 8.001
    assert m.outage_s == pytest.approx(3.001)
    assert m.failed_by_kind["timeout"] == 60
    assert m.answered_by[VIP] == {"lsvm2": 100, "lsvm1": 40}



def test_outages_over_before_the_fault_are_not_its_cost() -> None:
    """In seed, DNS over TCP stalls (0.2 s timeouts) while dnsmasq pings for new DHCP clients,
    before any fault: the run's outage_s is what was still failing at the fault or after."""
    before = [s for i in range(20)
              for s in (q(i * 0.5, rcode="timeout"), q(i * 0.5 + 0.25))]
    samples = before + steady(10, 20) + [q(20 + i / 20, rcode="timeout") for i in range(20)] \
        + steady(21.05, 25)
    assert checks.outage_s(before) == pytest.approx(0.251)  # the steady state's own stalls
    m = checks.metrics(tl(samples, [crash(19.99)]))
    assert m.outage_s == pytest.approx(1.051)
    m = checks.metrics(tl(before + steady(10, 25), [crash(15)]))
    assert m.outage_s == 0.0 and m.failed == 20

def test_takeover_ignores_answers_from_the_crashed_node() -> None:
    # the crashed node's kernel still answers for a while (namespace left alive)
    samples = steady(0, 6, node="lsvm2") + steady(6, 8, node="lsvm1")
    assert checks.takeover_s(samples, crash(3.0)) == pytest.approx(6.001 - 3.0)


def test_takeover_on_one_vip_only() -> None:
    other = "192.168.3.4"
    samples = steady(0, 2, node="lsvm1", server=other) + steady(4, 5, node="lsvm1")
    assert checks.takeover_s(samples, crash(1.0), VIP) == pytest.approx(3.001)
    assert checks.takeover_s(samples, crash(1.0), other) == pytest.approx(0.001, abs=0.05)


# -- edge cases from the issue ------------------------------------------------------------
def test_outage_never_ending() -> None:
    samples = steady(0, 2) + [q(2 + i / 20, rcode="timeout") for i in range(40)]
    m = checks.metrics(tl(samples, [crash(2.0)]))
    assert m.outage_ongoing is True
    assert m.outage_s == pytest.approx(3.95 - 2.0)
    assert m.takeover_s is None and m.takeover_complete is False


def test_fault_at_t0() -> None:
    samples = [q(i / 20, rcode="timeout") for i in range(20)] + steady(1, 2, node="lsvm1")
    m = checks.metrics(tl([crash(0.0)], samples))
    assert m.takeover_s == pytest.approx(1.001)
    assert m.outage_s == pytest.approx(1.001)  # an outage at the very start has no "before"
    assert len(m.outages) == 1 and not m.outage_ongoing


def test_two_outages_longest_wins_and_both_listed() -> None:
    samples = (steady(0, 1) + [q(1 + i / 20, rcode="timeout") for i in range(10)]
               + steady(1.5, 3) + [q(3 + i / 20, rcode="SERVFAIL") for i in range(30)]
               + steady(4.5, 5))
    outs = checks.outages(samples)
    assert [round(o.duration_s, 3) for o in outs] == [0.501, 1.501]
    assert checks.outage_s(samples) == pytest.approx(1.501)
    assert checks.failed_by_kind(samples)["SERVFAIL"] == 30


def test_outages_are_per_client_stream() -> None:
    # c1 fails while g1 is fine: c1's outage must not be hidden by g1's answers
    c1 = steady(0, 1) + [q(1 + i / 20, rcode="timeout") for i in range(20)] + steady(2, 3)
    g1 = steady(0, 3, probe="g1")
    assert checks.outage_s(c1 + g1) == pytest.approx(1.001)


def test_failure_kinds_other_than_the_named_four_are_kept() -> None:
    samples = [q(0, rcode="NXDOMAIN"), q(1, rcode="REFUSED"), q(2, rcode="error", lat=None),
               q(3, rcode="FORMERR")]
    assert checks.failed_by_kind(samples) == {
        "timeout": 0, "SERVFAIL": 0, "NXDOMAIN": 1, "REFUSED": 1, "error": 1, "FORMERR": 1
    }


def test_answers_from_both_nodes_interleaved_is_split_brain() -> None:
    # c1 talks to lsvm1, g1 to lsvm2, both for the same VIP, for 4 s
    both = steady(10, 14, node="lsvm1") + steady(10.025, 14.025, node="lsvm2", probe="g1")
    before = steady(0, 10, node="lsvm2")
    sb = checks.split_brain_answers_s(before + both)
    assert sb[VIP] == pytest.approx(14.001 - 10.001 - 0.05 + 0.025, abs=0.03)


def test_clean_failover_is_not_split_brain() -> None:
    samples = steady(0, 5, node="lsvm2") + steady(5.3, 10, node="lsvm1")
    assert checks.split_brain_answers_s(samples)[VIP] == 0.0


def test_split_brain_from_vip_holders_open_interval_ends_with_timeline() -> None:
    evs = [VipEvent(1.0, VIP, ("lsvm2",)), VipEvent(5.0, VIP, ("lsvm1", "lsvm2")),
           VipEvent(9.0, VIP, ("lsvm1",)), VipEvent(12.0, VIP, ("lsvm1", "lsvm2"))]
    assert checks.split_brain_holders_s(evs, t_end=15.0) == {VIP: pytest.approx(7.0)}


def test_latency_quantiles() -> None:
    samples = [q(i, lat=(i + 1) / 1000) for i in range(100)] + [q(200, rcode="timeout")]
    lq = checks.latency_quantiles(samples)
    assert lq == {"p50": 0.05, "p99": 0.099, "max": 0.1}
    assert checks.latency_quantiles([]) == {"p50": None, "p99": None, "max": None}


# -- DHCP ---------------------------------------------------------------------------------
MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


def d(t: float, client: str, event: str, msg: str | None = None, address: str | None = None,
      hostname: str | None = None) -> DhcpEvent:
    return DhcpEvent(t=t, client=client, event=event, state="?", msg=msg, address=address,
                     hostname=hostname)


def test_dhcp_wait_spans_retransmissions_and_naks() -> None:
    evs = [d(0, MAC1, "send", "DISCOVER"), d(0.01, MAC1, "bound", address="10.0.0.21"),
           d(5, MAC1, "send", "REQUEST"), d(6, MAC1, "send", "REQUEST"), d(7, MAC1, "nak"),
           d(7.1, MAC1, "send", "DISCOVER"), d(9.0, MAC1, "bound", address="10.0.0.22")]
    waits = checks.dhcp_waits(evs, t_end=10)
    assert [(w.start, w.end, w.ongoing) for w in waits] == [(0, 0.01, False), (5, 9.0, False)]
    assert checks.dhcp_outage_s(evs, 10) == 4.0


def test_dhcp_wait_never_answered_is_ongoing() -> None:
    evs = [d(1, MAC1, "send", "DISCOVER"), d(3, MAC1, "send", "DISCOVER")]
    (w,) = checks.dhcp_waits(evs, t_end=8)
    assert (w.duration_s, w.ongoing) == (7, True)


def test_duplicate_ips() -> None:
    evs = [d(0, MAC1, "bound", address="10.0.0.21"), d(1, MAC2, "bound", address="10.0.0.22"),
           d(2, MAC2, "released"), d(3, MAC2, "bound", address="10.0.0.21")]
    dups = checks.duplicate_ips(evs)
    assert dups == [{"t": 3, "ip": "10.0.0.21", "clients": [MAC1, MAC2]}]
    # after MAC1 releases, the same address going to MAC2 is fine
    ok = [d(0, MAC1, "bound", address="10.0.0.21"), d(1, MAC1, "released"),
          d(2, MAC2, "bound", address="10.0.0.21")]
    assert checks.duplicate_ips(ok) == []


def test_lease_survival_with_names() -> None:
    evs = [d(0, MAC1, "bound", address="192.168.1.21", hostname="h1"),
           d(0, MAC2, "bound", address="192.168.1.22", hostname="h2"),
           d(10, MAC1, "renewed", address="192.168.1.21"),
           d(11, MAC2, "bound", address="192.168.1.30")]
    dns = [q(12, name="h1.internal.thesteins.org", answers=("192.168.1.21",)),
           q(12.1, name="21.1.168.192.in-addr.arpa", qtype="PTR",
             answers=("h1.internal.thesteins.org.",))]
    ls = checks.lease_survival(evs, dns, crash(5))
    assert ls is not None
    assert (ls.bound_before, ls.same_address, ls.changed, ls.unanswered) == (2, 1, [MAC2], [])
    assert (ls.names_checked, ls.names_ok, ls.fraction) == (1, 1, 0.5)


def test_lease_survival_name_stopped_resolving() -> None:
    evs = [d(0, MAC1, "bound", address="192.168.1.21", hostname="h1"),
           d(10, MAC1, "rebound", address="192.168.1.21")]
    dns = [q(12, name="h1.internal.thesteins.org", rcode="NXDOMAIN")]
    ls = checks.lease_survival(evs, dns, crash(5))
    assert ls is not None and (ls.fraction, ls.names_checked, ls.names_ok) == (1.0, 1, 0)


def test_lease_survival_without_fault_or_answers() -> None:
    evs = [d(0, MAC1, "bound", address="192.168.1.21")]
    assert checks.lease_survival(evs, [], None) is None
    ls = checks.lease_survival(evs, [], crash(5))
    # nobody asked after the fault: not measured, which is not 0 %
    assert ls is not None and ls.unasked == [MAC1] and ls.unanswered == []
    assert ls.fraction is None and ls.reason is not None and "asked" in ls.reason


def test_lease_survival_asked_and_unanswered_counts_as_lost() -> None:
    evs = [d(0, MAC1, "bound", address="192.168.1.21"),
           d(0, MAC2, "bound", address="192.168.1.22"),
           d(6, MAC1, "send", "REQUEST"), d(6, MAC2, "send", "REQUEST"),
           d(7, MAC2, "renewed", address="192.168.1.22")]
    ls = checks.lease_survival(evs, [], crash(5))
    assert ls is not None and ls.unanswered == [MAC1] and ls.unasked == []
    assert (ls.measured, ls.fraction, ls.reason) == (2, 0.5, None)


def test_outage_in_window_picks_the_fault_s_own_outage() -> None:
    outs = [checks.Outage("c1", "v", 1, 3, 2, False), checks.Outage("c1", "v", 10, 20, 9, False)]
    assert checks.outage_in_window_s(outs, 9, 12) == 10
    assert checks.outage_in_window_s(outs, 0, 2) == 2
    assert checks.outage_in_window_s(outs, 4, 8) == 0.0


# -- lease file, registrar ------------------------------------------------------------------
def test_leases_lost() -> None:
    before = LeaseSnapshot(0, "lsvm2", "before", ((MAC1, "10.0.0.21", "h1"),
                                                 (MAC2, "10.0.0.22", "*")))
    after = LeaseSnapshot(9, "lsvm1", "after", ((MAC1, "10.0.0.21", "h1"),))
    assert checks.leases_lost([before, after]) == 1
    assert checks.leases_lost([before]) is None


def test_registrar_updates_and_metrics_dict_is_json() -> None:
    recs: list[Record] = [RegistrarUpdate(1, "@", "203.0.113.9", True),
                          RegistrarUpdate(2, "imap", "203.0.113.9", False)]
    m = checks.metrics(tl(recs, steady(0, 1)))
    assert m.registrar_updates == {"ok": 1, "failed": 1}
    assert json.loads(json.dumps(m.to_dict()))["queries"] == 20


# -- recorded timelines from real lab runs --------------------------------------------------
RECORDED = sorted(DATA.glob("*.timeline.jsonl"))


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_recorded_timeline_matches_its_expectations(path: Path) -> None:
    """Each recorded run has ``<name>.expect.json`` written by a person after looking at the
    run (not by the checks): bounds the metrics must fall in."""
    expect = json.loads(path.with_name(path.name.replace(".timeline.jsonl", ".expect.json"))
                        .read_text())
    m = checks.metrics(Timeline.load(path)).to_dict()
    for key, (lo, hi) in expect["ranges"].items():
        assert m[key] is not None and lo <= m[key] <= hi, (key, m[key])
    for key, value in expect.get("equals", {}).items():
        assert m[key] == value, (key, m[key])


def test_never_answered_question_is_not_an_outage() -> None:
    # a PTR zone the server does not serve: REFUSED all along, interleaved with good answers
    samples = [q(i / 10, name="lsvm1", answers=("1.2.3.4",)) if i % 2 == 0 else
               q(i / 10, name="9.9.9.10.in-addr.arpa", qtype="PTR", rcode="REFUSED")
               for i in range(40)]
    assert checks.outages(samples) == []
    assert checks.failed_by_kind(samples)["REFUSED"] == 20


def test_bound_at_end_means_before_the_fleet_released() -> None:
    evs = [d(0, MAC1, "bound", address="10.0.0.21"), d(0, MAC2, "bound", address="10.0.0.22"),
           d(9, MAC1, "released"), d(9, MAC2, "released"), d(9.1, MAC1, "stopped")]
    m = checks.metrics(tl(evs))
    assert m.dhcp_bound_at_end == 2


def test_takeover_when_the_fault_hits_both_servers() -> None:
    # a partition between lsvm1 and lsvm2: both are "hit"; lsvm2 answered before, lsvm1 after
    part = FaultEvent(t=5.0, phase="start", fault="partition", fault_id="p",
                      targets=("lsvm1", "lsvm2"))
    samples = steady(0, 5, node="lsvm2") + steady(7, 9, node="lsvm1")
    assert checks.takeover_s(samples, part) == pytest.approx(2.001)
    # the primary kept answering throughout: no takeover
    assert checks.takeover_s(steady(0, 9, node="lsvm2"), part) is None
    # a network-wide fault with no targets (switch reboot)
    sw = FaultEvent(t=5.0, phase="start", fault="switch_reboot", fault_id="s")
    assert checks.takeover_s(samples, sw) == pytest.approx(2.001)


def test_real_dhclient_is_reported_beside_the_fleet_not_counted_in_it() -> None:
    fleet = [d(0, MAC1, "send", "DISCOVER"), d(0.01, MAC1, "bound", address="192.168.1.21")]
    real = [DhcpEvent(t=0.5, client="c1:eth0", event="bound", state="BOUND",
                      address="192.168.1.50", probe="dhclient@c1")]
    m = checks.metrics(tl(fleet, real))
    assert (m.dhcp_clients, m.dhcp_bound_at_end) == (1, 1)
    assert m.real_dhcp_clients == {"c1:eth0": "BOUND"}


def test_os_resolver_path_is_its_own_metric_not_a_vip_outage() -> None:
    vip = [q(float(t)) for t in range(10)]
    guest_os = [DnsSample(t=float(t), probe="g1", server="192.168.3.1", name="g1", qtype="A",
                          transport="udp", rcode="REFUSED", mode="os") for t in range(10)]
    m = checks.metrics(tl(vip, guest_os))
    assert (m.queries, m.failed, m.success_rate) == (10, 0, 1.0)
    path = m.resolver_paths["g1"]["192.168.3.1"]
    assert (path["queries"], path["failed"], path["success_rate"]) == (10, 10, 0.0)


def test_dhcp_outage_since_the_fault_leaves_out_the_first_binding() -> None:
    """The seed's ping check keeps a new fleet waiting ~23 s for its first ACK (F13) before
    any fault; what the fault cost is the waiting from its start on."""
    evs = [d(0, MAC1, "send", "DISCOVER"), d(23.2, MAC1, "bound", address="10.0.0.21"),
           d(0, MAC2, "send", "DISCOVER"), d(3.0, MAC2, "bound", address="10.0.0.22"),
           d(28, MAC2, "send", "REQUEST"), d(32, MAC2, "bound", address="10.0.0.22"),
           d(40, MAC1, "send", "REQUEST"), d(46.5, MAC1, "bound", address="10.0.0.21")]
    assert checks.dhcp_outage_s(evs, 60) == 23.2  # no fault: the whole run
    assert checks.dhcp_outage_s(evs, 60, since=30.0) == 6.5  # 40 -> 46.5 beats 28 -> 32
    assert checks.dhcp_outage_s(evs, 60, since=29.0) == 6.5
    assert checks.dhcp_outage_s(evs[:6], 60, since=29.0) == 4.0  # under way at the fault: whole
    assert checks.dhcp_outage_s(evs, 60, since=50.0) == 0.0


def test_a_recorded_seed_run_judges_dhcp_from_the_fault() -> None:
    """A nightly's heartbeat_link_loss in profile seed (its DHCP, fault, VIP and lease
    records): the 10-client fleet waited 23.2 s for its first ACKs behind the ping check, then
    30 % loss on port 694 for 40 s cost DHCP nothing; the SLA's `dhcp_outage_s < 1` is about
    the latter."""
    tl = Timeline.load(DATA / "seed-heartbeat-link-loss.dhcp.jsonl")
    dhcp = tl.of(DhcpEvent)
    assert abs(checks.dhcp_outage_s(dhcp, tl.t_end or 0.0) - 23.22) < 0.01
    m = checks.metrics(tl)
    assert m.fault is not None and m.dhcp_outage_s < 1
    assert m.dhcp_bound_at_end == 10 and m.duplicate_ips == 0
