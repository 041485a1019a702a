"""The seed's ufw lines as each server's nftables: parsing, the two repairs, the listing's
counters, and the firewall checked against the daemons (pure)."""

from __future__ import annotations

import pytest

from lab.services import firewall, fwlint
from lab.services.render import load_seed

SEED = load_seed()
RULES = firewall.parse_ufw(SEED["ufw"])


def test_the_seeds_lines_as_printed() -> None:
    assert len(RULES) == 8
    drbd = [r for r in RULES if r.hosts]
    assert {(r.hosts, r.src, r.port) for r in drbd} == {
        (("lsvm1",), "192.168.1.7", "7788"), (("lsvm1",), "192.168.1.7", "7789"),
        (("lsvm2",), "192.168.1.6", "7788"), (("lsvm2",), "192.168.1.6", "7789")}
    hb = RULES[-1]
    assert (hb.hosts, hb.src, hb.port, hb.proto, hb.family) == ((), "192.168.1.6", "694", "udp", 4)
    assert [r.family for r in RULES if r.port in ("53", "67")] == [None, None, None]


@pytest.mark.parametrize(("line", "problem"), [
    ("$ sudo ufw limit 22/tcp", "allow, deny and reject only"),
    ("$ sudo ufw allow from 10.0.0.1 to fe80::1 port 53", "different address families"),
    ("$ sudo ufw allow 70000/tcp", "is not a port"),
    ("$ sudo ufw allow from nowhere to any port 53", "not an address"),
    ("sudo apt install ufw", "not a `[HOST]$ [sudo] ufw ...` command line"),
])
def test_a_line_it_cannot_render_is_a_file_line_error(line: str, problem: str) -> None:
    with pytest.raises(firewall.UfwError) as info:
        firewall.parse_ufw(f"# comment\n{line}\n")
    assert info.value.line == 2 and problem in str(info.value)


def test_heartbeat_rule_repaired_on_lsvm1_only_and_dhcpv6_let_in() -> None:
    for node, peer in (("lsvm1", "192.168.1.7"), ("lsvm2", "192.168.1.6")):
        rules, changes = firewall.lab_rules(RULES, firewall.context(SEED.texts, node),
                                            frozenset())
        hb = [r for r in rules if r.port == "694"]
        assert [r.src for r in hb] == [peer]
        assert {c.finding for c in changes} == ({"F20", "F22"} if node == "lsvm1" else {"F22"})
        assert any(r.allows(547, "udp", "fe80::1", 6) for r in rules)
    kept, changes = firewall.lab_rules(RULES, firewall.context(SEED.texts, "lsvm1"),
                                       frozenset({"F20", "F22"}))
    assert not changes and [r.src for r in kept if r.port == "694"] == ["192.168.1.6"]
    assert not any(r.allows(547, "udp", "fe80::1", 6) for r in kept)


def test_ruleset_is_ufws_policy_around_the_users_rules() -> None:
    rendered = firewall.render(SEED.texts, "lsvm1", frozenset())
    assert rendered is not None
    text, changes = rendered
    assert "policy drop;" in text and "policy accept;" in text
    assert 'ip saddr 192.168.1.7 udp dport 694 counter accept' in text
    assert "tcp dport 53 counter accept" in text and "ip saddr" not in text.split(
        "tcp dport 53")[0].splitlines()[-1]  # no address: IPv4 and IPv6 alike
    assert text.index("ct state related,established") < text.index("dport 7788")
    assert changes[0].key == "ufw" and firewall.render({}, "lsvm1", frozenset()) is None


def test_counters_from_a_listing() -> None:
    listing = """table inet ufw {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tiifname "lo" counter packets 3 bytes 180 accept comment "before: loopback"
\t\tip saddr 192.168.1.7 udp dport 694 counter packets 12 bytes 3400 accept comment "ufw allow from 192.168.1.7 to any port 694 proto udp"
\t\tcounter packets 5 bytes 300 comment "policy: deny incoming"
\t}
}
"""  # noqa: E501
    rows = firewall.counters(listing)
    assert [(r.chain, r.packets) for r in rows] == [("input", 3), ("input", 12), ("input", 5)]
    assert rows[1].rule == "ip saddr 192.168.1.7 udp dport 694 accept"
    assert firewall.summary(listing) == {"active": True, "rules": 3, "denied": 5, "dropped": 0}
    assert firewall.summary("")["active"] is False


def test_what_each_server_must_let_in() -> None:
    needs = {(n.daemon, n.port, n.proto, n.src) for n in fwlint.needs(SEED.texts, "lsvm1")}
    assert ("heartbeat", 694, "udp", "192.168.1.7") in needs
    assert ("DRBD drbd0", 7788, "tcp", "192.168.1.7") in needs
    assert ("dnsmasq DHCP", 67, "udp", None) in needs
    assert ("dnsmasq DHCPv6", 547, "udp", "fe80::1") in needs
    seed_rules = firewall.rules_on(RULES, "lsvm1")
    problems = fwlint.check(SEED.texts, "lsvm1", seed_rules)
    assert [(p[1], p[2]) for p in problems if "heartbeat" in p[3]] == [(13, "error")]
    assert [(p[1], p[2]) for p in problems if "(F21)" in p[3]] == [(5, "warning")]
