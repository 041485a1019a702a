"""The seed's pair, healthy, on one lab the module's tests share (profile from --lab-profile).

Reads top to bottom like a person checking a fresh install: who holds what, what c1 can resolve
over UDP and TCP on both VIPs, what the guest and the seed's reserved MACs get, that what the
seed keeps local never reaches the router's resolver, and that the registrar heard from lsvm2.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from lab.lab import Lab
from lab.node import Node
from lab.services.ask import ask_from
from lab.services.health import readiness
from lab.services.profiles import load_profile
from lab.services.registrar import updates
from lab.wait import wait_for

pytestmark = [pytest.mark.lab]

VIP4 = "192.168.1.4"
VIP6 = "2001:db8:4100:13c2:0:ffff:c0a8:104"
REPO = Path(__file__).resolve().parents[1]


def resolver_queries(lab: Lab) -> list[str]:
    text = lab["rtbr1"].path("/var/log/resolver.log").read_text()
    return [line for line in text.splitlines() if " query[" in line]


# 1 ---------------------------------------------------------------------------------------------
def test_lsvm2_holds_everything_lsvm1_runs_heartbeat_only(shared_seed_lab: Lab) -> None:
    status = shared_seed_lab.status()
    checks = readiness(shared_seed_lab, status)
    assert all(checks.values()), checks
    assert status["vip"] == {VIP4: "lsvm2", "192.168.3.4": "lsvm2", VIP6: "lsvm2",
                             "2001:db8:4100:13c2:0:ffff:c0a8:304": "lsvm2"}
    assert status["services"]["lsvm1"] == {"heartbeat": True, "dnsmasq": False,
                                           "ddclient": False}
    assert status["mounts"] == {"lsvm1": [], "lsvm2": ["/srv/drbd0"]}
    assert {n: d["role"] for n, d in status["drbd"].items()} == {"lsvm1": "Secondary",
                                                                  "lsvm2": "Primary"}


# 2 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("server", [VIP4, VIP6])
def test_c1_resolves_the_seed_names(shared_seed_lab: Lab, server: str, proto: str) -> None:
    c1 = shared_seed_lab["c1"]
    assert ask_from(c1, server, "lsvm1.internal.thesteins.org", "A", proto).endswith(
        "IN A 192.168.1.6")
    assert ask_from(c1, server, "rtbr1.internal.thesteins.org", "A", proto).endswith(
        "IN A 192.168.1.1")
    assert "IN CNAME lsvm4.internal.thesteins.org." in ask_from(
        c1, server, "smtp.internal.thesteins.org", "A", proto)
    assert ask_from(c1, server, "example.com", "A", proto).endswith("IN A 203.0.113.80")
    assert ask_from(c1, server, "whoami.hapair.lab", "TXT", proto).endswith('"lsvm2"')


def test_c1_dhcp_name_resolves_both_ways_and_has_slaac(shared_seed_lab: Lab) -> None:
    c1 = shared_seed_lab["c1"]
    leases = c1.path("/var/lib/dhcp/dhclient.leases").read_text()
    address = leases.split("fixed-address ")[-1].split(";")[0]
    assert "option domain-name \"internal.thesteins.org\"" in leases
    assert "option domain-name-servers 192.168.1.4" in leases
    assert ask_from(c1, VIP4, "c1.internal.thesteins.org").endswith(f"IN A {address}")
    assert ask_from(c1, VIP4, address, "PTR").endswith("IN PTR c1.internal.thesteins.org.")
    addrs = [a.split()[0] for a in c1.addresses()["eth0"]]
    prefix = ipaddress.ip_network("2001:db8:4100:13c2::/64")
    slaac = [a for a in addrs if ":" in a and ipaddress.ip_interface(a).ip in prefix]
    assert slaac, f"c1 has no SLAAC address from dnsmasq's RA: {addrs}"


def test_clients_use_optimistic_dad_only_where_the_profile_says(shared_seed_lab: Lab) -> None:
    wanted = "1" if load_profile(shared_seed_lab.profile).optimistic_dad else "0"
    for name in ("c1", "g1"):
        for key in ("optimistic_dad", "use_optimistic"):
            value = shared_seed_lab[name].succeed(f"cat /proc/sys/net/ipv6/conf/eth0/{key}")
            assert value.strip() == wanted, (name, key)


def test_heartbeat_starts_its_delay_while_the_disk_is_made(shared_seed_lab: Lab) -> None:
    if getattr(shared_seed_lab.stack, "disk_mode", "") != "replicated":
        pytest.skip("no replicated disk on this machine: nothing is made at a cold start")
    events = shared_seed_lab.events()
    launches = [e["t_mono"] for e in events if e["event"] == "heartbeat.launch"]
    made = [e["t_mono"] for e in events if e["event"] == "disk.bootstrap"]
    assert len(launches) == 2 and len(made) == 1
    assert max(launches) < made[0]
    ha_log = shared_seed_lab["lsvm2"].path("/var/log/ha-log").read_text()
    assert "Initial resource acquisition complete" in ha_log


# 3 ---------------------------------------------------------------------------------------------
def test_guest_lease_router_dns_and_name(shared_seed_lab: Lab) -> None:
    g1 = shared_seed_lab["g1"]
    leases = g1.path("/var/lib/dhcp/dhclient.leases").read_text()
    address = leases.split("fixed-address ")[-1].split(";")[0]
    assert address.startswith("192.168.3.")
    assert "option routers 192.168.3.1" in leases
    assert "option domain-name-servers 192.168.3.1" in leases
    c1 = shared_seed_lab["c1"]
    assert ask_from(c1, VIP4, "g1.guest.thesteins.org").endswith(f"IN A {address}")


def dhcp(node: Node, mac: str) -> dict[str, object]:
    # the node runs this checkout's code (a CI clone lives elsewhere) with its own interpreter
    out = node.succeed(f"PYTHONPATH={REPO} {node.python} -m lab.services.dhcpask eth0 {mac}")
    result: dict[str, object] = json.loads(out)
    return result


def test_the_seeds_reserved_macs(shared_seed_lab: Lab) -> None:
    c1 = shared_seed_lab["c1"]
    assert dhcp(c1, "53:54:01:11:43:e7")["acked"] == "192.168.1.235"
    named = dhcp(c1, "06:34:24:47:9a:3d")
    assert named["hostname"] == "ad1g2"
    assert ask_from(c1, VIP4, "AD1G2.internal.thesteins.org").endswith(f"IN A {named['acked']}")


# 4 ---------------------------------------------------------------------------------------------
def test_what_the_seed_keeps_local_stays_local(shared_seed_lab: Lab) -> None:
    c1 = shared_seed_lab["c1"]
    before = len(resolver_queries(shared_seed_lab))
    for name, rdtype in (("nosuchhost.internal.thesteins.org", "A"), ("nosuchhost", "A"),
                         ("192.168.77.9", "PTR")):
        assert ask_from(c1, VIP4, name, rdtype).startswith("NXDOMAIN"), name
    assert resolver_queries(shared_seed_lab)[before:] == []
    inet = shared_seed_lab["inet"]
    assert ask_from(inet, "203.0.113.1", "lsvm1.internal.thesteins.org").startswith("NXDOMAIN")
    assert not ask_from(inet, VIP4, "lsvm1.internal.thesteins.org").startswith("NOERROR")


# 5 ---------------------------------------------------------------------------------------------
def test_registrar_recorded_an_update_from_lsvm2(shared_seed_lab: Lab) -> None:
    got = [u for u in updates(shared_seed_lab["inet"]) if u["accepted"]]
    assert {u["host"] for u in got if u["node"] == "lsvm2"} >= {"@", "imap", "smtp"}
    assert all(u["tls"] and u["ip"] == "203.0.113.1" for u in got)
    assert not [u for u in got if u["node"] == "lsvm1"]


def test_real_client_init_reboot_keeps_its_address(shared_seed_lab: Lab) -> None:
    """isc dhclient restarted without a release asks for its old address (INIT-REBOOT) and
    dnsmasq, with the lease on the replicated disk, grants the same one."""
    from lab.services import dhclient

    c1 = shared_seed_lab["c1"]
    events_file = c1.path("/var/log/dhclient-events.jsonl")
    before = [json.loads(line) for line in events_file.read_text().splitlines()]
    bound = [e for e in before if e["reason"] in ("BOUND", "REBOOT", "RENEW") and e["ip"]]
    assert bound, before
    dhclient.restart(c1, "eth0")

    def rebooted() -> list[dict[str, str]]:
        lines = events_file.read_text().splitlines()[len(before):]
        return [e for e in map(json.loads, lines) if e["reason"] == "REBOOT"]
    wait_for(lambda: bool(rebooted()), timeout=30, what="dhclient's REBOOT")
    assert rebooted()[0]["ip"] == bound[-1]["ip"]
