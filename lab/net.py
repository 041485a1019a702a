"""The lab's wires: a switch namespace, its bridges, and one veth per node interface.

Everything is made with pyroute2 inside namespaces the lab owns; the root namespace never holds
a lab link, address or route (a veth's node end is created directly inside the node's namespace).

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
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from lab.topology import Interface, Node, Topology

NetworkMode = Literal["8021q", "vlan-bridges"]
TRUNK = "trunk"
IFA_F_NODAD = 0x02
IFF_UP = 0x1


class WiringError(RuntimeError):
    """A node's switch-side link that should exist does not (its wiring is incomplete)."""


def _lookup(sw: Any, name: str, node: Node) -> int:
    """The index of switch link `name`, or a `WiringError` that says whose wiring lacks it."""
    found = sw.link_lookup(ifname=name)
    if not found:
        raise WiringError(f"{node.name}'s wiring is incomplete: the switch has no link {name}")
    return int(found[0])


def _admin_up(sw: Any, index: int) -> bool:
    return bool(sw.get_links(index)[0].get("flags", 0) & IFF_UP)


@contextmanager
def ipr(netns_path: str) -> Iterator[Any]:
    """An IPRoute bound to the namespace at `netns_path` (a /proc/PID/ns/net path)."""
    # flags=0: never let pyroute2 create a namespace that does not exist
    with IPRoute(netns=netns_path, flags=0) as handle:
        yield handle


def detect_mode(switch_netns: str) -> tuple[NetworkMode, str]:
    """Try 802.1Q for real inside the switch namespace; fall back to one bridge per VLAN."""
    with ipr(switch_netns) as sw:
        try:
            sw.link("add", ifname="probe-br", kind="bridge", br_vlan_filtering=1)
        except NetlinkError as exc:
            return "vlan-bridges", f"bridge VLAN filtering unavailable ({exc.args[1]})"
        try:
            idx = sw.link_lookup(ifname="probe-br")[0]
            if _bridge_vlan_filtering(sw, idx) != 1:
                return "vlan-bridges", "bridge ignores vlan_filtering"
            sw.link("add", ifname="probe-br.3", kind="vlan", link=idx, vlan_id=3)
        except NetlinkError as exc:
            return "vlan-bridges", f"no 802.1Q sub-interfaces ({exc.args[1]})"
        finally:
            for name in ("probe-br.3", "probe-br"):
                for i in sw.link_lookup(ifname=name):
                    sw.link("del", index=i)
    return "8021q", "8021q and bridge VLAN filtering available"


def _bridge_vlan_filtering(sw: Any, index: int) -> int | None:
    link = sw.get_links(index)[0]
    info = link.get(("IFLA_LINKINFO", "IFLA_INFO_DATA"))
    if info is None:
        return None
    value = info.get("IFLA_BR_VLAN_FILTERING")
    return None if value is None else int(value)


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
            sw.link("set", index=sw.link_lookup(ifname="lo")[0], state="up")
            if self.mode == "8021q":
                sw.link("add", ifname=TRUNK, kind="bridge", br_vlan_filtering=1)
                sw.link("set", index=sw.link_lookup(ifname=TRUNK)[0], state="up")
                return
            for segment in self.topology.segments.values():
                # no STP and no forwarding delay: a port forwards as soon as it is up, like an
                # unmanaged switch; the seed's switch reboot is modelled by dropping bridges
                sw.link("add", ifname=segment.name, kind="bridge", br_stp_state=0,
                        br_forward_delay=0)
                sw.link("set", index=sw.link_lookup(ifname=segment.name)[0], state="up")

    def set_switch_power(self, on: bool) -> None:
        """A switch reboot: every bridge (and so every port) goes down, then comes back."""
        with ipr(self.switch_netns) as sw:
            names = [TRUNK] if self.mode == "8021q" else list(self.topology.segments)
            for name in names:
                sw.link("set", index=sw.link_lookup(ifname=name)[0],
                        state="up" if on else "down")

    def vlan_id(self, segment: str) -> int:
        seg = self.topology.segments[segment]
        if seg.vlan_id is not None:
            return seg.vlan_id
        return 4000 + sorted(self.topology.segments).index(segment)

    # -- wiring a node ----------------------------------------------------------------------------
    def wire(self, node: Node, init_pid: int, node_netns: str) -> None:
        """Plug `node` (whose PID 1 is `init_pid`) into the switch and configure its side."""
        with ipr(self.switch_netns) as sw:
            if self.mode == "8021q":
                self._wire_trunk(sw, node, init_pid)
            else:
                self._wire_bridges(sw, node, init_pid)
        self.configure(node, node_netns)

    def _wire_bridges(self, sw: Any, node: Node, init_pid: int) -> None:
        for index, iface in enumerate(node.interfaces):
            port = node.port(iface.port)
            name = switch_port_name(node, index)
            sw.link("add", ifname=name, kind="veth",
                    peer={"ifname": iface.name, "address": port.mac, "net_ns_pid": init_pid})
            idx = sw.link_lookup(ifname=name)[0]
            sw.link("set", index=idx, master=sw.link_lookup(ifname=iface.segment)[0])
            sw.link("set", index=idx, state="up")

    def _wire_trunk(self, sw: Any, node: Node, init_pid: int) -> None:
        trunk = sw.link_lookup(ifname=TRUNK)[0]
        for index, port in enumerate(node.ports):
            name = switch_port_name(node, index)
            sw.link("add", ifname=name, kind="veth",
                    peer={"ifname": port.name, "address": port.mac, "net_ns_pid": init_pid})
            idx = sw.link_lookup(ifname=name)[0]
            sw.link("set", index=idx, master=trunk)
            sw.vlan_filter("del", index=idx, vlan_info={"vid": 1})
            for iface in node.interfaces_on(port.name):
                vid = self.vlan_id(iface.segment)
                flags = 0 if iface.tagged else 0x2 | 0x4  # PVID | untagged
                sw.vlan_filter("add", index=idx, vlan_info={"vid": vid, "flags": flags})
                sw.vlan_filter("add", index=trunk, vlan_info={"vid": vid, "flags": 0},
                               vlan_flags="self")
            sw.link("set", index=idx, state="up")

    def configure(self, node: Node, node_netns: str) -> None:
        """Addresses, links up and default routes inside the node."""
        with ipr(node_netns) as nr:
            nr.link("set", index=nr.link_lookup(ifname="lo")[0], state="up")
            if self.mode == "8021q":
                for iface in node.interfaces:
                    if iface.tagged:
                        parent = nr.link_lookup(ifname=iface.port)[0]
                        nr.link("add", ifname=iface.name, kind="vlan", link=parent,
                                vlan_id=self.vlan_id(iface.segment))
            for iface in node.interfaces:
                idx = nr.link_lookup(ifname=iface.name)[0]
                for address in iface.addresses:
                    # a static address skips DAD as ifupdown's "static" does not, so a lab is
                    # usable at once; link-local and SLAAC addresses keep the kernel's DAD
                    nr.addr("add", index=idx, address=str(address.ip),
                            prefixlen=address.network.prefixlen,
                            flags=IFA_F_NODAD if address.version == 6 else 0)
                nr.link("set", index=idx, state="up")
            for gateway in (node.gateway4, node.gateway6):
                if gateway is None:
                    continue
                kwargs: dict[str, Any] = {"dst": "default", "gateway": str(gateway.address)}
                if gateway.address.version == 6:
                    kwargs["family"] = 10
                if gateway.interface:
                    kwargs["oif"] = nr.link_lookup(ifname=gateway.interface)[0]
                nr.route("add", **kwargs)

    def unwire(self, node: Node) -> None:
        """Remove the switch side of a node's cables (their node ends vanish with them)."""
        with ipr(self.switch_netns) as sw:
            for name in self.switch_ports(node):
                for idx in sw.link_lookup(ifname=name):
                    try:
                        sw.link("del", index=idx)
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
            indexes = [_lookup(sw, name, node) for name in self.switch_ports(node, port)]
            changed = False
            for idx in indexes:
                if _admin_up(sw, idx) != plugged:
                    sw.link("set", index=idx, state="up" if plugged else "down")
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
            idx = _lookup(sw, switch_port_name(node, index), node)
            master = _lookup(sw, iface.segment, node) if attached else 0
            if (sw.get_links(idx)[0].get("master") or 0) == master:
                return False
            sw.link("set", index=idx, master=master)
            return True

    def _set_trunk_vlan(self, sw: Any, node: Node, iface: Interface, attached: bool) -> bool:
        index = [p.name for p in node.ports].index(iface.port)
        idx = _lookup(sw, switch_port_name(node, index), node)
        vid = self.vlan_id(iface.segment)
        flags = 0 if iface.tagged else 0x2 | 0x4
        try:
            sw.vlan_filter("add" if attached else "del", index=idx,
                           vlan_info={"vid": vid, "flags": flags})
        except NetlinkError as exc:
            if attached or exc.code != errno.ENOENT:
                raise
            return False  # that VLAN was already off the port
        return True

    def port_states(self, node: Node) -> dict[str, dict[str, Any]]:
        """Per switch port: up or down, and which bridge it is plugged into."""
        states: dict[str, dict[str, Any]] = {}
        with ipr(self.switch_netns) as sw:
            names = {link.get("index"): link.get("ifname") for link in sw.get_links()}
            for name in self.switch_ports(node):
                links = sw.get_links(ifname=name) if sw.link_lookup(ifname=name) else []
                if not links:
                    states[name] = {"present": False}
                    continue
                link = links[0]
                states[name] = {"present": True, "up": link.get("state") == "up",
                                "bridge": names.get(link.get("master"))}
        return states


IFA_F_TENTATIVE = 0x40


def tentative_addresses(node_netns: str) -> list[str]:
    """IPv6 addresses still in duplicate address detection (unusable as a source yet)."""
    with ipr(node_netns) as nr:
        return [str(a.get("address")) for a in nr.get_addr(family=10)
                if (a.get("flags") or 0) & IFA_F_TENTATIVE]


def node_addresses(node_netns: str) -> dict[str, list[str]]:
    """Every address on every non-loopback link inside a node, as ``addr/prefixlen``."""
    result: dict[str, list[str]] = {}
    with ipr(node_netns) as nr:
        names = {link.get("index"): link.get("ifname") for link in nr.get_links()}
        for name in names.values():
            if name != "lo":
                result[name] = []
        for addr in nr.get_addr():
            name = names.get(addr.get("index"))
            if name is None or name == "lo":
                continue
            text = f"{addr.get('address')}/{addr.get('prefixlen')}"
            label = addr.get("label")
            if label and label != name:
                text += f" ({label})"
            result[name].append(text)
    return result


def is_link_local(address: str) -> bool:
    return ipaddress.ip_interface(address.split(" ")[0]).ip.is_link_local
