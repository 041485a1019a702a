"""The seed's own test plan: "rebooting the primary system and checking if the secondary takes
over, (then reverts to the primary if you have auto_failback on)" -- each story with DNS probes
on the VIPs (UDP and TCP) and a DHCP fleet running throughout, and the verdict stated once, at
the end.

Faults are aimed by role (`seed_lab.active()`), never by name, so these stories run whichever
node the design prefers.
"""

from __future__ import annotations

import ipaddress
import time
from functools import partial
from typing import Any

import pytest

from lab.budgets import STOCK_IPV6ADDR_S
from lab.services import dhclient
from lab.services.ask import ask_from
from lab.services.dhclient import last_lease
from lab.services.registrar import updates
from lab.testing import (
    Lab,
    LabFactory,
    Nemesis,
    Node,
    Probes,
    artifact_dir,
    expect,
    failback_budget_s,
    takeover_budget_s,
    wait_for,
)

pytestmark = [pytest.mark.lab, pytest.mark.seed, pytest.mark.failover]


@pytest.mark.crash
@pytest.mark.audit(skip=["drbd"])  # the dead server stays dead: its peer is alone
def test_kill_primary(seed_lab: Lab, probes: Probes, nemesis: Nemesis) -> None:
    primary, standby = seed_lab.active(), seed_lab.standby()
    with probes.dhcp(clients=20), probes.dns(transport="udp,tcp"):
        probes.wait_bound()
        with nemesis.crash(primary, restart=False):
            probes.wait_served_by(standby)
            probes.confirm_leases()
    expect(probes.metrics(), takeover_s=f"<= {takeover_budget_s(seed_lab)}", leases_lost=0,
           lease_survival=1.0, duplicate_ips=0, split_brain_s=0)


@pytest.mark.failback
def test_reboot_primary_failback(seed_lab: Lab, probes: Probes) -> None:
    primary, standby = seed_lab.active(), seed_lab.standby()
    with probes.dhcp(clients=20), probes.dns(transport="udp,tcp"):
        probes.wait_bound()
        primary.shutdown()                      # orderly: heartbeat hands the group over
        probes.wait_served_by(standby)
        with probes.fault("failback", targets=[standby.name]):
            primary.start()                     # auto_failback on: it takes everything back
            probes.wait_served_by(primary, timeout=180)
            probes.confirm_leases()
    failover, failback = probes.metrics(), probes.metrics(fault_id=probes.last_fault().fault_id)
    expect(failover, takeover_s=f"<= {failback_budget_s(seed_lab)}", leases_lost=0,
           duplicate_ips=0, label="failover")
    expect(failback, fault_outage_s=f"<= {failback_budget_s(seed_lab)}", lease_survival=1.0,
           label="failback")


@pytest.mark.storage
@pytest.mark.audit(skip=["drbd"])
def test_graceful_shutdown_primary(seed_lab: Lab, probes: Probes) -> None:
    primary, standby = seed_lab.active(), seed_lab.standby()
    primary.succeed("date +%s.%N > /srv/drbd0/written-before-shutdown && sync")
    written = primary.succeed("cat /srv/drbd0/written-before-shutdown")
    with probes.dhcp(clients=20), probes.dns(transport="udp,tcp"):
        probes.wait_bound()
        primary.shutdown()
        probes.wait_served_by(standby)
        probes.confirm_leases()
    assert standby.succeed("cat /srv/drbd0/written-before-shutdown") == written
    expect(probes.metrics(), takeover_s=f"<= {failback_budget_s(seed_lab)}", leases_lost=0,
           lease_survival=1.0, duplicate_ips=0)


@pytest.mark.crash
@pytest.mark.ddns
@pytest.mark.audit(skip=["drbd"])
def test_ddclient_follows_active(seed_lab: Lab, probes: Probes, nemesis: Nemesis) -> None:
    primary, standby = seed_lab.active(), seed_lab.standby()
    registrar = seed_lab.with_role("internet")[0]
    assert {u["node"] for u in accepted_updates(registrar)} == {primary.name}
    with nemesis.crash(primary, restart=False):
        crashed_at = time.monotonic()
        seed_lab.wait_until(lambda: updates_since(registrar, crashed_at), timeout=120,
                            what=f"an update from {standby.name} after the takeover")
        seed_lab.wait_until(lambda: hosts_updated(registrar, standby.name, crashed_at) >=
                            PUBLIC_HOSTS, timeout=60, what="every host updated")
    assert {u["node"] for u in updates_since(registrar, crashed_at)} == {standby.name}
    # the run's metrics count the same updates from the timeline (the SLA judges them)
    assert probes.metrics().registrar_updates["ok"] >= len(PUBLIC_HOSTS)


@pytest.mark.crash
@pytest.mark.ipv6
@pytest.mark.audit(skip=["drbd"])
def test_ipv6_failover(seed_lab: Lab, probes: Probes, nemesis: Nemesis) -> None:
    primary, standby = seed_lab.active(), seed_lab.standby()
    c1 = seed_lab["c1"]
    slaac = c1_slaac_address(seed_lab)
    vip6 = next(v for v in probes_vips(seed_lab, "vlan1") if ":" in v)
    with probes.dns(transport="udp,tcp"), nemesis.crash(primary, restart=False):
        probes.wait_served_by(standby, vip=vip6)
        seed_lab.wait_until(lambda: router_advertised_by(c1, standby), timeout=60,
                            what=f"an RA from {standby.name} on c1")
        probes.reboot()                     # c1's dhclient asks again (INIT-REBOOT)
        seed_lab.wait_until(lambda: slaac in ask_from(c1, vip6, C1_NAME, "AAAA"),
                            timeout=90, what=f"AAAA {C1_NAME} = {slaac} (ra-names)")
    assert c1_slaac_address(seed_lab) == slaac   # SLAAC kept its address across the failover
    expect(probes.metrics(vip=vip6), takeover_s=f"<= {takeover_budget_s(seed_lab)}")


@pytest.mark.crash
@pytest.mark.dhcp
@pytest.mark.audit(skip=["drbd"])
def test_guest_vlan_failover(seed_lab: Lab, probes: Probes, nemesis: Nemesis) -> None:
    primary, standby = seed_lab.active(), seed_lab.standby()
    vip3 = next(v for v in probes_vips(seed_lab, "vlan3") if "." in v)
    # the guests' IPv6 VIP shares vlan1's /64 (F5): only the IPv4 VIP is theirs to ask
    with probes.dhcp(clients=10, node="g1"), probes.dns(clients=("g1",), servers=[vip3]):
        probes.wait_bound()
        with nemesis.crash(primary, restart=False):
            probes.wait_served_by(standby)
            probes.confirm_leases()
    expect(probes.metrics(), takeover_s=f"<= {takeover_budget_s(seed_lab)}", leases_lost=0,
           lease_survival=1.0, duplicate_ips=0)


@pytest.mark.crash
@pytest.mark.dhcp
@pytest.mark.failback
@pytest.mark.slow
def test_repeated_failover_lease_survival(seed_lab: Lab, probes: Probes,
                                          nemesis: Nemesis) -> None:
    c1_lease = real_client_address(seed_lab)
    survival = []
    with probes.dhcp(clients=50), probes.dns():
        probes.wait_bound()
        for _ in range(3):
            primary, standby = seed_lab.active(), seed_lab.standby()
            with nemesis.crash(primary):         # power back on at the end of the block
                probes.wait_served_by(standby)
                survival.append(probes.confirm_leases())
                probes.reboot()                  # every client, c1's dhclient too, asks again
            # auto_failback on: the preferred node takes everything back once it has rejoined
            # (after heartbeat's start-up delay); healthy before that is only a pause
            probes.wait_served_by(primary, timeout=180)
            seed_lab.wait_healthy(timeout=180)
    assert [s.fraction if s else None for s in survival] == [1.0, 1.0, 1.0], survival
    assert all(s and s.names_ok == s.names_checked for s in survival), survival
    assert real_client_address(seed_lab) == c1_lease
    expect(probes.metrics(), duplicate_ips=0, leases_lost=0)


# -- what these stories read from the lab -----------------------------------------------------
C1_NAME = "c1.internal.thesteins.org"
PUBLIC_HOSTS = {"@", "imap", "smtp"}  # the seed's ddclient.conf


def accepted_updates(registrar: Node) -> list[dict[str, Any]]:
    return [u for u in updates(registrar) if u.get("accepted")]


def updates_since(registrar: Node, t: float) -> list[dict[str, Any]]:
    return [u for u in accepted_updates(registrar) if u["t_mono"] >= t]


def hosts_updated(registrar: Node, node: str, t: float) -> set[str]:
    return {u["host"] for u in updates_since(registrar, t) if u["node"] == node}


def probes_vips(lab: Lab, segment: str) -> list[str]:
    return [str(v.address) for v in lab.topology.vips if v.segment == segment]


def c1_slaac_address(lab: Lab, timeout: float = 20.0) -> str:
    """c1's SLAAC address in vlan1's prefix. A lab is ready once c1 holds a DHCP lease, which can
    come before dnsmasq's first router advertisement has reached c1: wait for the address."""
    __tracebackhide__ = True
    prefix = lab.topology.segments["vlan1"].ipv6
    assert prefix is not None

    def slaac() -> list[str]:
        addrs = [a.split()[0] for a in lab["c1"].addresses()["eth0"]]
        return [str(ipaddress.ip_interface(a).ip) for a in addrs
                if ":" in a and ipaddress.ip_interface(a).ip in prefix]
    return wait_for(slaac, timeout=timeout, what=f"a SLAAC address in {prefix} on c1")[0]


def router_advertised_by(client: Node, server: Node) -> bool:
    """Whether the client's IPv6 default route points at the server (its RA was heard)."""
    link_local = eui64_link_local(server.spec.ports[0].mac)
    return link_local in client.succeed("ip -6 route show default")


def eui64_link_local(mac: str) -> str:
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, *([0] * 6), *eui])))


def real_client_address(lab: Lab) -> str:
    return last_lease(lab["c1"].path(dhclient.LEASES).read_text())["fixed-address"]


@pytest.mark.crash
@pytest.mark.parametrize("agent", ["stock", "lean"])
def test_ipv4_vips_move_with_gratuitous_arp(lab_factory: LabFactory, agent: str) -> None:
    """After a crash the survivor holds each IPv4 VIP as the package's IPaddr leaves it (on an
    alias label, with its broadcast), and a client that knew the dead node's MAC learns the
    survivor's from gratuitous ARP alone, without asking again: with the package's agent and
    with the lean one profile `fast` runs."""
    lab = lab_factory(stack="seed", profile="fast", ipaddr=agent)
    primary, standby = lab.active(), lab.standby()
    vips = [v for v in lab.topology.vips if v.address.version == 4]
    watchers = {vip: client_on(lab, vip.segment) for vip in vips}
    for vip, client in watchers.items():
        client.succeed(f"ping -c 1 -W 2 {vip.address}")  # the client learns the holder's MAC
        assert knows_at(client, str(vip.address), mac_of(primary, vip.interface))
    primary.crash()
    for vip, client in watchers.items():
        survivor = mac_of(standby, vip.interface)
        wait_for(partial(knows_at, client, str(vip.address), survivor),
                 timeout=takeover_budget_s(lab),
                 what=f"{client.name} to learn {vip.address} at {standby.name}'s MAC {survivor}")
        held = standby.succeed(f"ip -4 -o addr show dev {vip.interface} to {vip.address}/32")
        broadcast = ipaddress.ip_interface(f"{vip.address}/{vip.prefixlen}").network \
            .broadcast_address
        assert f"brd {broadcast}" in held and f"{vip.interface}:0" in held, held


def client_on(lab: Lab, segment: str) -> Node:
    """The first client node with an interface on `segment`."""
    return next(lab[n.name] for n in lab.topology.nodes_with_role("client")
                if any(i.segment == segment for i in n.interfaces))


def knows_at(client: Node, address: str, mac: str) -> bool:
    """Whether the client's neighbour table maps `address` to `mac`."""
    return mac in client.succeed(f"ip neigh show {address}")


def mac_of(node: Node, interface: str) -> str:
    """The MAC of the port an interface sits on, as the topology gives it to the node."""
    return node.spec.port(node.spec.interface(interface).port).mac


@pytest.mark.crash
@pytest.mark.ipv6
@pytest.mark.slow
def test_ipv6addr_takeover_cost(lab_factory: LabFactory, request: pytest.FixtureRequest) -> None:
    """The same crash twice: with the package's IPv6addr agent, and with one that configures
    the address without waiting for DAD and advertises it in the background."""
    takeover = {}
    for agent in ("stock", "nonblocking"):
        lab = lab_factory(stack="seed", ipv6addr=agent)
        probes = Probes(lab, artifact_dir(request) / f"probes-{agent}", run_id=agent)
        primary, standby = lab.active(), lab.standby()
        with probes.dns(transport="udp,tcp"):
            primary.crash()
            takeover[agent] = probes.wait_takeover()
            probes.wait_served_by(standby)
        probes.write_artifacts(title=f"{request.node.name} · IPv6addr {agent}")
    cost = takeover["stock"] - takeover["nonblocking"]
    print(f"takeover with the stock IPv6addr {takeover['stock']:.1f} s, non-blocking "
          f"{takeover['nonblocking']:.1f} s: the two IPv6 VIPs cost {cost:.1f} s")
    assert takeover["nonblocking"] <= takeover_budget_s(lab)  # the last lab: non-blocking
    # per IPv6 VIP: DAD, then 5 advertisements 1 s apart (measured 7.1 s each here)
    assert 2 * 4.0 <= cost <= 2 * (STOCK_IPV6ADDR_S + 1.0), takeover
