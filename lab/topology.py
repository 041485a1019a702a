"""The lab's network as an immutable, validated model.

`load_topology()` turns a TOML file into a `Topology`; nothing in here touches the system, so the
validator can be unit- and property-tested and a bad file is refused before a single namespace
exists. Every problem is reported as ``file: key: problem`` and all problems are reported at once:
a person fixing a topology should not have to run the loader once per typo.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IFNAMSIZ = 15  # the kernel's limit on interface names (16 bytes with the NUL)
NODE_NAME_MAX = 10  # switch-side port names are "<node>-<n>" and must fit IFNAMSIZ
ROLES = frozenset({"router", "server", "internet", "client"})

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TopologyError(ValueError):
    """A topology file is invalid; `problems` holds one ``file: key: problem`` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Segment:
    """A layer-2 broadcast domain: one VLAN of the seed, or the lab's "Internet"."""

    name: str
    ipv4: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Network | None
    vlan_id: int | None


@dataclass(frozen=True)
class Port:
    """A node's cable to the switch. Pulling it takes every VLAN it carries down."""

    name: str
    mac: str


@dataclass(frozen=True)
class Interface:
    """A VLAN as a node sees it: untagged on its port (same name) or tagged (``port.vid``)."""

    name: str
    port: str
    segment: str
    addresses: tuple[IPInterface, ...]
    dhcp: bool = False

    @property
    def tagged(self) -> bool:
        return self.name != self.port


@dataclass(frozen=True)
class Gateway:
    address: IPAddress
    interface: str | None = None  # needed for a link-local IPv6 next hop


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    ports: tuple[Port, ...]
    interfaces: tuple[Interface, ...]
    gateway4: Gateway | None = None
    gateway6: Gateway | None = None

    def interface(self, name: str) -> Interface:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        raise KeyError(f"{self.name} has no interface {name!r}")

    def port(self, name: str) -> Port:
        for port in self.ports:
            if port.name == name:
                return port
        raise KeyError(f"{self.name} has no port {name!r}")

    def interfaces_on(self, port: str) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.port == port)


@dataclass(frozen=True)
class Vip:
    """A floating address: part of the model, but only ever assigned by heartbeat."""

    address: IPAddress
    prefixlen: int
    interface: str
    segment: str


@dataclass(frozen=True)
class Topology:
    source: str
    segments: Mapping[str, Segment]
    nodes: Mapping[str, Node]
    vips: tuple[Vip, ...] = field(default=())

    def nodes_with_role(self, role: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes.values() if n.role == role)

    def owner_of(self, address: str) -> str | None:
        """The node that holds `address` statically, if any (VIPs have no static owner)."""
        wanted = ipaddress.ip_address(address)
        for node in self.nodes.values():
            for iface in node.interfaces:
                if any(a.ip == wanted for a in iface.addresses):
                    return node.name
        return None


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file; raise `TopologyError` listing every problem."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TopologyError([f"{source}: -: file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError([f"{source}: -: not valid TOML ({exc})"]) from None
    return parse_topology(raw, source)


def parse_topology(raw: Mapping[str, Any], source: str = "<topology>") -> Topology:
    """Validate an already-decoded topology document (exposed for tests)."""
    return _Parser(source).parse(raw)


class _Parser:
    """Collects problems instead of stopping at the first one."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}: {key}: {message}")

    def parse(self, raw: Mapping[str, Any]) -> Topology:
        for key in raw:
            if key not in ("segments", "nodes", "vips"):
                self.problem(key, "unknown section (expected segments, nodes, vips)")
        segments = self._segments(_table(raw.get("segments"), "segments", self))
        nodes = self._nodes(_table(raw.get("nodes"), "nodes", self), segments)
        vips = self._vips(_table(raw.get("vips", {}), "vips", self), segments, nodes)
        self._check_unique_addresses(nodes, vips)
        if self.problems:
            raise TopologyError(self.problems)
        return Topology(source=self.source, segments=segments, nodes=nodes, vips=vips)

    # -- segments ---------------------------------------------------------------------------------
    def _segments(self, table: Mapping[str, Any]) -> dict[str, Segment]:
        segments: dict[str, Segment] = {}
        if not table:
            self.problem("segments", "at least one segment is needed")
        seen_vids: dict[int, str] = {}
        for name, spec in table.items():
            key = f"segments.{name}"
            spec = _table(spec, key, self)
            self._check_keys(key, spec, {"ipv4", "ipv6", "vlan_id"})
            if not _NAME_RE.match(name) or len(name) > IFNAMSIZ:
                self.problem(key, f"segment name must match {_NAME_RE.pattern} and fit "
                                  f"{IFNAMSIZ} characters (it names a bridge)")
            ipv4 = self._network(f"{key}.ipv4", spec.get("ipv4"), 4, required=True)
            ipv6 = self._network(f"{key}.ipv6", spec.get("ipv6"), 6, required=False)
            vid = spec.get("vlan_id")
            if vid is not None:
                if not isinstance(vid, int) or isinstance(vid, bool) or not 1 <= vid <= 4094:
                    self.problem(f"{key}.vlan_id", f"{vid!r} is not a VLAN id (1-4094)")
                    vid = None
                elif vid in seen_vids:
                    self.problem(f"{key}.vlan_id",
                                 f"VLAN {vid} is already used by segment {seen_vids[vid]}")
                else:
                    seen_vids[vid] = name
            if isinstance(ipv4, ipaddress.IPv4Network):
                segments[name] = Segment(name, ipv4, ipv6 if isinstance(
                    ipv6, ipaddress.IPv6Network) else None, vid)
        return segments

    def _network(self, key: str, value: Any, version: int, required: bool) -> IPNetwork | None:
        if value is None:
            if required:
                self.problem(key, "missing")
            return None
        try:
            net = ipaddress.ip_network(str(value), strict=True)
        except ValueError as exc:
            self.problem(key, f"{value!r} is not a network ({exc})")
            return None
        if net.version != version:
            self.problem(key, f"{value} is not an IPv{version} network")
            return None
        return net

    # -- nodes ------------------------------------------------------------------------------------
    def _nodes(self, table: Mapping[str, Any], segments: Mapping[str, Segment]) -> dict[str, Node]:
        nodes: dict[str, Node] = {}
        if not table:
            self.problem("nodes", "at least one node is needed")
        for name, spec in table.items():
            key = f"nodes.{name}"
            spec = _table(spec, key, self)
            self._check_keys(key, spec, {"role", "ports", "interfaces", "gateway4", "gateway6"})
            if not _NAME_RE.match(name) or len(name) > NODE_NAME_MAX:
                self.problem(key, f"node name must match {_NAME_RE.pattern} and be at most "
                                  f"{NODE_NAME_MAX} characters (it names switch ports)")
            role = spec.get("role")
            if role not in ROLES:
                self.problem(f"{key}.role", f"unknown role {role!r} (known: "
                                            f"{', '.join(sorted(ROLES))})")
            ports = self._ports(key, _table(spec.get("ports"), f"{key}.ports", self))
            interfaces = self._interfaces(key, _table(spec.get("interfaces"),
                                                      f"{key}.interfaces", self), ports, segments)
            gw4 = self._gateway(f"{key}.gateway4", spec.get("gateway4"), 4, interfaces, segments)
            gw6 = self._gateway(f"{key}.gateway6", spec.get("gateway6"), 6, interfaces, segments)
            nodes[name] = Node(name, str(role), tuple(ports.values()), interfaces, gw4, gw6)
        return nodes

    def _ports(self, key: str, table: Mapping[str, Any]) -> dict[str, Port]:
        ports: dict[str, Port] = {}
        if not table:
            self.problem(f"{key}.ports", "a node needs at least one port")
        for pname, spec in table.items():
            pkey = f"{key}.ports.{pname}"
            spec = _table(spec, pkey, self)
            self._check_keys(pkey, spec, {"mac"})
            self._check_ifname(pkey, pname)
            mac = str(spec.get("mac", "")).lower()
            if not _MAC_RE.match(mac):
                self.problem(f"{pkey}.mac", f"{spec.get('mac')!r} is not a MAC address "
                                            "(xx:xx:xx:xx:xx:xx)")
            elif int(mac[:2], 16) & 1:
                self.problem(f"{pkey}.mac", f"{mac} is a multicast address")
            ports[pname] = Port(pname, mac)
        return ports

    def _interfaces(self, key: str, table: Mapping[str, Any], ports: Mapping[str, Port],
                    segments: Mapping[str, Segment]) -> tuple[Interface, ...]:
        result: list[Interface] = []
        untagged: dict[str, str] = {}
        if not table:
            self.problem(f"{key}.interfaces", "a node needs at least one interface")
        for iname, spec in table.items():
            ikey = f"{key}.interfaces.{iname}"
            spec = _table(spec, ikey, self)
            self._check_keys(ikey, spec, {"port", "segment", "addresses", "dhcp"})
            self._check_ifname(ikey, iname)
            port = str(spec.get("port", ""))
            if port not in ports:
                self.problem(f"{ikey}.port", f"{port!r} is not a port of this node")
            seg_name = str(spec.get("segment", ""))
            segment = segments.get(seg_name)
            if segment is None:
                self.problem(f"{ikey}.segment", f"unknown segment {seg_name!r}")
            tagged = iname != port
            if not tagged:
                untagged[port] = iname
            elif segment is not None and segment.vlan_id is None:
                self.problem(f"{ikey}.segment", f"segment {seg_name} has no vlan_id, so it "
                                                f"cannot be carried tagged on port {port}")
            addresses = self._addresses(f"{ikey}.addresses", spec.get("addresses", []), segment)
            dhcp = spec.get("dhcp", False)
            if not isinstance(dhcp, bool):
                self.problem(f"{ikey}.dhcp", f"{dhcp!r} is not true or false")
                dhcp = False
            result.append(Interface(iname, port, seg_name, addresses, dhcp))
        segs_per_port: dict[tuple[str, str], str] = {}
        for iface in result:
            other = segs_per_port.setdefault((iface.port, iface.segment), iface.name)
            if other != iface.name:
                self.problem(f"{key}.interfaces.{iface.name}.segment",
                             f"port {iface.port} already carries {iface.segment} "
                             f"(interface {other})")
        return tuple(result)

    def _addresses(self, key: str, values: Any, segment: Segment | None
                   ) -> tuple[IPInterface, ...]:
        if not isinstance(values, list):
            self.problem(key, "must be a list of addresses with prefix length")
            return ()
        result: list[IPInterface] = []
        for i, value in enumerate(values):
            akey = f"{key}[{i}]"
            try:
                addr = ipaddress.ip_interface(str(value))
            except ValueError:
                self.problem(akey, f"{value!r} is not an address with prefix length")
                continue
            if "/" not in str(value):
                self.problem(akey, f"{value} needs a prefix length (e.g. /24)")
                continue
            if segment is not None:
                net = segment.ipv4 if addr.version == 4 else segment.ipv6
                if net is None:
                    self.problem(akey, f"segment {segment.name} has no IPv{addr.version} prefix")
                elif addr.network != net:
                    self.problem(akey, f"{value} is not inside segment {segment.name} ({net})")
                elif addr.ip in (net.network_address, net.broadcast_address) and addr.version == 4:
                    self.problem(akey, f"{addr.ip} is the network or broadcast address of {net}")
            result.append(addr)
        return tuple(result)

    def _gateway(self, key: str, value: Any, version: int, interfaces: tuple[Interface, ...],
                 segments: Mapping[str, Segment]) -> Gateway | None:
        if value is None:
            return None
        text = str(value)
        address_text, _, scope = text.partition("%")
        try:
            address = ipaddress.ip_address(address_text)
        except ValueError:
            self.problem(key, f"{value!r} is not an address")
            return None
        if address.version != version:
            self.problem(key, f"{value} is not an IPv{version} address")
            return None
        names = {i.name for i in interfaces}
        if address.is_link_local:
            if not scope:
                self.problem(key, f"{value} is link-local: name the interface as ADDRESS%IFACE")
            elif scope not in names:
                self.problem(key, f"{scope} is not an interface of this node")
            return Gateway(address, scope or None)
        for iface in interfaces:
            seg = segments.get(iface.segment)
            net = None if seg is None else (seg.ipv4 if version == 4 else seg.ipv6)
            if net is not None and address in net:
                return Gateway(address, None)
        self.problem(key, f"{value} is on none of this node's segments")
        return None

    # -- VIPs -------------------------------------------------------------------------------------
    def _vips(self, table: Mapping[str, Any], segments: Mapping[str, Segment],
              nodes: Mapping[str, Node]) -> tuple[Vip, ...]:
        servers = [n for n in nodes.values() if n.role == "server"]
        vips: list[Vip] = []
        for text, spec in table.items():
            key = f'vips."{text}"'
            spec = _table(spec, key, self)
            self._check_keys(key, spec, {"prefixlen", "interface"})
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                self.problem(key, f"{text!r} is not an address")
                continue
            prefixlen = spec.get("prefixlen")
            iface_name = str(spec.get("interface", ""))
            carriers = [n.interface(iface_name) for n in servers
                        if any(i.name == iface_name for i in n.interfaces)]
            if len(carriers) != len(servers) or not servers:
                self.problem(f"{key}.interface",
                             f"{iface_name!r} must be an interface of every server")
                continue
            segment = segments.get(carriers[0].segment)
            if segment is None:  # the interface's unknown segment is a problem of its own
                continue
            net = segment.ipv4 if address.version == 4 else segment.ipv6
            if net is None or address not in net:
                self.problem(key, f"{address} is not inside segment {segment.name} ({net})")
                continue
            if prefixlen != net.prefixlen:
                self.problem(f"{key}.prefixlen", f"{prefixlen!r} differs from segment "
                                                 f"{segment.name}'s /{net.prefixlen}")
                continue
            vips.append(Vip(address, net.prefixlen, iface_name, segment.name))
        return tuple(vips)

    # -- cross-checks -----------------------------------------------------------------------------
    def _check_unique_addresses(self, nodes: Mapping[str, Node], vips: tuple[Vip, ...]) -> None:
        owners: dict[IPAddress, str] = {}
        for node in nodes.values():
            for iface in node.interfaces:
                for i, addr in enumerate(iface.addresses):
                    key = f"nodes.{node.name}.interfaces.{iface.name}.addresses[{i}]"
                    if addr.ip in owners:
                        self.problem(key, f"{addr.ip} is already used by {owners[addr.ip]}")
                    owners.setdefault(addr.ip, f"nodes.{node.name}.interfaces.{iface.name}")
        for vip in vips:
            if vip.address in owners:
                self.problem(f'vips."{vip.address}"',
                             f"{vip.address} is already used by {owners[vip.address]}")
        macs: dict[str, str] = {}
        for node in nodes.values():
            for port in node.ports:
                key = f"nodes.{node.name}.ports.{port.name}.mac"
                if port.mac in macs and _MAC_RE.match(port.mac):
                    self.problem(key, f"{port.mac} is already used by {macs[port.mac]}")
                macs.setdefault(port.mac, f"nodes.{node.name}.ports.{port.name}")

    # -- helpers ----------------------------------------------------------------------------------
    def _check_keys(self, key: str, spec: Mapping[str, Any], allowed: set[str]) -> None:
        for k in spec:
            if k not in allowed:
                self.problem(f"{key}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def _check_ifname(self, key: str, name: str) -> None:
        if len(name) > IFNAMSIZ:
            self.problem(key, f"interface name {name!r} is {len(name)} characters; "
                              f"the kernel allows {IFNAMSIZ}")
        elif not _IFNAME_RE.match(name) or name in (".", ".."):
            self.problem(key, f"interface name {name!r} has characters the kernel refuses")


def _table(value: Any, key: str, parser: _Parser) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        parser.problem(key, "must be a table")
        return {}
    return value
