"""The lab's wires: a switch namespace, its bridges, and one veth per node interface.

Everything is made over rtnetlink (lab/rtnl.py) inside namespaces the lab owns; the root
namespace never holds a lab link, address or route (a veth's node end is created directly inside
the node's namespace).

IPv6 duplicate address detection: a node's static addresses from the topology skip DAD (the lab
knows they are unique). Its link-locals depend on how it is wired (`wire(..., quick=)`):
- quick (a fresh lab's first boot, `Lab.up`): the lab adds the same EUI-64 link-locals the kernel
  would make, also without DAD, so the node is usable the instant it is wired. Nobody on the
  wires has seen any node yet, so there is nothing to wait for.
- otherwise (a node powered on again in a running lab: crash/start, reboot): the kernel makes
  them and runs DAD, and `Node.start` waits for it (~1 s) as before; the rest of the lab holds
  neighbour state about the node from its previous life (entries retrying once a second), and a
  node must come back the way a booting machine does.
Everything a daemon adds later (heartbeat's IPv6 VIPs, SLAAC addresses) always goes through the
kernel's DAD: the stock IPv6addr agent's wait and a DAD failure against a hung peer stay real.

Two ways to carry the seed's VLANs, chosen by what the kernel can do:
- ``8021q``: one veth per *port* into a VLAN-filtering bridge ("trunk"); tagged interfaces are
  real 802.1Q sub-interfaces on the node side, as on the seed's servers.
- ``vlan-bridges`` (this machine: no 8021q module, no bridge VLAN filtering): one bridge per
  segment and one veth per *interface*; the interfaces of one port are raised and dropped
  together, so pulling a cable still takes every VLAN on it down at once.
Tagged interfaces share their port's MAC in both modes, as sub-interfaces do.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from lab.rtnl import IN6_ADDR_GEN_MODE_NONE, Link, NetlinkError, Rtnl, eui64_link_local
from lab.topology import Interface, Node, Topology

NetworkMode = Literal["8021q", "vlan-bridges"]
TRUNK = "trunk"
IFA_F_NODAD = 0x02
IFA_F_TENTATIVE = 0x40
IFF_UP = 0x1
BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4


class WiringError(RuntimeError):
    """A node's switch-side link that should exist does not (its wiring is incomplete)."""


def _lookup(sw: Rtnl, name: str, node: Node) -> Link:
    """Switch link `name`, or a `WiringError` that says whose wiring lacks it."""
    link = sw.link(name)
    if link is None:
        raise WiringError(f"{node.name}'s wiring is incomplete: the switch has no link {name}")
    return link


@contextmanager
def ipr(netns_path: str) -> Iterator[Rtnl]:
    """An rtnetlink socket of the namespace at `netns_path` (a /proc/PID/ns/net path); never
    one of a namespace that does not exist (opening the path fails instead)."""
    with Rtnl(netns_path) as handle:
        yield handle


def detect_mode(switch_netns: str) -> tuple[NetworkMode, str]:
    """Try 802.1Q for real inside the switch namespace; fall back to one bridge per VLAN."""
    with ipr(switch_netns) as sw:
        try:
            sw.add_bridge("probe-br", vlan_filtering=True)
        except NetlinkError as exc:
            return "vlan-bridges", f"bridge VLAN filtering unavailable ({exc.args[1]})"
        try:
            bridge = sw.link("probe-br")
            if bridge is None or _bridge_vlan_filtering(bridge) != 1:
                return "vlan-bridges", "bridge ignores vlan_filtering"
            sw.add_vlan("probe-br.3", bridge.index, 3)
        except NetlinkError as exc:
            return "vlan-bridges", f"no 802.1Q sub-interfaces ({exc.args[1]})"
        finally:
            for name in ("probe-br.3", "probe-br"):
                link = sw.link(name)
                if link is not None:
                    sw.del_link(link.index)
    return "8021q", "8021q and bridge VLAN filtering available"


def detect_mode_cached(switch_netns: str, cache: Path) -> tuple[NetworkMode, str]:
    """`detect_mode`, remembered in `cache` for as long as the kernel's abilities cannot have
    changed: the same boot and the same loaded modules. Probing costs ~50 ms (the kernel makes
    and unregisters a bridge for the refused VLAN-filtering request) that every `lab up` would
    otherwise pay for the same answer."""
    key = _kernel_key()
    with suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(cache.read_text())
        if saved["key"] == key and saved["mode"] in ("8021q", "vlan-bridges"):
            return saved["mode"], str(saved["reason"])
    mode, reason = detect_mode(switch_netns)
    with suppress(OSError):
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "mode": mode, "reason": reason}))
        os.replace(tmp, cache)
    return mode, reason


def _kernel_key() -> str:
    """This boot of this kernel with these modules loaded (a module loaded later, 8021q say,
    changes the key and so the answer)."""
    parts = [Path("/proc/sys/kernel/random/boot_id").read_text().strip(), os.uname().release]
    with suppress(OSError):
        modules = sorted(line.split()[0] for line in
                         Path("/proc/modules").read_text().splitlines() if line.strip())
        parts.append(hashlib.sha1(" ".join(modules).encode()).hexdigest())
    return "/".join(parts)


def _bridge_vlan_filtering(link: Link) -> int | None:
    from lab.rtnl import IFLA_BR_VLAN_FILTERING
    value = link.info_data.get(IFLA_BR_VLAN_FILTERING)
    return None if not value else value[0]


def switch_port_name(node: Node, index: int) -> str:
    return f"{node.name}-{index}"


class Fabric:
    """The switch of one lab and the wiring of nodes into it."""

    def __init__(self, topology: Topology, switch_netns: str, mode: NetworkMode) -> None:
        self.topology = topology
        self.switch_netns = switch_netns
        self.mode = mode

    # -- the switch -------------------------------------------------------------------------------
    def build_switch(self) -> None:
        with ipr(self.switch_netns) as sw:
            sw.set_link(sw.index("lo"), up=True)
            if self.mode == "8021q":
                sw.add_bridge(TRUNK, vlan_filtering=True, up=True)
                return
            for segment in self.topology.segments.values():
                # no STP and no forwarding delay: a port forwards as soon as it is up, like an
                # unmanaged switch; the seed's switch reboot is modelled by dropping bridges
                sw.add_bridge(segment.name, stp=False, forward_delay=0, up=True)

    def set_switch_power(self, on: bool) -> None:
        """A switch reboot: every bridge (and so every port) goes down, then comes back."""
        with ipr(self.switch_netns) as sw:
            names = [TRUNK] if self.mode == "8021q" else list(self.topology.segments)
            for name in names:
                sw.set_link(sw.index(name), up=on)

    def vlan_id(self, segment: str) -> int:
        seg = self.topology.segments[segment]
        if seg.vlan_id is not None:
            return seg.vlan_id
        return 4000 + sorted(self.topology.segments).index(segment)

    # -- wiring a node ----------------------------------------------------------------------------
    def wire(self, node: Node, init_pid: int, node_netns: str, quick: bool = False) -> None:
        """Plug `node` (whose PID 1 is `init_pid`) into the switch and configure its side;
        `quick`: link-locals without DAD (see the module's docstring)."""
        with ipr(self.switch_netns) as sw:
            if self.mode == "8021q":
                self._wire_trunk(sw, node, init_pid)
            else:
                self._wire_bridges(sw, node, init_pid)
        self.configure(node, node_netns, quick)

    def _wire_bridges(self, sw: Rtnl, node: Node, init_pid: int) -> None:
        bridges = {seg: sw.index(seg) for seg in {i.segment for i in node.interfaces}}
        for index, iface in enumerate(node.interfaces):
            port = node.port(iface.port)
            # one message: the pair, its node end (down) inside the node, its switch end up
            # in the segment's bridge
            sw.add_veth(switch_port_name(node, index), iface.name, peer_mac=port.mac,
                        peer_netns_pid=init_pid, master=bridges[iface.segment], up=True)

    def _wire_trunk(self, sw: Rtnl, node: Node, init_pid: int) -> None:
        trunk = sw.index(TRUNK)
        for index, port in enumerate(node.ports):
            name = switch_port_name(node, index)
            sw.add_veth(name, port.name, peer_mac=port.mac, peer_netns_pid=init_pid,
                        master=trunk)
            idx = sw.index(name)
            sw.bridge_vlan(False, idx, 1)
            for iface in node.interfaces_on(port.name):
                vid = self.vlan_id(iface.segment)
                flags = 0 if iface.tagged else BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
                sw.bridge_vlan(True, idx, vid, flags)
                sw.bridge_vlan(True, trunk, vid, 0, on_bridge_itself=True)
            sw.set_link(idx, up=True)

    def configure(self, node: Node, node_netns: str, quick: bool = False) -> None:
        """Addresses, links up and default routes inside the node."""
        with ipr(node_netns) as nr:
            nr.set_link(nr.index("lo"), up=True)
            if self.mode == "8021q":
                for iface in node.interfaces:
                    if iface.tagged:
                        nr.add_vlan(iface.name, nr.index(iface.port),
                                    self.vlan_id(iface.segment))
            for iface in node.interfaces:
                idx = nr.index(iface.name)
                if quick:
                    # the kernel makes no link-local of its own (it would be tentative for
                    # ~1 s) ...
                    nr.set_link(idx, addr_gen_mode=IN6_ADDR_GEN_MODE_NONE)
                for address in iface.addresses:
                    nr.add_address(idx, str(address.ip), address.network.prefixlen,
                                   IFA_F_NODAD if address.version == 6 else 0)
                nr.set_link(idx, up=True)
                if quick:
                    # ... the lab adds the same EUI-64 one without DAD, once the link is up:
                    # the kernel then does at once what it does when DAD ends (joins the
                    # solicited-node group, reports MLD, sends a router solicitation)
                    nr.add_address(idx, eui64_link_local(node.port(iface.port).mac), 64,
                                   IFA_F_NODAD)
            for gateway in (node.gateway4, node.gateway6):
                if gateway is None:
                    continue
                oif = nr.index(gateway.interface) if gateway.interface else None
                nr.add_default_route(str(gateway.address), oif)

    def unwire(self, node: Node) -> None:
        """Remove the switch side of a node's cables (their node ends vanish with them)."""
        with ipr(self.switch_netns) as sw:
            for name in self.switch_ports(node):
                link = sw.link(name)
                if link is None:
                    continue
                try:
                    sw.del_link(link.index)
                except NetlinkError as exc:
                    if exc.code != errno.ENODEV:
                        raise

    # -- faults -----------------------------------------------------------------------------------
    def switch_ports(self, node: Node, port: str | None = None) -> list[str]:
        """Switch-side link names of `node` (of one `port` only, if given)."""
        if self.mode == "8021q":
            return [switch_port_name(node, i) for i, p in enumerate(node.ports)
                    if port is None or p.name == port]
        return [switch_port_name(node, i) for i, iface in enumerate(node.interfaces)
                if port is None or iface.port == port]

    def set_cable(self, node: Node, port: str | None, plugged: bool) -> bool:
        """Pull or plug a cable: the switch side goes down, so the node sees NO-CARRIER.

        Every switch-side link is looked up before any is touched, so a node whose wiring is
        incomplete gets a `WiringError` and no half-pulled cable. Returns whether anything
        changed (plugging a plugged cable is allowed and changes nothing)."""
        with ipr(self.switch_netns) as sw:
            links = [_lookup(sw, name, node) for name in self.switch_ports(node, port)]
            changed = False
            for link in links:
                if link.up != plugged:
                    sw.set_link(link.index, up=plugged)
                    changed = True
        return changed

    def set_vlan(self, node: Node, iface_name: str, attached: bool) -> bool:
        """Take one VLAN off (or put it back on) a node's switch port; the link stays up.
        Returns whether anything changed (taking off a VLAN that is off changes nothing)."""
        iface = node.interface(iface_name)
        with ipr(self.switch_netns) as sw:
            if self.mode == "8021q":
                return self._set_trunk_vlan(sw, node, iface, attached)
            index = list(node.interfaces).index(iface)
            link = _lookup(sw, switch_port_name(node, index), node)
            master = _lookup(sw, iface.segment, node).index if attached else 0
            if (link.master or 0) == master:
                return False
            sw.set_link(link.index, master=master)
            return True

    def _set_trunk_vlan(self, sw: Rtnl, node: Node, iface: Interface, attached: bool) -> bool:
        index = [p.name for p in node.ports].index(iface.port)
        link = _lookup(sw, switch_port_name(node, index), node)
        vid = self.vlan_id(iface.segment)
        flags = 0 if iface.tagged else BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
        try:
            sw.bridge_vlan(attached, link.index, vid, flags)
        except NetlinkError as exc:
            if attached or exc.code != errno.ENOENT:
                raise
            return False  # that VLAN was already off the port
        return True

    def port_states(self, node: Node) -> dict[str, dict[str, Any]]:
        """Per switch port: up or down, and which bridge it is plugged into."""
        states: dict[str, dict[str, Any]] = {}
        with ipr(self.switch_netns) as sw:
            links = sw.links()
        names = {link.index: link.name for link in links}
        by_name = {link.name: link for link in links}
        for name in self.switch_ports(node):
            link = by_name.get(name)
            if link is None:
                states[name] = {"present": False}
                continue
            states[name] = {"present": True, "up": link.up,
                            "bridge": names.get(link.master) if link.master else None}
        return states


def tentative_addresses(node_netns: str) -> list[str]:
    """IPv6 addresses still in duplicate address detection (unusable as a source yet)."""
    with ipr(node_netns) as nr:
        return [a.address for a in nr.addresses(socket.AF_INET6)
                if a.flags & IFA_F_TENTATIVE]


def node_addresses(node_netns: str) -> dict[str, list[str]]:
    """Every address on every non-loopback link inside a node, as ``addr/prefixlen``."""
    result: dict[str, list[str]] = {}
    with ipr(node_netns) as nr:
        names = {link.index: link.name for link in nr.links()}
        addresses = nr.addresses()
    for name in names.values():
        if name != "lo":
            result[name] = []
    for addr in addresses:
        owner = names.get(addr.index)
        if owner is None or owner == "lo":
            continue
        text = f"{addr.address}/{addr.prefixlen}"
        if addr.label and addr.label != owner:
            text += f" ({addr.label})"
        result[owner].append(text)
    return result


def is_link_local(address: str) -> bool:
    return ipaddress.ip_interface(address.split(" ")[0]).ip.is_link_local
