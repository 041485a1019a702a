"""One DHCPv4 DISCOVER/REQUEST exchange for an arbitrary client MAC, from inside a client node.

Why not dhclient or a macvlan: the seed's reservation `dhcp-host=53:54:01:11:43:e7,...` names a
*multicast* MAC (the I/G bit of 0x53 is set), which the kernel refuses on any interface. DHCP
only looks at the `chaddr` field, so this sends the packets with that field set (broadcast flag
on) and reads the broadcast replies with a packet socket. Prints one JSON object: offered and
acked address, server id, host name, router, DNS servers.

    python -m lab.services.dhcpask IFACE MAC [HOSTNAME]
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time
from typing import Any

MAGIC = b"\x63\x82\x53\x63"
ETH_P_IP = 0x0800


def build(mac: bytes, xid: int, msg_type: int, hostname: str | None = None,
          requested: str | None = None, server_id: str | None = None) -> bytes:
    """A BOOTREQUEST with the broadcast flag and the given options (pure)."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4,
                       b"\0" * 4, b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"", b"")
    opts = bytes([53, 1, msg_type])
    if requested:
        opts += bytes([50, 4]) + socket.inet_aton(requested)
    if server_id:
        opts += bytes([54, 4]) + socket.inet_aton(server_id)
    if hostname:
        opts += bytes([12, len(hostname)]) + hostname.encode()
    opts += bytes([55, 4, 1, 3, 6, 12]) + b"\xff"
    return head + MAGIC + opts


def parse(payload: bytes) -> dict[str, Any]:
    """yiaddr and the options of a BOOTREPLY (pure)."""
    if len(payload) < 240 or payload[236:240] != MAGIC:
        return {}
    out: dict[str, Any] = {"xid": struct.unpack("!I", payload[4:8])[0],
                           "yiaddr": socket.inet_ntoa(payload[16:20])}
    i = 240
    while i < len(payload) and payload[i] != 255:
        if payload[i] == 0:
            i += 1
            continue
        code, size = payload[i], payload[i + 1]
        val = payload[i + 2:i + 2 + size]
        if code == 53:
            out["type"] = val[0]
        elif code == 54:
            out["server_id"] = socket.inet_ntoa(val)
        elif code == 3:
            out["router"] = socket.inet_ntoa(val[:4])
        elif code == 6:
            out["dns"] = [socket.inet_ntoa(val[j:j + 4]) for j in range(0, len(val), 4)]
        elif code == 12:
            out["hostname"] = val.decode(errors="replace")
        i += 2 + size
    return out


def _reply(raw: socket.socket, xid: int, want: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            frame = raw.recv(4096)
        except TimeoutError:
            break
        ihl = (frame[0] & 0x0F) * 4
        if frame[9] != 17 or struct.unpack("!H", frame[ihl + 2:ihl + 4])[0] != 68:
            continue
        msg = parse(frame[ihl + 8:])
        if msg.get("xid") == xid and msg.get("type") == want:
            return msg
    return {}


def exchange(iface: str, mac: str, hostname: str | None, timeout: float = 8.0) -> dict[str, Any]:
    chaddr = bytes.fromhex(mac.replace(":", ""))
    xid = int.from_bytes(os.urandom(4), "big")
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    raw.bind((iface, ETH_P_IP))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    udp.sendto(build(chaddr, xid, 1, hostname), ("255.255.255.255", 67))
    offer = _reply(raw, xid, 2, timeout)
    if not offer:
        return {"mac": mac, "error": "no OFFER"}
    udp.sendto(build(chaddr, xid, 3, hostname, offer["yiaddr"], offer.get("server_id")),
               ("255.255.255.255", 67))
    ack = _reply(raw, xid, 5, timeout)
    return {"mac": mac, "offered": offer["yiaddr"], "acked": ack.get("yiaddr"),
            "server_id": ack.get("server_id"), "hostname": ack.get("hostname"),
            "router": ack.get("router"), "dns": ack.get("dns")}


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(exchange(argv[1], argv[2], argv[3] if len(argv) > 3 else None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
