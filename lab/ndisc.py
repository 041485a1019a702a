"""IPv6 router solicitations (RFC 4861 section 4.1), sent from a node's network namespace.

Why: a Linux host solicits routers only when its link comes up (three times, 4 s apart). A lab
client booted with the servers has stopped asking long before heartbeat starts dnsmasq, so it
configures SLAAC only at dnsmasq's first unsolicited advertisement, 0.1-1 s later. A
solicitation at the moment dnsmasq listens is what a client plugged in then would send; the
kernel handles the advertisement that answers it as any other.
"""

from __future__ import annotations

import socket
import struct

from lab import netns

ALL_ROUTERS = "ff02::2"
ICMPV6_ROUTER_SOLICITATION = 133
ND_OPT_SOURCE_LINKADDR = 1
# a router discards a solicitation whose hop limit is not 255 (it could have been forwarded)
ND_HOP_LIMIT = 255


def router_solicitation(mac: str | None) -> bytes:
    """The ICMPv6 message of a router solicitation, with the sender's link-layer address when
    known (so the router can answer without resolving it first). The checksum is left 0: the
    kernel fills it in for an ICMPv6 raw socket (pure)."""
    message = struct.pack("!BBHI", ICMPV6_ROUTER_SOLICITATION, 0, 0, 0)
    if mac:
        raw = bytes.fromhex(mac.replace(":", ""))
        if len(raw) != 6:
            raise ValueError(f"{mac!r} is not a MAC address")
        message += struct.pack("!BB", ND_OPT_SOURCE_LINKADDR, 1) + raw
    return message


def solicit_routers(netns_path: str, iface_index: int, mac: str | None) -> None:
    """Send one router solicitation to all routers on interface `iface_index` of the network
    namespace at `netns_path`, from the interface's link-local address."""
    sock = netns.socket_in(netns_path, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    with sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ND_HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, iface_index)
        sock.sendto(router_solicitation(mac), (ALL_ROUTERS, 0, 0, iface_index))
