"""The topology validator: the seed's network loads; every kind of mistake is named precisely."""

from __future__ import annotations

import copy
import ipaddress
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.lab import DEFAULT_TOPOLOGY
from lab.topology import TopologyError, load_topology, parse_topology

SEED = tomllib.loads(DEFAULT_TOPOLOGY.read_text())


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(raw, "t.toml")
    return info.value.problems


def test_seed_topology_loads() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    assert set(topo.nodes) == {"rtbr1", "lsvm1", "lsvm2", "inet", "c1", "g1"}
    lsvm1 = topo.nodes["lsvm1"]
    assert [p.name for p in lsvm1.ports] == ["enp2s1"]
    assert [(i.name, i.segment, i.tagged) for i in lsvm1.interfaces] == [
        ("enp2s1", "vlan1", False), ("enp2s1.3", "vlan3", True)]
    assert lsvm1.interfaces_on("enp2s1") == lsvm1.interfaces
    assert topo.nodes["rtbr1"].port("eth0").mac == "6c:b0:ce:e1:70:18"
    assert {str(v.address) for v in topo.vips} == {
        "192.168.1.4", "192.168.3.4", "2001:db8:4100:13c2:0:ffff:c0a8:104",
        "2001:db8:4100:13c2:0:ffff:c0a8:304"}
    assert topo.owner_of("192.168.1.7") == "lsvm2"
    assert topo.owner_of("192.168.1.4") is None  # a VIP belongs to whoever heartbeat says
    gw6 = lsvm1.gateway6
    assert gw6 is not None and gw6.interface == "enp2s1"
    assert str(gw6.address) == "fe80::6eb0:ceff:fee1:7018"


def test_router_link_local_is_the_seeds_upstream() -> None:
    """The seed's dnsmasq forwards to fe80::6eb0:ceff:fee1:7018: the router's MAC must yield it."""
    mac = load_topology(DEFAULT_TOPOLOGY).nodes["rtbr1"].port("eth0").mac
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 255, 254, *octets[3:]]
    iid = ":".join(f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2))
    assert ipaddress.ip_address(f"fe80::{iid}") == ipaddress.ip_address(
        "fe80::6eb0:ceff:fee1:7018")


def test_address_outside_its_segment() -> None:
    raw = copy.deepcopy(SEED)
    raw["nodes"]["lsvm1"]["interfaces"]["enp2s1"]["addresses"][0] = "192.168.2.6/24"
    assert problems_of(raw) == [
        "t.toml: nodes.lsvm1.interfaces.enp2s1.addresses[0]: 192.168.2.6/24 is not inside "
        "segment vlan1 (192.168.1.0/24)"]


def test_duplicate_address() -> None:
    raw = copy.deepcopy(SEED)
    raw["nodes"]["lsvm2"]["interfaces"]["enp2s1"]["addresses"][0] = "192.168.1.6/24"
    assert problems_of(raw) == [
        "t.toml: nodes.lsvm2.interfaces.enp2s1.addresses[0]: 192.168.1.6 is already used by "
        "nodes.lsvm1.interfaces.enp2s1"]


def test_duplicate_node_name_in_file(tmp_path: Path) -> None:
    text = DEFAULT_TOPOLOGY.read_text() + '\n[nodes.c1]\nrole = "client"\n'
    path = tmp_path / "dup.toml"
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: -: not valid TOML")
    assert "c1" in problem


def test_interface_name_too_long() -> None:
    raw = copy.deepcopy(SEED)
    ifaces = raw["nodes"]["c1"]["interfaces"]
    ifaces["eth0-with-a-long-name"] = ifaces.pop("eth0")
    ifaces["eth0-with-a-long-name"]["port"] = "eth0"
    assert "t.toml: nodes.c1.interfaces.eth0-with-a-long-name: interface name " \
           "'eth0-with-a-long-name' is 21 characters; the kernel allows 15" in problems_of(raw)


def test_unknown_role_and_key_and_segment() -> None:
    raw = copy.deepcopy(SEED)
    raw["nodes"]["inet"]["role"] = "mainframe"
    raw["nodes"]["inet"]["colour"] = "blue"
    raw["nodes"]["g1"]["interfaces"]["eth0"]["segment"] = "vlan9"
    problems = problems_of(raw)
    assert "t.toml: nodes.inet.role: unknown role 'mainframe' (known: client, internet, " \
           "router, server)" in problems
    assert "t.toml: nodes.inet.colour: unknown key (allowed: gateway4, gateway6, interfaces, " \
           "ports, role)" in problems
    assert "t.toml: nodes.g1.interfaces.eth0.segment: unknown segment 'vlan9'" in problems


def test_all_problems_reported_at_once() -> None:
    raw = copy.deepcopy(SEED)
    raw["nodes"]["c1"]["ports"]["eth0"]["mac"] = "01:00:5e:00:00:01"
    raw["nodes"]["g1"]["gateway4"] = "10.0.0.1"
    raw["vips"]["192.168.1.4"]["interface"] = "eth7"
    problems = problems_of(raw)
    assert problems == [
        "t.toml: nodes.c1.ports.eth0.mac: 01:00:5e:00:00:01 is a multicast address",
        "t.toml: nodes.g1.gateway4: 10.0.0.1 is on none of this node's segments",
        't.toml: vips."192.168.1.4".interface: \'eth7\' must be an interface of every server',
    ]


def test_tagged_interface_needs_a_vlan_id() -> None:
    raw = copy.deepcopy(SEED)
    raw["nodes"]["inet"]["interfaces"]["eth0.9"] = {"port": "eth0", "segment": "internet",
                                                     "addresses": []}
    problems = problems_of(raw)
    assert any("segment internet has no vlan_id" in p for p in problems)
    assert any("port eth0 already carries internet" in p for p in problems)


def test_missing_file() -> None:
    with pytest.raises(TopologyError) as info:
        load_topology("/nonexistent/topo.toml")
    assert info.value.problems == ["/nonexistent/topo.toml: -: file not found"]


@settings(max_examples=150, deadline=None)
@given(host=st.integers(min_value=0, max_value=2**32 - 1), plen=st.integers(8, 30))
def test_property_any_ipv4_address_is_accepted_iff_inside_its_segment(host: int,
                                                                      plen: int) -> None:
    raw = copy.deepcopy(SEED)
    address = ipaddress.IPv4Interface((host, plen))
    raw["nodes"]["c1"]["interfaces"]["eth0"]["addresses"] = [str(address)]
    segment = ipaddress.ip_network("192.168.1.0/24")
    taken = {ipaddress.ip_address(a) for a in ("192.168.1.1", "192.168.1.6", "192.168.1.7",
                                               "192.168.1.4")}
    inside = address.network == segment and address.ip not in (
        segment.network_address, segment.broadcast_address) and address.ip not in taken
    if inside:
        topo = parse_topology(raw, "t.toml")
        assert topo.nodes["c1"].interfaces[0].addresses == (address,)
    else:
        problems = problems_of(raw)
        assert problems and all(p.startswith("t.toml: nodes.c1.interfaces.eth0.addresses[0]: ")
                                for p in problems)


@settings(max_examples=100, deadline=None)
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1,
                    max_size=24))
def test_property_interface_names_follow_the_kernel_limit(name: str) -> None:
    raw = copy.deepcopy(SEED)
    raw["nodes"]["inet"]["ports"] = {name: {"mac": "02:00:cb:00:71:0a"}}
    raw["nodes"]["inet"]["interfaces"] = {name: {"port": name, "segment": "internet",
                                                 "addresses": ["203.0.113.10/24"]}}
    valid = len(name) <= 15 and name not in (".", "..")
    if valid:
        assert parse_topology(raw, "t.toml").nodes["inet"].interfaces[0].name == name
    else:
        assert any("interface name" in p for p in problems_of(raw))
