"""The DNS probe against a real dnsmasq in throwaway namespaces (see sandbox.py)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import checks
from lab.probes.dns import parse_mac_map, parse_query
from lab.probes.records import DnsSample, FaultEvent
from lab.probes.sandbox import Segment, can_run, dnsmasq_argv
from lab.timeline import read_jsonl

REPO = Path(__file__).resolve().parents[2]
MAC1, MAC2, MACC = "02:00:00:00:01:06", "02:00:00:00:01:07", "02:00:00:00:01:99"
VIP = "10.99.0.4"
MAP = f"{MAC1}=srv1,{MAC2}=srv2"

needs_sandbox = pytest.mark.skipif(can_run() is not None, reason=str(can_run()))


def test_parse_helpers() -> None:
    assert parse_mac_map("00:15:5D:01:02:07=lsvm1, 52:54:00:63:1e:59=lsvm2") == {
        "00:15:5d:01:02:07": "lsvm1", "52:54:00:63:1e:59": "lsvm2"}
    assert parse_query("PTR:192.168.1.6") == ("PTR", "6.1.168.192.in-addr.arpa.")
    assert parse_query("aaaa:x.example") == ("AAAA", "x.example")
    assert parse_query("host.example") == ("A", "host.example")
    with pytest.raises(ValueError):
        parse_mac_map("nonsense")


@pytest.fixture
def seg(tmp_path: Path) -> Iterator[Segment]:
    with Segment(ttl_s=120) as s:
        s.add_host("srv1", MAC1, ["10.99.0.6/24", f"{VIP}/24"])
        s.add_host("srv2", MAC2, ["10.99.0.7/24"])
        s.add_host("cli", MACC, ["10.99.0.99/24"])
        for h in ("srv1", "srv2"):
            wd = tmp_path / h
            wd.mkdir()
            s.start(h, dnsmasq_argv(wd, VIP), stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
        yield s


def probe(seg: Segment, out: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return seg.start("cli", [sys.executable, "-m", "lab.probes.dns", "--out", str(out),
                             "--probe-id", "cli", "--mac-map", MAP, *args], env=env)


def wait_ok(seg: Segment, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = seg.hosts["cli"].run(["python3", "-c", "import socket;s=socket.socket(2,2);"
                                  "s.settimeout(0.3);s.sendto(b'\\0'*12,('10.99.0.4',53));"
                                  "s.recv(512)"])
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("dnsmasq never answered")


@needs_sandbox
def test_steady_state_every_answer_good_and_attributed(seg: Segment, tmp_path: Path) -> None:
    wait_ok(seg)
    out = tmp_path / "dns.jsonl"
    p = probe(seg, out, "--server", VIP, "--rate", "20", "--duration", "3",
              "--query", "A:lsvm1.internal.thesteins.org",
              "--query", "A:nope.internal.thesteins.org",
              "--transport", "udp,tcp")
    assert p.wait(timeout=15) == 0
    samples = [r for r in read_jsonl(out) if isinstance(r, DnsSample)]
    assert 50 <= len(samples) <= 61  # 3 s at 20 Hz, the last tick may fall on the end
    good = [s for s in samples if s.name.startswith("lsvm1")]
    bad = [s for s in samples if s.name.startswith("nope")]
    assert {s.transport for s in good} == {"udp", "tcp"}
    assert all(s.rcode == "NOERROR" and s.answers == ("10.99.0.6",) for s in good)
    assert all(s.rcode == "NXDOMAIN" for s in bad)
    assert {s.node for s in samples} == {"srv1"} and {s.mac for s in samples} == {MAC1}
    times = [s.t for s in sorted(samples, key=lambda s: s.t)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.2  # sent on the clock, not back to back


@needs_sandbox
def test_frozen_server_is_an_outage_that_ends(seg: Segment, tmp_path: Path) -> None:
    wait_ok(seg)
    out = tmp_path / "dns.jsonl"
    srv1_dnsmasq = seg.daemons[0]
    p = probe(seg, out, "--server", VIP, "--rate", "20", "--duration", "4", "--timeout", "0.5")
    time.sleep(1.0)
    # nsenter execs dnsmasq, so this PID is dnsmasq itself
    os.kill(srv1_dnsmasq.pid, signal.SIGSTOP)
    time.sleep(1.0)
    os.kill(srv1_dnsmasq.pid, signal.SIGCONT)
    assert p.wait(timeout=15) == 0
    samples = [r for r in read_jsonl(out) if isinstance(r, DnsSample)]
    outs = checks.outages(samples)
    assert len(outs) == 1 and not outs[0].ongoing
    assert checks.failed_by_kind(samples)["timeout"] == outs[0].failed > 0


@needs_sandbox
def test_vip_moves_to_other_node_and_probe_sees_who_answers(seg: Segment, tmp_path: Path) -> None:
    wait_ok(seg)
    out = tmp_path / "dns.jsonl"
    p = probe(seg, out, "--server", VIP, "--rate", "20", "--duration", "4", "--timeout", "0.5")
    time.sleep(1.0)
    t_fault = time.monotonic()
    with seg.hosts["srv1"].ipr() as ipr:  # "crash": srv1 off the wire
        ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], state="down")
    time.sleep(0.5)
    with seg.hosts["srv2"].ipr() as ipr:  # takeover: VIP up on srv2 + gratuitous ARP
        ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=VIP, prefixlen=24)
    seg.hosts["srv2"].run(["/usr/libexec/heartbeat/send_arp", "-i", "100", "-r", "3",
                           "eth0", VIP, "auto", VIP, "ffffffffffff"])
    assert p.wait(timeout=15) == 0
    samples = [r for r in read_jsonl(out) if isinstance(r, DnsSample)]
    fault = FaultEvent(t=t_fault, phase="start", fault="crash", fault_id="f", targets=("srv1",))
    by_node = checks.answered_by(samples)[VIP]
    assert set(by_node) == {"srv1", "srv2"}
    tk = checks.takeover_s(samples, fault, VIP)
    assert tk is not None and tk > 0
    # every answer after the takeover came from srv2, every one before it from srv1
    assert all(s.node == "srv1" for s in samples if s.ok and s.t < t_fault)
    assert all(s.node == "srv2" for s in samples if s.ok and s.t > t_fault + tk)
    # the moment the client's ARP entry moved to srv2 is on the record, before the takeover
    from lab.probes.records import LogEvent

    moves = [r for r in read_jsonl(out) if isinstance(r, LogEvent) and r.source == "neighbour"
             and r.fields["ip"] == VIP and r.fields["node"] == "srv2"]
    assert moves and t_fault < moves[0].t <= t_fault + tk


@needs_sandbox
def test_os_mode_uses_resolv_conf_and_search_domain(seg: Segment, tmp_path: Path) -> None:
    wait_ok(seg)
    rc = tmp_path / "resolv.conf"
    rc.write_text(f"nameserver {VIP}\nsearch internal.thesteins.org\n")
    out = tmp_path / "dns.jsonl"
    p = probe(seg, out, "--os-only", "--resolv-conf", str(rc), "--os-name", "lsvm2",
              "--rate", "20", "--duration", "1")
    assert p.wait(timeout=15) == 0
    samples = [r for r in read_jsonl(out) if isinstance(r, DnsSample)]
    assert samples and all(s.mode == "os" for s in samples)
    assert {(s.server, s.name, s.answers) for s in samples} == {
        (VIP, "lsvm2.internal.thesteins.org", ("10.99.0.7",))}


def test_rotation_interleaves_dynamic_and_skips_when_empty() -> None:
    from lab.probes.dns import Query, Rotation

    a, b = Query("s", "a", "A", "udp"), Query("s", "b", "A", "udp")
    dyn: list[Query] = []
    r = Rotation([a, b], [lambda: dyn])
    assert [r(), r(), r()] == [a, b, a]
    dyn.append(Query("s", "h1", "A", "udp", mode="os"))
    got = [r() for _ in range(4)]
    assert got.count(dyn[0]) == 2 and a in got and b in got
    empty = Rotation([], [list])
    assert empty() is None  # an OS-only probe without resolv.conf servers asks nothing


@needs_sandbox
def test_takeover_agrees_with_a_capture_on_the_bridge(seg: Segment, tmp_path: Path) -> None:
    """In miniature: the probes' takeover vs the first reply from the new node
    on the wire (tcpdump on the bridge in the switch namespace), within 100 ms."""
    from lab.probes.clock import ClockMap, sample_pair
    from lab.probes.pcap import first_reply_from

    wait_ok(seg)
    clock = ClockMap(sample_pair())
    cap = tmp_path / "br0.pcap"
    assert seg.switch is not None
    tcpdump = subprocess.Popen(seg.switch.argv(["tcpdump", "-i", "br0", "-U", "-s", "0", "-w",
                                                str(cap), "udp port 53"]),
                               stderr=subprocess.PIPE, text=True)
    seg.daemons.append(tcpdump)
    assert tcpdump.stderr is not None
    assert "listening on" in tcpdump.stderr.readline()
    out = tmp_path / "dns.jsonl"
    p = probe(seg, out, "--server", VIP, "--rate", "50", "--duration", "4", "--timeout", "0.5")
    time.sleep(1.0)
    t_fault = time.monotonic()
    with seg.hosts["srv1"].ipr() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], state="down")
    time.sleep(0.7)
    with seg.hosts["srv2"].ipr() as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=VIP, prefixlen=24)
    seg.hosts["srv2"].run(["/usr/libexec/heartbeat/send_arp", "-i", "100", "-r", "3",
                           "eth0", VIP, "auto", VIP, "ffffffffffff"])
    assert p.wait(timeout=15) == 0
    seg.stop(tcpdump)
    samples = [r for r in read_jsonl(out) if isinstance(r, DnsSample)]
    fault = FaultEvent(t=t_fault, phase="start", fault="crash", fault_id="f", targets=("srv1",))
    tk = checks.takeover_s(samples, fault, VIP)
    assert tk is not None
    wire = first_reply_from(cap, VIP, {MAC2}, after_wall=clock.to_wall(t_fault))
    assert wire is not None, "no reply from srv2 on the wire"
    wire_tk = clock.to_mono(wire.wall) - t_fault
    assert abs(tk - wire_tk) < 0.1, (tk, wire_tk)
