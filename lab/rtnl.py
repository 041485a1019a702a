"""A small rtnetlink client: the few link, address and route operations the lab's wiring uses.

Why not pyroute2 here: a bare `lab up` must take well under a second, and importing pyroute2
costs ~0.15-0.2 s while each of its handles opened in another network namespace costs ~20 ms
more; a lab opens one per node and two for the switch. This client opens its socket inside the
target namespace from the calling thread (lab.netns), which costs microseconds, and speaks the
kernel's rtnetlink messages (linux/rtnetlink.h, linux/if_link.h) directly. It does only what
lab/net.py needs; probes and snapshots still use pyroute2.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from lab import netns

# message types and flags (linux/netlink.h, linux/rtnetlink.h)
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 22, 24
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # on an error: header-only copy; TLVs follow
NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x200, 0x400, 0x300
NLA_F_NESTED = 0x8000
SOL_NETLINK, NETLINK_EXT_ACK = 270, 11
NLMSGERR_ATTR_MSG = 1
# link attributes (linux/if_link.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_MASTER = 1, 3, 5, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_PID, IFLA_AF_SPEC = 16, 18, 19, 26
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE, IFLA_BR_VLAN_FILTERING = 1, 5, 7
IFLA_VLAN_ID = 1
IFLA_INET6_ADDR_GEN_MODE = 8
IN6_ADDR_GEN_MODE_NONE = 1
IFLA_BRIDGE_FLAGS, IFLA_BRIDGE_VLAN_INFO = 0, 2
BRIDGE_FLAGS_SELF = 2
# address and route attributes (linux/if_addr.h, linux/rtnetlink.h)
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS = 1, 2, 3, 8
IFA_F_NODAD = 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1
AF_BRIDGE = 7
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")

class NetlinkError(OSError):
    """The kernel refused a request: ``code`` is the errno, ``args[1]`` its message (the
    kernel's extended message when it gave one)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code


# -- encoding ---------------------------------------------------------------------------------
def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr: header, payload, padding to four bytes."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def u8(value: int) -> bytes:
    return struct.pack("=B", value)


def u16(value: int) -> bytes:
    return struct.pack("=H", value)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change)


# -- decoding ---------------------------------------------------------------------------------
def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attribute type (flags stripped) -> payload; the last of a repeated type wins."""
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        attrs[kind & ~NLA_F_NESTED & 0x7FFF] = data[offset + _RTATTR.size:offset + length]
        offset += _align(length)
    return attrs


def _text(payload: bytes | None) -> str | None:
    return None if payload is None else payload.split(b"\0", 1)[0].decode()


def _u32(payload: bytes | None) -> int | None:
    return None if payload is None or len(payload) < 4 else int(struct.unpack("=I",
                                                                              payload[:4])[0])


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    flags: int
    master: int | None
    mac: str | None
    kind: str | None
    info_data: dict[int, bytes] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        """Administratively up (what `ip link set up` sets), whatever the carrier."""
        return bool(self.flags & IFF_UP)

    @classmethod
    def decode(cls, body: bytes) -> Link:
        _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
        attrs = parse_attrs(body[_IFINFOMSG.size:])
        info = parse_attrs(attrs.get(IFLA_LINKINFO, b""))
        raw_mac = attrs.get(IFLA_ADDRESS)
        return cls(index=index, name=_text(attrs.get(IFLA_IFNAME)) or "", flags=flags,
                   master=_u32(attrs.get(IFLA_MASTER)) or None,
                   mac=":".join(f"{b:02x}" for b in raw_mac) if raw_mac else None,
                   kind=_text(info.get(IFLA_INFO_KIND)),
                   info_data=parse_attrs(info.get(IFLA_INFO_DATA, b"")))


@dataclass(frozen=True)
class Address:
    index: int
    family: int
    address: str
    prefixlen: int
    flags: int
    label: str | None

    @classmethod
    def decode(cls, body: bytes) -> Address:
        family, prefixlen, flags, _scope, index = _IFADDRMSG.unpack_from(body)
        attrs = parse_attrs(body[_IFADDRMSG.size:])
        raw = attrs.get(IFA_ADDRESS) or attrs.get(IFA_LOCAL) or b""
        address = str(ipaddress.ip_address(raw)) if len(raw) in (4, 16) else ""
        return cls(index=index, family=family, address=address, prefixlen=prefixlen,
                   flags=_u32(attrs.get(IFA_FLAGS)) or flags, label=_text(attrs.get(IFA_LABEL)))


# -- the socket -------------------------------------------------------------------------------
def open_in(netns_path: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket of the network namespace at `netns_path` (a /proc/PID/ns/net
    path; None: this thread's own)."""
    if netns_path is None:
        return _new_socket()
    with netns.entered(netns_path):
        return _new_socket()


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    with contextlib.suppress(OSError):  # an old kernel: errors come without its message
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    sock.bind((0, 0))
    return sock


class Rtnl:
    """One rtnetlink socket in one network namespace; use as a context manager."""

    def __init__(self, netns_path: str | None = None) -> None:
        self.sock = open_in(netns_path)
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- the exchange ------------------------------------------------------------------------
    def request(self, kind: int, body: bytes, flags: int = 0) -> list[bytes]:
        """Send one message; return the bodies of the answer (a dump's parts, one object, or
        nothing for an acknowledged change). A refusal raises NetlinkError."""
        self.seq += 1
        seq = self.seq
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        get = kind in (RTM_GETLINK, RTM_GETADDR)  # answered by the object itself, or an error
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind,
                                NLM_F_REQUEST | (0 if get else NLM_F_ACK) | flags, seq, 0)
        self.sock.send(header + body)
        replies: list[bytes] = []
        while True:
            for msg_type, msg_flags, msg_seq, payload in self._receive():
                if msg_seq != seq:
                    continue  # an answer to an earlier request nobody waited for
                if msg_type == NLMSG_DONE:
                    return replies
                if msg_type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code == 0:
                        return replies
                    raise NetlinkError(code, _error_text(code, msg_flags, payload))
                replies.append(payload)
                if not dump:
                    return replies

    def _receive(self) -> Iterator[tuple[int, int, int, bytes]]:
        data = self.sock.recv(1 << 16)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            yield msg_type, flags, seq, data[offset + _NLMSGHDR.size:offset + length]
            offset += _align(length)

    # -- links -------------------------------------------------------------------------------
    def links(self) -> list[Link]:
        return [Link.decode(b) for b in self.request(RTM_GETLINK, ifinfo(), NLM_F_DUMP)]

    def link(self, name: str) -> Link | None:
        """The link called `name`, or None."""
        try:
            replies = self.request(RTM_GETLINK, ifinfo() + attr(IFLA_IFNAME, cstr(name)))
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise
        return Link.decode(replies[0]) if replies else None

    def link_by_index(self, index: int) -> Link | None:
        try:
            replies = self.request(RTM_GETLINK, ifinfo(index))
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise
        return Link.decode(replies[0]) if replies else None

    def index(self, name: str) -> int:
        """The index of link `name`; LookupError if there is none."""
        link = self.link(name)
        if link is None:
            raise LookupError(f"no link {name}")
        return link.index

    def _new_link(self, name: str, kind: str, data: bytes = b"", up: bool = False,
                  master: int | None = None, extra: bytes = b"") -> None:
        info = attr(IFLA_INFO_KIND, cstr(kind))
        if data:
            info += nested(IFLA_INFO_DATA, data)
        body = (ifinfo(flags=IFF_UP if up else 0, change=IFF_UP if up else 0)
                + attr(IFLA_IFNAME, cstr(name)) + extra + nested(IFLA_LINKINFO, info))
        if master is not None:
            body += attr(IFLA_MASTER, u32(master))
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)

    def add_bridge(self, name: str, stp: bool = False, forward_delay: int | None = None,
                   vlan_filtering: bool | None = None, up: bool = False) -> None:
        data = b""
        if forward_delay is not None:
            data += attr(IFLA_BR_FORWARD_DELAY, u32(forward_delay))
        data += attr(IFLA_BR_STP_STATE, u32(1 if stp else 0))
        if vlan_filtering is not None:
            data += attr(IFLA_BR_VLAN_FILTERING, u8(1 if vlan_filtering else 0))
        self._new_link(name, "bridge", data, up=up)

    def add_veth(self, name: str, peer: str, peer_mac: str | None = None,
                 peer_netns_pid: int | None = None, master: int | None = None,
                 up: bool = False) -> None:
        """A veth pair: `name` here, `peer` (down, with `peer_mac`) in the namespace of
        process `peer_netns_pid` (here if None)."""
        peer_attrs = attr(IFLA_IFNAME, cstr(peer))
        if peer_mac is not None:
            peer_attrs += attr(IFLA_ADDRESS, mac_bytes(peer_mac))
        if peer_netns_pid is not None:
            peer_attrs += attr(IFLA_NET_NS_PID, u32(peer_netns_pid))
        data = nested(VETH_INFO_PEER, ifinfo() + peer_attrs)
        self._new_link(name, "veth", data, up=up, master=master)

    def add_vlan(self, name: str, parent: int, vid: int) -> None:
        self._new_link(name, "vlan", attr(IFLA_VLAN_ID, u16(vid)),
                       extra=attr(IFLA_LINK, u32(parent)))

    def set_link(self, index: int, up: bool | None = None, master: int | None = None,
                 addr_gen_mode: int | None = None) -> None:
        """Change a link: admin state, bridge (`master`, 0 = none), IPv6 address generation."""
        body = ifinfo(index, flags=IFF_UP if up else 0, change=0 if up is None else IFF_UP)
        if master is not None:
            body += attr(IFLA_MASTER, u32(master))
        if addr_gen_mode is not None:
            body += nested(IFLA_AF_SPEC, nested(socket.AF_INET6,
                                                attr(IFLA_INET6_ADDR_GEN_MODE,
                                                     u8(addr_gen_mode))))
        self.request(RTM_SETLINK, body)

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, ifinfo(index))

    def bridge_vlan(self, add: bool, index: int, vid: int, flags: int = 0,
                    on_bridge_itself: bool = False) -> None:
        """Add (or remove) VLAN `vid` on a port of a VLAN-filtering bridge (or, with
        `on_bridge_itself`, on the bridge's own port)."""
        spec = b""
        if on_bridge_itself:
            spec += attr(IFLA_BRIDGE_FLAGS, u16(BRIDGE_FLAGS_SELF))
        spec += attr(IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", flags, vid))
        self.request(RTM_SETLINK if add else RTM_DELLINK,
                     ifinfo(index, family=AF_BRIDGE) + nested(IFLA_AF_SPEC, spec))

    # -- addresses and routes ----------------------------------------------------------------
    def addresses(self, family: int = 0) -> list[Address]:
        body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
        found = [Address.decode(b) for b in self.request(RTM_GETADDR, body, NLM_F_DUMP)]
        return [a for a in found if not family or a.family == family]

    def add_address(self, index: int, address: str, prefixlen: int, flags: int = 0) -> None:
        ip = ipaddress.ip_address(address)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        body = (_IFADDRMSG.pack(family, prefixlen, flags & 0xFF, 0, index)
                + attr(IFA_LOCAL, ip.packed) + attr(IFA_ADDRESS, ip.packed))
        if flags:
            body += attr(IFA_FLAGS, u32(flags))
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, gateway: str, oif: int | None = None) -> None:
        ip = ipaddress.ip_address(gateway)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        body = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE,
                           RTN_UNICAST, 0) + attr(RTA_GATEWAY, ip.packed)
        if oif is not None:
            body += attr(RTA_OIF, u32(oif))
        self.request(RTM_NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL)


def _error_text(code: int, flags: int, payload: bytes) -> str:
    """The kernel's extended error message if it sent one, else strerror."""
    # nlmsgerr: the error (4 bytes), then a copy of the refused message (its header only when
    # capped), then the extended-ack attributes if the flags say there are any
    if flags & NLM_F_ACK_TLVS and len(payload) >= 4 + _NLMSGHDR.size:
        copied = _NLMSGHDR.size if flags & NLM_F_CAPPED else \
            _NLMSGHDR.unpack_from(payload, 4)[0]
        message = _text(parse_attrs(payload[4 + _align(copied):]).get(NLMSGERR_ATTR_MSG))
        if message:
            return message
    return os.strerror(code)


def eui64_link_local(mac: str) -> str:
    """The link-local address the kernel derives from a MAC (modified EUI-64, RFC 4291)."""
    b = mac_bytes(mac)
    iid = bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + iid))
