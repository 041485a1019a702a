"""The seed's findings, made to happen on purpose.

A finding the lab works around is only honest if the lab can still show it: each test here runs
the same scenario twice, once with the workaround left out (`keep_findings`) and once with it,
and checks that the misbehaviour appears in the first and not in the second.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess

import pytest

from lab.checks import is_real_client
from lab.lab import Lab
from lab.node import Node
from lab.probes.fixture import Probes
from lab.probes.records import DhcpEvent
from lab.wait import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.seed, pytest.mark.finding, pytest.mark.crash]

# ICMPv6 echo requests from c1 to lsvm1, one every 5 ms: traffic a busy VLAN has anyway
# (neighbour discovery, a monitoring ping). Bounded: it stops by itself after PING_SECONDS.
PING_INTERVAL_S = 0.005
PING_SECONDS = 90


def link_local(mac: str) -> str:
    """The EUI-64 link-local address a port with this MAC has."""
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, *([0] * 6), *eui])))


def test_link_local_is_eui64() -> None:
    assert link_local("00:15:5d:01:02:07") == "fe80::215:5dff:fe01:207"


def echoes_received(node: Node) -> int:
    """ICMPv6 echo requests the node's kernel has received (/proc/net/snmp6 of its netns)."""
    for line in node.succeed("cat /proc/net/snmp6").splitlines():
        key, _, value = line.partition(" ")
        if key == "Icmp6InEchos":
            return int(value)
    raise AssertionError(f"{node.name}: no Icmp6InEchos in /proc/net/snmp6")


def ipv6_vips(lab: Lab) -> list[str]:
    return [str(v.address) for v in lab.topology.vips if v.address.version == 6]


@pytest.mark.parametrize("kept", [
    pytest.param(True, id="F14-kept", marks=[
        # F14 is the package's IPv6addr wrapper: run it whatever agent the profile prefers
        pytest.mark.stack("seed", profile="fast", keep_findings=["F14"], ipv6addr="stock"),
        # the VIP held by nobody is what this case shows; the crashed peer stays down
        pytest.mark.audit(skip=["vips", "drbd"])]),
    pytest.param(False, id="F14-worked-around", marks=[
        pytest.mark.stack("seed", profile="fast", ipv6addr="stock"),
        pytest.mark.audit(skip=["drbd"])]),
])
def test_F14_ipv6_vip_lost_when_icmpv6_answers_the_status_ping(lab: Lab, kept: bool) -> None:
    vips6 = ipv6_vips(lab)
    primary, survivor = lab.active().name, lab.standby().name
    client = lab["c1"]
    iface = client.spec.interfaces[0].name
    target = f"{link_local(lab[survivor].spec.ports[0].mac)}%{iface}"
    ping = client.popen(["ping", "-6", "-q", "-i", str(PING_INTERVAL_S), "-w", str(PING_SECONDS),
                         target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # the traffic that races the agent's ping must reach the survivor before the crash
        wait_for(lambda: ping.poll() is not None or echoes_received(lab[survivor]) >= 100,
                 timeout=10, what=lambda: f"c1's pings arriving at {survivor}")
        assert ping.poll() is None, f"ping from c1 ended early: {ping.communicate()[0]}"
        lab[primary].crash()

        def taken_over() -> bool:
            hb = lab.status()["heartbeat"].get(survivor) or {}
            return bool(hb.get("resources") == "all")
        wait_for(taken_over, timeout=120,
                 what=f"{survivor} to hold every resource (heartbeat's view)")
    finally:
        ping.terminate()
        ping.wait(10)
    held = lab.status()["vip"]
    ha_log = lab[survivor].path("/var/log/ha-log").read_text(errors="replace")
    skipped = said_running_before_start(ha_log)
    if kept:
        lost = [v for v in vips6 if held[v] is None]
        assert lost, ("F14 did not show: with the stock wrapper and ICMPv6 traffic every IPv6 "
                      f"VIP was configured anyway: {held}")
        assert set(lost) <= set(skipped), (
            f"{lost} unheld, but heartbeat did not skip their start as F14 says: {skipped}")
    else:
        assert all(held[v] == survivor for v in vips6), held
        assert not skipped, f"the lab's wrapper still said Running OK before start: {skipped}"


def said_running_before_start(ha_log: str) -> set[str]:
    """The IPv6 VIPs whose `status` answered "Running OK" in this heartbeat log (canonical
    form): ResourceManager then skips their `start`."""
    found = set()
    for m in re.finditer(r"IPv6addr_([0-9A-Fa-f:]+)/[^)]*\)\[\d+\]:\s+INFO:.*Running OK", ha_log):
        found.add(str(ipaddress.IPv6Address(m.group(1))))
    return found


def test_said_running_before_start_reads_heartbeat_lines() -> None:
    line = ("2026/11/26_09:09:53  /usr/lib/ocf/resource.d//heartbeat/IPv6addr(IPv6addr_2001:db8:"
            "4100:13c2:0:ffff:c0a8:0304/64/enp2s1.3)[1217]:    INFO:  Running OK\n")
    assert said_running_before_start(line) == {"2001:db8:4100:13c2:0:ffff:c0a8:304"}
    assert said_running_before_start(line.replace("Running OK", "Resource is stopped")) == set()


def first_offer_waits(records: list[DhcpEvent]) -> list[float]:
    """Per client: seconds from its first DISCOVER to its first OFFER, sorted (clients with no
    offer are left out: the caller checks that everyone bound)."""
    sent: dict[str, float] = {}
    offered: dict[str, float] = {}
    for r in sorted(records, key=lambda r: r.t):
        if r.event == "send" and r.msg == "DISCOVER":
            sent.setdefault(r.client, r.t)
        elif r.event == "offer" and r.client in sent:
            offered.setdefault(r.client, r.t - sent[r.client])
    return sorted(offered.values())


def test_first_offer_waits_from_records() -> None:
    recs = [DhcpEvent(0.0, "a", "send", "SELECTING", msg="DISCOVER"),
            DhcpEvent(0.1, "b", "send", "SELECTING", msg="DISCOVER"),
            DhcpEvent(3.6, "a", "offer", "REQUESTING"),
            DhcpEvent(4.0, "a", "send", "REQUESTING", msg="REQUEST"),
            DhcpEvent(7.7, "b", "offer", "REQUESTING"),
            DhcpEvent(8.0, "b", "offer", "REQUESTING")]
    assert first_offer_waits(recs) == pytest.approx([3.6, 7.6])


# dnsmasq waits PING_WAIT = 3 s for an echo reply; anything well under that had no ping check
PING_WAIT_S = 3.0
FLEET = 10


@pytest.mark.parametrize("kept", [
    pytest.param(True, id="F13-seed-profile", marks=[pytest.mark.stack("seed", profile="seed")]),
    pytest.param(False, id="F13-fast-profile-no-ping", marks=[
        pytest.mark.stack("seed", profile="fast")]),
])
def test_F13_new_clients_wait_for_dnsmasqs_ping_check_one_after_another(
        lab: Lab, probes: Probes, kept: bool) -> None:
    def fleet_events() -> list[DhcpEvent]:
        return [r for r in probes.timeline().of(DhcpEvent) if not is_real_client(r)]

    with probes.dhcp(clients=FLEET, node="c1"):
        def all_bound() -> bool:
            return len({r.client for r in fleet_events() if r.event == "bound"}) == FLEET
        wait_for(all_bound, timeout=120, what=lambda: f"{FLEET} fleet clients bound")
    waits = first_offer_waits(fleet_events())
    assert len(waits) == FLEET, waits
    slow = [w for w in waits if w >= 0.8 * PING_WAIT_S]
    if kept:
        # one ping wait per new address, one after another: at least the second client in line
        # waited for the first one's ping and its own
        assert len(slow) >= 2 and waits[1] >= 1.5 * PING_WAIT_S, waits
    else:
        assert not slow, waits
