"""Ground truth from the wire: a packet capture on a VLAN bridge, read back as DNS replies.

The probes time what a client saw; a capture in the switch namespace times what crossed the
wire, independently of the probe process, its event loop and its neighbour-table reading. A
scenario compares the two (takeover from probes vs first reply from the new node in the
capture). tcpdump writes classic pcap with wall-clock stamps; they are converted with the run's
:class:`ClockMap`, the same conversion every log goes through.

Only the classic pcap format with Ethernet link type is read (what ``tcpdump -w`` writes);
IPv4 and IPv6, UDP and TCP replies from port 53.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_ETHERNET = 1


@dataclass(frozen=True)
class WireReply:
    wall: float  # capture time, epoch seconds
    src_mac: str
    src_ip: str
    dst_ip: str
    dst_port: int
    transport: str


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip4(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def _ip6(b: bytes) -> str:
    import ipaddress

    return str(ipaddress.IPv6Address(b))


def read_pcap(path: Path) -> Iterator[tuple[float, bytes]]:
    """(epoch seconds, frame) for every packet of a classic pcap file (µs or ns stamps)."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, want Ethernet")
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        if len(frame) < incl:
            break  # torn last packet: tcpdump was killed mid-write
        yield sec + frac / (1e9 if nano else 1e6), frame


def dns_replies(path: Path) -> Iterator[WireReply]:
    """Every frame carrying UDP or TCP from source port 53."""
    for wall, f in read_pcap(path):
        if len(f) < 14:
            continue
        ethertype = struct.unpack("!H", f[12:14])[0]
        l3 = f[14:]
        if ethertype == 0x8100 and len(f) >= 18:  # one 802.1Q tag
            ethertype = struct.unpack("!H", f[16:18])[0]
            l3 = f[18:]
        if ethertype == 0x0800 and len(l3) >= 20:
            ihl = (l3[0] & 0x0F) * 4
            proto, src, dst = l3[9], _ip4(l3[12:16]), _ip4(l3[16:20])
            l4 = l3[ihl:]
        elif ethertype == 0x86DD and len(l3) >= 40:
            proto, src, dst = l3[6], _ip6(l3[8:24]), _ip6(l3[24:40])
            l4 = l3[40:]
        else:
            continue
        if proto not in (6, 17) or len(l4) < 4:
            continue
        sport, dport = struct.unpack("!HH", l4[:4])
        if sport != 53:
            continue
        if proto == 6:
            data_off = (l4[12] >> 4) * 4 if len(l4) >= 13 else 0
            if len(l4) <= data_off:
                continue  # a bare ACK/FIN carries no answer
        yield WireReply(wall, _mac(f[6:12]), src, dst, dport, "tcp" if proto == 6 else "udp")


def first_reply_from(path: Path, src_ip: str, src_macs: set[str], after_wall: float
                     ) -> WireReply | None:
    """The first DNS reply from ``src_ip`` sent by one of ``src_macs`` after ``after_wall``."""
    for r in dns_replies(path):
        if r.wall >= after_wall and r.src_ip == src_ip and r.src_mac in src_macs:
            return r
    return None
