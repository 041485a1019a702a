"""The seed's host firewall (its `ufw allow` lines with ufw's policy), measured on the pair.

Reads like an operator checking a firewall after the fact: what the servers let in and what
their counters say, then each finding twice — with the seed's rule kept (the misbehaviour) and
with the lab's workaround (its absence). The worked-around cases only look, so they share one
lab; each kept finding gets a lab of its own. Passes in both profiles (`--lab-profile seed|fast`).
"""

from __future__ import annotations

import ipaddress

import pytest

from lab.lab import Lab
from lab.node import Node
from lab.pytest_plugin import LabFactory
from lab.recovery import SERVED_ALONE, UNSERVED
from lab.services import firewall, registrar
from lab.services.profiles import load_profile
from lab.wait import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.seed, pytest.mark.finding, pytest.mark.network]

VIP4 = "192.168.1.4"
VIP6 = "2001:db8:4100:13c2:0:ffff:c0a8:104"
NAME = "lsvm1.internal.thesteins.org"
LSVM1 = "192.168.1.6"
# one stateless DHCPv6 exchange from c1, bounded, leaving c1's own DHCPv4 client alone
DHCPV6_INFO = ("timeout {s} dhclient -6 -S -1 -v -sf /bin/true -lf /tmp/hapair-d6.leases "
               "-pf /tmp/hapair-d6.pid eth0")


def rule(node: Node, comment_part: str) -> firewall.RuleCounter:
    """The node's rule whose comment (the seed's line, or ufw's stock rule) says this."""
    rows = firewall.counters(firewall.listing(node))
    found = [r for r in rows if comment_part in r.comment]
    assert len(found) == 1, (comment_part, rows)
    return found[0]


def denied(node: Node) -> int:
    return rule(node, firewall.POLICY_COMMENT).packets


def heartbeat_sees(lab: Lab, node: str) -> dict[str, str]:
    view = lab.status()["heartbeat"].get(node) or {}
    return dict(view.get("nodes") or {})


def answers(out: str) -> list[tuple[str, str, str]]:
    """(name, type, data) of each record of a dig/drill ANSWER SECTION."""
    section = out.split("ANSWER SECTION:", 1)[-1].split("\n\n", 1)[0]
    return [(w[0], w[3], w[4]) for w in (ln.split() for ln in section.splitlines())
            if len(w) == 5 and w[2] == "IN"]


def dig(client: Node, server: str, name: str, *opts: str) -> str:
    return client.succeed(f"dig +short +time=2 +tries=2 {' '.join(opts)} @{server} {name}",
                          timeout=20).strip()


# -- what the firewall lets through (the lab's rendering: F20 and F22 worked around) -------------
def test_dig_from_c1_resolves_a_seed_name_over_the_vip(shared_seed_lab: Lab) -> None:
    c1 = shared_seed_lab["c1"]
    out = c1.succeed(f"dig @{VIP4} {NAME}", timeout=20)
    assert "status: NOERROR" in out and answers(out) == [(f"{NAME}.", "A", LSVM1)], out
    out = c1.succeed(f"drill @{VIP4} rtbr1.internal.thesteins.org", timeout=20)
    assert answers(out) == [("rtbr1.internal.thesteins.org.", "A", "192.168.1.1")], out


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_dns_to_both_vips_over_ipv4_and_ipv6_gets_in(shared_seed_lab: Lab, vip: str,
                                                     transport: str) -> None:
    """`ufw allow ... port 53` names no address family: ufw applies it to IPv6 as well."""
    assert dig(shared_seed_lab["c1"], vip, NAME, transport) == LSVM1


def test_dhcp_ra_and_ddclient_get_through(shared_seed_lab: Lab) -> None:
    lab = shared_seed_lab
    active = lab.status()["vip"][VIP4]
    c1 = lab["c1"]
    assert "fixed-address" in c1.path("/var/lib/dhcp/dhclient.leases").read_text()
    assert rule(lab[active], "port 67 proto udp").packets > 0  # DHCP broadcasts, let in
    prefix = ipaddress.ip_network("2001:db8:4100:13c2::/64")
    slaac = [a.split()[0] for a in c1.addresses()["eth0"]
             if ":" in a and ipaddress.ip_interface(a.split()[0]).ip in prefix]
    assert slaac, "c1 has no SLAAC address: dnsmasq's RA (outgoing, allowed) did not arrive"
    assert any(u.get("accepted") and u.get("node") == active
               for u in registrar.updates(lab["inet"])), "ddclient's update did not get out"


# -- F20: the heartbeat rule typed on both hosts ---------------------------------------------------
def test_F20_worked_around_lsvm1_hears_lsvm2(shared_seed_lab: Lab) -> None:
    lab = shared_seed_lab
    assert heartbeat_sees(lab, "lsvm1") == {"lsvm1": "active", "lsvm2": "active"}
    assert heartbeat_sees(lab, "lsvm2") == {"lsvm1": "active", "lsvm2": "active"}
    assert rule(lab["lsvm1"], "from 192.168.1.7 to any port 694").packets > 0
    assert rule(lab["lsvm2"], "from 192.168.1.6 to any port 694").packets > 0


def test_F20_kept_lsvm1_never_hears_lsvm2_and_nobody_serves_after_it_dies(
        lab_factory: LabFactory) -> None:
    lab = lab_factory(stack="seed", keep_findings=["F20"], await_ready=False)
    profile = load_profile(lab.profile)
    # lsvm1 declares lsvm2 dead at initdead and takes everything: the preferred node never serves
    wait_for(lambda: heartbeat_sees(lab, "lsvm1"),
             until=lambda seen: seen.get("lsvm2") == "dead", timeout=120,
             what="lsvm1's heartbeat to call lsvm2 dead")
    held = wait_for(lambda: lab.status()["vip"], timeout=120,
                    until=lambda vips: set(vips.values()) == {"lsvm1"},
                    what="lsvm1 to hold every VIP")
    assert held[VIP4] == "lsvm1"
    assert rule(lab["lsvm1"], "from 192.168.1.6 to any port 694").packets == 0
    assert denied(lab["lsvm1"]) > 0  # lsvm2's heartbeats, dropped by ufw's policy
    assert lab.status()["services"]["lsvm2"]["heartbeat"] is False  # `cl_status` gets no answer
    # lsvm2 never finishes its own start-up: it waits for an acknowledgement lsvm1 drops
    assert "Local status now set to: 'active'" not in lab["lsvm2"].path(
        "/var/log/ha-log").read_text(errors="replace")
    # the backup loses power: lsvm2 notices, "takes over" and, as a rule, starts nothing at all.
    # Now and then its start-up finishes first and it takes its own group after all (F23)
    lab["lsvm1"].crash()
    wait_for(lambda: heartbeat_sees(lab, "lsvm2"),
             until=lambda seen: seen.get("lsvm1") == "dead",
             timeout=profile.deadtime_ms / 1000 + 60, what="lsvm2's heartbeat to call lsvm1 dead")
    ending = lab.expect_settled(UNSERVED, SERVED_ALONE)
    print(f"after lsvm1 died: {ending}")


# -- F21: 7789/tcp ---------------------------------------------------------------------------------
def test_F21_7789_is_open_but_nothing_listens(shared_seed_lab: Lab) -> None:
    lab = shared_seed_lab
    for name, peer in (("lsvm1", "192.168.1.7"), ("lsvm2", "192.168.1.6")):
        listening = lab[name].succeed("ss -Htln", timeout=10)
        assert ":7788" in listening and ":7789" not in listening, listening
        assert rule(lab[name], f"from {peer} to any port 7789").rule.endswith("accept")
    # from the peer: let in and refused at once; from anyone else: dropped by the policy
    rc, out = lab["lsvm2"].execute("timeout 3 bash -c 'echo > /dev/tcp/192.168.1.6/7789'", 10)
    assert rc == 1 and "refused" in out, (rc, out)
    rc, out = lab["c1"].execute("timeout 3 bash -c 'echo > /dev/tcp/192.168.1.6/7789'", 10)
    assert rc == 124, (rc, out)


# -- F22: DHCPv6 ----------------------------------------------------------------------------------
def test_F22_worked_around_c1_gets_a_stateless_dhcpv6_reply(shared_seed_lab: Lab) -> None:
    out = shared_seed_lab["c1"].succeed(DHCPV6_INFO.format(s=15), timeout=30)
    assert "RCV: Reply message" in out, out


@pytest.mark.stack("seed", keep_findings=["F22"])
def test_F22_kept_dhcpv6_information_requests_are_dropped(lab: Lab) -> None:
    active = lab[lab.status()["vip"][VIP4]]
    before = denied(active)
    _rc, out = lab["c1"].execute(DHCPV6_INFO.format(s=10), timeout=30)
    assert "Info-Request" in out and "RCV: Reply message" not in out, out
    assert denied(active) > before, "the Info-Requests were not dropped by the policy"
    assert rule(active, "port 53 proto udp").rule.endswith("accept")  # the rest still gets in
