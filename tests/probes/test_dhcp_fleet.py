"""The DHCP fleet against a real dnsmasq in throwaway namespaces (see sandbox.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import checks
from lab.probes.dhcp import parse_action
from lab.probes.records import DhcpEvent
from lab.probes.sandbox import Segment, can_run, dnsmasq_argv
from lab.timeline import read_jsonl
from lab.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
MAC1, MACC = "02:00:00:00:02:06", "02:00:00:00:02:99"
needs_sandbox = pytest.mark.skipif(can_run() is not None, reason=str(can_run()))


def test_parse_action() -> None:
    assert parse_action("renew@12.5") == (12.5, "renew")
    with pytest.raises(Exception, match="bad action"):
        parse_action("explode@1")


@pytest.fixture
def seg(tmp_path: Path) -> Iterator[Segment]:
    with Segment(ttl_s=180) as s:
        s.add_host("srv1", MAC1, ["10.99.0.6/24", "10.99.0.4/24"])
        s.add_host("cli", MACC, ["10.99.0.99/24"])
        s.start("srv1", dnsmasq_argv(tmp_path, "10.99.0.4"), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        yield s


def fleet(seg: Segment, out: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return seg.start("cli", [sys.executable, "-m", "lab.probes.dhcp", "--out", str(out),
                             "--probe-id", "cli", "--forbid-netns",
                             f"/proc/{os.getpid()}/ns/net", *args], env=env,
                     stderr=subprocess.PIPE)


def events(out: Path) -> list[DhcpEvent]:
    if not out.exists():
        return []
    return [r for r in read_jsonl(out) if isinstance(r, DhcpEvent)]


def links(seg: Segment) -> list[str]:
    r = seg.hosts["cli"].run(["ip", "-o", "link"])
    return [line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines()]


@needs_sandbox
def test_fleet_binds_renews_rebinds_reboots_releases_and_cleans_up(
    seg: Segment, tmp_path: Path
) -> None:
    out = tmp_path / "dhcp.jsonl"
    p = fleet(seg, out, "--clients", "5", "--duration", "8", "--retransmit-first", "1",
              "--action", "renew@2", "--action", "rebind@3.5", "--action", "reboot@5")
    _, err = p.communicate(timeout=40)
    assert p.returncode == 0, err
    evs = events(out)
    by = {e: [x for x in evs if x.event == e] for e in
          ("bound", "renewed", "rebound", "released", "stopped", "reboot", "nak", "error")}
    assert len({e.client for e in by["bound"]}) == 5
    assert len(by["renewed"]) == 5 and len(by["rebound"]) == 5
    assert len(by["stopped"]) == 5 and by["error"] == [] and by["nak"] == []
    # INIT-REBOOT asked for the old address and got it back
    for e in by["reboot"]:
        again = [b for b in by["bound"] if b.client == e.client and b.t > e.t]
        assert again and again[0].address == e.address
    # renew is unicast to the server-identifier, rebind is broadcast
    sends = [e for e in evs if e.event == "send" and e.msg == "REQUEST"]
    acked_by = {e.server_id for e in by["bound"]}
    assert len(acked_by) == 1 and None not in acked_by
    assert {e.server_id for e in sends if e.reason == "renew"} == acked_by
    assert {e.server_id for e in sends if e.reason == "rebind"} == {None}
    assert checks.duplicate_ips(evs) == []
    # hostnames reached dnsmasq's lease file
    leases = (tmp_path / "dnsmasq.leases").read_text()
    assert leases == "" or all(f"fleet{i:03d}" not in leases for i in range(5))  # released
    assert not [n for n in links(seg) if n.startswith("dhc")]
    # dnsmasq's own log (log-dhcp) parses line by line and agrees with the fleet's records
    from lab.probes.clock import ClockMap, sample_pair
    from lab.probes.logparse import parse_dnsmasq_line

    clock = ClockMap(sample_pair())
    lines = (tmp_path / "dnsmasq.log").read_text().splitlines()
    parsed = [parse_dnsmasq_line(x, "srv1", clock) for x in lines]
    assert lines and all(p is not None for p in parsed), [
        x for x, p in zip(lines, parsed, strict=True) if p is None][:3]
    acks = {(p.fields["mac"], p.fields["ip"]) for p in parsed
            if p is not None and p.fields.get("type") == "DHCPACK"}
    assert {(e.client, e.address) for e in by["bound"]} <= acks
    t_first = min(p.t for p in parsed if p is not None)
    assert t_first <= min(e.t for e in evs) + 1.0  # second resolution: same second or before


@needs_sandbox
def test_signals_force_renew_and_dead_server_means_waiting(seg: Segment, tmp_path: Path) -> None:
    out = tmp_path / "dhcp.jsonl"
    p = fleet(seg, out, "--clients", "3", "--duration", "30", "--retransmit-first", "0.5",
              "--no-release")
    wait_for(lambda: {e.client for e in events(out) if e.event == "bound"},
             until=lambda bound: len(bound) == 3, timeout=10, what="3 clients bound")
    os.kill(seg.daemons[0].pid, signal.SIGSTOP)  # dnsmasq frozen: renewals go unanswered
    try:
        p.send_signal(signal.SIGUSR1)
        wait_for(lambda: {e.client for e in events(out) if e.reason == "renew"},
                 until=lambda renewing: len(renewing) == 3, timeout=10,
                 what="3 RENEWs sent to the frozen server")
        waits = checks.dhcp_waits(events(out), t_end=time.monotonic())
        assert [w for w in waits if w.ongoing]
    finally:
        os.kill(seg.daemons[0].pid, signal.SIGCONT)
    p.send_signal(signal.SIGUSR2)  # rebind: broadcast, answered now
    wait_for(lambda: [e for e in events(out) if e.event == "rebound"],
             until=lambda rebound: len(rebound) == 3, timeout=15, what="3 clients rebound")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    evs = events(out)
    assert len([e for e in evs if e.event == "rebound"]) == 3
    waits = checks.dhcp_waits(evs, t_end=evs[-1].t)
    assert all(not w.ongoing for w in waits)
    assert checks.dhcp_outage_s(evs, evs[-1].t) > 0
    # no RELEASE with --no-release: the leases stay in dnsmasq's file
    leases = (tmp_path / "dnsmasq.leases").read_text()
    assert all(f"fleet{i:03d}" in leases for i in range(3))


@needs_sandbox
@pytest.mark.slow
def test_fleet_binds_200_clients(seg: Segment, tmp_path: Path) -> None:
    out = tmp_path / "dhcp.jsonl"
    p = fleet(seg, out, "--clients", "200", "--duration", "120", "--exit-when-bound",
              "--spread", "0")
    _, err = p.communicate(timeout=180)
    assert p.returncode == 0, err
    evs = events(out)
    bound = {e.client: e.address for e in evs if e.event == "bound"}
    assert len(bound) == 200
    assert len(set(bound.values())) == 200  # 200 distinct addresses
    assert checks.duplicate_ips(evs) == []
    assert {e.hostname for e in evs} == {f"fleet{i:03d}" for i in range(200)}
    assert not [n for n in links(seg) if n.startswith("dhc")]
