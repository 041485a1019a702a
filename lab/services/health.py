"""Is the seed's pair ready? The readiness checks, and a wait on them.

Why here: `lab up`, the bench ("time to ready") and the health scenario must agree on what
"ready" means: the preferred node holds every VIP, is DRBD Primary with both disks UpToDate and
Connected, has the disk mounted, runs dnsmasq and ddclient; the peer runs heartbeat only; the
clients hold leases, and a SLAAC address where the servers advertise a prefix; the registrar
has heard from ddclient.
"""

from __future__ import annotations

import ipaddress
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import ndisc, walk
from lab.net import IFA_F_TENTATIVE, ipr
from lab.services import dhclient, registrar
from lab.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    from lab.lab import Lab
    from lab.node import Node


_RA_RANGE = re.compile(r"^\s*dhcp-range=.*\bconstructor:([\w.]+).*\bra-", re.M)


def advertised_segments(lab: Lab) -> set[str]:
    """Segments whose clients configure IPv6 from the servers' router advertisements: those
    of the interfaces the rendered dnsmasq.conf names in a `constructor:IFACE,...,ra-...`
    range (the seed advertises on VLAN 1 only)."""
    stack = lab.stack
    if stack is None or not hasattr(stack, "configs"):
        return set()
    segments: set[str] = set()
    for name, cfg in stack.configs(lab).items():
        conf = next((f.content for f in cfg.files if f.path.endswith("/dnsmasq.conf")), "")
        ifaces = set(_RA_RANGE.findall(conf))
        segments |= {i.segment for i in lab[name].spec.interfaces if i.name in ifaces}
    return segments


IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08


def proc_net(node: Node, table: str) -> str:
    """A /proc/net table as the node's network namespace shows it, read from the host through
    its init's /proc entry (no process started); "" once the node is gone."""
    return walk.read_text(Path(f"/proc/{node.init_pid}/net/{table}")) or ""


def inet6_addresses(proc_if_inet6: str) -> list[tuple[ipaddress.IPv6Address, str, int]]:
    """(address, interface, flags) of each line of a /proc/PID/net/if_inet6 (pure)."""
    out = []
    for line in proc_if_inet6.splitlines():
        fields = line.split()
        if len(fields) == 6 and len(fields[0]) == 32:
            address = ipaddress.IPv6Address(int(fields[0], 16))
            out.append((address, fields[5], int(fields[4], 16)))
    return out


def usable(flags: int) -> bool:
    """Whether an address with these IFA_F_* flags can be a packet's source: not while its
    duplicate address detection runs (unless optimistic), never once it failed (pure)."""
    if flags & IFA_F_DADFAILED:
        return False
    return not flags & IFA_F_TENTATIVE or bool(flags & IFA_F_OPTIMISTIC)


def has_address_in(node: Node, iface: str, prefix: Any) -> bool:
    """Whether the node's interface has a usable address in `prefix` (SLAAC made it): read
    from the host, no process started. An address still in duplicate address detection does
    not count: the kernel will not send from it yet, so a client's first DNS queries to an
    IPv6 VIP would time out (seen in CI when readiness counted it). A node that is off has
    none."""
    if node.state != "running":
        return False
    return any(name == iface and address in prefix and usable(flags)
               for address, name, flags in inet6_addresses(proc_net(node, "if_inet6")))


def slaac_interfaces(lab: Lab, node: Node, advertised: set[str]) -> list[tuple[str, Any]]:
    """(interface, IPv6 prefix) of each of the node's interfaces on a segment whose servers
    advertise a prefix: where SLAAC must give it an address."""
    out = []
    for iface in node.spec.interfaces:
        prefix = lab.topology.segments[iface.segment].ipv6
        if iface.segment in advertised and prefix is not None:
            out.append((iface.name, prefix))
    return out


def client_checks(lab: Lab, advertised: set[str]) -> dict[str, bool]:
    """The clients' readiness: a lease, and a SLAAC address where the servers advertise a
    prefix. Host-side reads only (~1 ms), so a wait can ask often."""
    checks = {}
    for node in lab:
        if node.spec.role != "client":
            continue
        checks[f"{node.name} has a lease"] = has_lease(node)
        for iface, prefix in slaac_interfaces(lab, node, advertised):
            checks[f"{node.name} has a SLAAC address"] = has_address_in(node, iface, prefix)
    return checks


def preferred_node(lab: Lab) -> str:
    """The server the stack wants holding the services ("" for a stack that names none)."""
    stack = lab.stack
    return stack.preferred(lab) if stack is not None and hasattr(stack, "preferred") else ""


def readiness(lab: Lab, status: dict[str, Any] | None = None,
              advertised: set[str] | None = None) -> dict[str, bool]:
    """Each readiness condition by name (pure over `lab.status()` plus two file reads).
    ``advertised``: the segments with router advertisements (default: read from the rendered
    configuration); their clients must also hold a SLAAC address."""
    st = status if status is not None else lab.status()
    if advertised is None:
        advertised = advertised_segments(lab)
    preferred = preferred_node(lab)
    servers = [n.name for n in lab if n.spec.role == "server"]
    peers = [n for n in servers if n != preferred]
    svc = st.get("services", {})
    drbd = st.get("drbd", {})
    checks = {
        "vips on preferred": bool(st.get("vip")) and all(
            v == preferred for v in st["vip"].values()),
        "preferred runs dnsmasq+ddclient+heartbeat": all(svc.get(preferred, {}).values())
        and bool(svc.get(preferred)),
        "peers run heartbeat only": all(
            svc.get(p, {}) == {"heartbeat": True, "dnsmasq": False, "ddclient": False}
            for p in peers),
        "disk mounted on preferred only": st.get("mounts", {}).get(preferred) == ["/srv/drbd0"]
        and all(not st.get("mounts", {}).get(p) for p in peers),
    }
    if st.get("disk_mode") == "replicated":
        checks["drbd primary, connected, uptodate"] = (
            drbd.get(preferred, {}).get("role") == "Primary"
            and all(drbd.get(p, {}).get("role") == "Secondary" for p in peers)
            and all(drbd.get(n, {}).get("cstate") == "Connected"
                    and drbd.get(n, {}).get("dstate") == "UpToDate" for n in servers))
    checks.update(client_checks(lab, advertised))
    checks.update(registrar_checks(lab, preferred))
    return checks


def registrar_checks(lab: Lab, preferred: str) -> dict[str, bool]:
    """Whether the registrar accepted an update from the preferred node (its record, read from
    the host: a wait can ask often)."""
    checks = {}
    for node in lab:
        if node.spec.role == "internet":
            checks["registrar updated by preferred"] = any(
                u.get("accepted") and u.get("node") == preferred
                for u in registrar.updates(node))
    return checks


DHCP_SERVER_PORT = 67


def udp_ports(proc_net_udp: str) -> set[int]:
    """The local ports of the sockets listed in a /proc/PID/net/udp (pure)."""
    ports = set()
    for line in proc_net_udp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 1 and ":" in fields[1]:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def serving_dhcp(lab: Lab) -> bool:
    """Whether a server node has a socket on the DHCP server port: the moment a client's
    DISCOVER gets an answer. Read from the host (/proc/PID/net/udp of the node's init shows its
    network namespace): no process is started, so it can be asked every few milliseconds."""
    return any(node.spec.role == "server" and node.state == "running"
               and DHCP_SERVER_PORT in udp_ports(proc_net(node, "udp")) for node in lab)


def nudge_clients(lab: Lab, advertised: set[str]) -> None:
    """Once a server listens for DHCP: restart the DHCP client of each running client node still
    without a lease, and send a router solicitation from each one still without a SLAAC address
    where the servers advertise a prefix. At `lab up` the clients boot with the servers: their
    dhclient backs off (seconds between DISCOVERs: 3.9 s of the fast profile's time to ready,
    12.5 s of seed's) and their kernel stopped soliciting routers while heartbeat waited out its
    start-up delay. A fresh dhclient asks at once and a solicitation is answered at once, as for
    a device plugged in after the servers came up. Only readiness uses it: a client's behaviour
    during a scenario is its own."""
    for node in lab:
        if node.spec.role != "client" or node.state != "running":
            continue
        if not has_lease(node):
            dhclient.restart(node, node.spec.interfaces[0].name)
            lab.log_event("client.dhcp_nudge", node=node.name)
        for iface, prefix in slaac_interfaces(lab, node, advertised):
            if has_address_in(node, iface, prefix):
                continue
            with ipr(node.netns_path) as handle:
                link = handle.link(iface)
            if link is not None:
                ndisc.solicit_routers(node.netns_path, link.index, link.mac)
                lab.log_event("client.router_solicitation", node=node.name, interface=iface)


def has_lease(node: Node) -> bool:
    """Whether the client's dhclient holds a lease (its lease file, read from the host)."""
    return "fixed-address" in (walk.read_text(node.path(dhclient.LEASES)) or "")


def wait_ready(lab: Lab, timeout: float = 120.0, poll: float = 0.1) -> float:
    """Wait until every readiness check holds; returns the seconds waited. On timeout the
    error names the checks still failing and ends with the servers' heartbeat logs.

    Four phases, the first three with cheap looks every 20-50 ms: until a server listens for
    DHCP (the clients still without a lease or SLAAC address are nudged then), until the clients
    hold their leases and SLAAC addresses, until the registrar heard from the preferred node
    (ddclient starts last), then the full checks (each `lab.status()` runs commands in every
    server: ~0.1-0.25 s here) every `poll` seconds, which the first look usually passes. Each
    phase's end is an event, so the bench can tell the services' time from the lab's."""
    start = time.monotonic()
    advertised = advertised_segments(lab)

    def left() -> float:
        return max(0.0, timeout - (time.monotonic() - start))

    def look() -> dict[str, bool]:
        return readiness(lab, lab.status(), advertised)
    try:
        wait_for(lambda: serving_dhcp(lab), timeout=timeout, interval=0.02, max_interval=0.05,
                 what=f"a server of lab {lab.name} to listen for DHCP")
        lab.log_event("lab.dhcp_listening", waited_s=round(time.monotonic() - start, 4))
        nudge_clients(lab, advertised)
        wait_for(lambda: client_checks(lab, advertised), until=lambda c: all(c.values()),
                 timeout=left(), interval=0.02,
                 max_interval=0.05, what=f"lab {lab.name}'s clients to be configured")
        lab.log_event("lab.clients_ready", waited_s=round(time.monotonic() - start, 4))
        preferred = preferred_node(lab)
        wait_for(lambda: registrar_checks(lab, preferred), until=lambda c: all(c.values()),
                 timeout=left(), interval=0.02, max_interval=0.05,
                 what=f"lab {lab.name}'s registrar to hear from {preferred}")
        lab.log_event("lab.registrar_updated", waited_s=round(time.monotonic() - start, 4))
        wait_for(look, until=lambda checks: bool(checks) and all(checks.values()),
                 timeout=left(), interval=poll,
                 max_interval=poll, what=f"lab {lab.name} to be ready")
    except WaitTimeout as exc:
        checks = exc.last if isinstance(exc.last, dict) else look()
        failing = [k for k, ok in checks.items() if not ok]
        detail = ""
        for node in lab:
            if node.spec.role == "server" and node.state == "running":
                _, tail = node.execute("tail -n 8 /var/log/ha-log", timeout=10)
                detail += f"\n--- {node.name} ha-log ---\n{tail}"
        raise TimeoutError(f"lab {lab.name} not ready after {timeout} s: {', '.join(failing)}"
                           f"{detail}") from None
    return time.monotonic() - start
