"""The profiles loader: both shipped profiles load, and bad files fail as `file: key: problem`."""

from __future__ import annotations

import pytest

from lab.services.profiles import ProfileError, load_profiles, parse_profiles

GOOD = """
[p]
heartbeat.keepalive_ms = 250
heartbeat.deadtime_ms = 1500
heartbeat.warntime_ms = 1000
heartbeat.initdead_ms = 3000
drbd.wfc_timeout_s = 10
drbd.degr_wfc_timeout_s = 10
drbd.outdated_wfc_timeout_s = 10
drbd.ping_int_s = 1
dnsmasq.no_ping = true
"""


def test_shipped_profiles_match_the_seed_and_the_brief() -> None:
    profiles = load_profiles()
    seed, fast = profiles["seed"], profiles["fast"]
    assert (seed.deadtime_ms, seed.initdead_ms, seed.warntime_ms) == (10000, 20000, 5000)
    assert seed.keepalive_ms is None and seed.effective_keepalive_ms == 2000
    assert (seed.wfc_timeout_s, seed.degr_wfc_timeout_s, seed.outdated_wfc_timeout_s) == (10,) * 3
    assert not seed.no_ping and seed.ping_int_s is None
    assert fast.ping_int_s == 1
    assert fast.keepalive_ms is not None and 200 <= fast.keepalive_ms <= 500
    assert 1000 <= fast.deadtime_ms <= 2000
    assert fast.warntime_ms < fast.deadtime_ms <= fast.initdead_ms
    assert fast.optimistic_dad and not seed.optimistic_dad
    assert (seed.ipaddr, seed.ipv6addr) == ("stock", "stock")  # the package's agents
    assert (fast.ipaddr, fast.ipv6addr) == ("lean", "nonblocking")


def test_optimistic_dad_is_off_unless_a_profile_asks() -> None:
    assert not parse_profiles(GOOD, "x.toml")["p"].optimistic_dad
    on = parse_profiles(GOOD + "clients.optimistic_dad = true\n", "x.toml")["p"]
    assert on.optimistic_dad


def test_good_text_parses() -> None:
    p = parse_profiles(GOOD, "x.toml")["p"]
    assert p.deadtime_ms == 1500 and (p.ipaddr, p.ipv6addr) == ("stock", "stock")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("heartbeat.deadtime_ms = 1500", ""), "x.toml: p.heartbeat.deadtime_ms: missing"),
        (("= 1500", '= "1500"'), "x.toml: p.heartbeat.deadtime_ms: expected an integer"),
        (("= true", "= 1"), "x.toml: p.dnsmasq.no_ping: expected true or false"),
        (("dnsmasq.no_ping", "dnsmasq.noping"), "x.toml: p.dnsmasq.noping: unknown key"),
        (("warntime_ms = 1000", "warntime_ms = 1600"), "x.toml: p.heartbeat.warntime_ms: must"),
        (("keepalive_ms = 250", "keepalive_ms = 2000"), "x.toml: p.heartbeat.keepalive_ms: must"),
        (("initdead_ms = 3000", "initdead_ms = 1000"), "x.toml: p.heartbeat.initdead_ms: must"),
        (("[p]", "[p\n"), "x.toml: (file):"),
        (("dnsmasq.no_ping = true", "dnsmasq.no_ping = true\nclients.optimistic_dad = 1"),
         "x.toml: p.clients.optimistic_dad: expected true or false"),
        (("dnsmasq.no_ping = true", "dnsmasq.no_ping = true\nclients.dad = true"),
         "x.toml: p.clients.dad: unknown key"),
        (("dnsmasq.no_ping = true", 'dnsmasq.no_ping = true\nagents.ipaddr = "nonblocking"'),
         "x.toml: p.agents.ipaddr: expected one of stock, lean, got 'nonblocking'"),
        (("dnsmasq.no_ping = true", 'dnsmasq.no_ping = true\nagents.ipv6addr = "lean"'),
         "x.toml: p.agents.ipv6addr: expected one of stock, nonblocking, got 'lean'"),
    ],
)
def test_bad_profiles_name_file_and_key(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profiles(GOOD.replace(*edit), "x.toml")
    assert str(err.value).startswith(message)
