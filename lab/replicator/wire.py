"""The replication link's framing and its cram-hmac peer authentication.

One TCP connection per resource carries everything (DRBD uses two; one is enough here because
each side has a dedicated receiver thread). A frame is a fixed header -- type, sequence number,
offset, payload length -- followed by the payload. Authentication follows DRBD's idea: each side
sends a random challenge and must answer the other's with HMAC(shared-secret, challenge) using
the resource's ``cram-hmac-alg``; the secret never crosses the wire and is never logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import struct
import threading
from typing import Any, NamedTuple

HEADER = struct.Struct("!BQQI")  # type, seq, offset, payload length

# frame types
HELLO = 1  # json: resource, node
CHALLENGE = 2
RESPONSE = 3
PARAMS = 4  # json: uuids, role, disk, bits, size, flags
BITMAP = 5  # zlib-compressed bitmap
SYNC_UUID = 6  # json: uuid
DATA = 7  # application write, offset + bytes; answered by ACK
ACK = 8
FLUSH = 9  # answered by ACK
RS_DATA = 10  # resync block(s); answered by RS_ACK
RS_ACK = 11
RS_DONE = 12  # json: the source's uuids
STATE = 13  # json: role/disk change
PING = 14
PING_ACK = 15
NEG_ACK = 16  # peer failed a write
READ_REQ = 17  # diskless primary reads from the peer
READ_REPLY = 18
DISCONNECT = 19
DISCARD = 20  # offset, payload = 8-byte length; answered by ACK
OV_START = 21  # json: alg, blocks -- the peer becomes VerifyT
OV_REQ = 22  # offset, payload = 8-byte block count; answered by OV_REPLY
OV_REPLY = 23  # offset, payload = one digest per block
OV_DONE = 24  # json: found (block numbers out of sync)
RESIZE_REQ = 25  # json: max (the asker's capacity), source (who resyncs the new storage)
RESIZE_DONE = 26  # json: size (agreed, already applied by the sender)
RESIZE_SYNC = 27  # the asker grew too: the receiver starts the resync of the new storage

MAX_PAYLOAD = 64 * 1024 * 1024


class WireError(ConnectionError):
    pass


class AuthError(WireError):
    pass


class Frame(NamedTuple):  # a tuple: the cheapest object to build per frame
    type: int
    seq: int
    offset: int
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for SO_SNDTIMEO/SO_RCVTIMEO."""
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))


def recv_line(sock: socket.socket) -> bytes:
    """One newline-terminated message of the control protocol (b"" if the peer closed first)."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        buf += chunk
    return buf


class Link:
    """A framed, thread-safe-for-sending socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        self.closed = False
        self._rbuf = bytearray()

    def send(self, type_: int, payload: bytes | memoryview = b"", seq: int = 0,
             offset: int = 0) -> None:
        """One frame in one system call where the socket takes it all (the common case)."""
        header = HEADER.pack(type_, seq, offset, len(payload))
        with self.send_lock:
            if self.closed:
                raise WireError("link closed")
            sent = self.sock.sendmsg([header, payload])
            if sent < len(header) + len(payload):
                self.sock.sendall(memoryview(header + bytes(payload))[sent:])

    def send_json(self, type_: int, obj: Any, seq: int = 0) -> None:
        self.send(type_, json.dumps(obj).encode(), seq)

    def recv(self) -> Frame:
        """The next frame; reads whatever the socket has, so frames queued together cost one
        system call (a reader thread wakes once, not twice, per ACK)."""
        buf = self._rbuf
        while True:
            if len(buf) >= HEADER.size:
                type_, seq, offset, length = HEADER.unpack_from(buf)
                if length > MAX_PAYLOAD:
                    raise WireError(f"frame of {length} bytes refused")
                end = HEADER.size + length
                if len(buf) >= end:
                    payload = bytes(buf[HEADER.size:end])
                    del buf[:end]
                    return Frame(type_, seq, offset, payload)
                want = end - len(buf)
            else:
                want = HEADER.size - len(buf)
            chunk = self.sock.recv(max(want, 65536))
            if not chunk:
                raise WireError("connection closed by peer")
            buf += chunk

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def authenticate(link: Link, alg: str | None, secret: str | None, timeout: float) -> None:
    """Mutual challenge/response; raises AuthError on mismatch. No-op without a secret."""
    if not alg or secret is None:
        return
    digest = alg.lower().replace("-", "")
    if digest not in hashlib.algorithms_available:
        raise AuthError(f"cram-hmac-alg {alg!r} not available")
    key = secret.encode()
    mine = os.urandom(32)
    link.sock.settimeout(timeout)
    link.send(CHALLENGE, mine)
    f = link.recv()
    if f.type != CHALLENGE:
        raise AuthError("expected a challenge")
    link.send(RESPONSE, hmac.new(key, f.payload, digest).digest())
    r = link.recv()
    if r.type != RESPONSE or not hmac.compare_digest(
        r.payload, hmac.new(key, mine, digest).digest()
    ):
        raise AuthError("peer authentication failed")
