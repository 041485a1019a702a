"""The link to the peer: finding it, keeping it alive, its requests, and losing it.

Why requests carry a callback (``then``) instead of a waiting thread: see ``datapath``. Why a
watchdog instead of per-request timeouts: nobody waits on an asynchronous request, so the
pinger checks the oldest one -- a peer that answers nothing for ``timeout``, or leaves one
request unanswered for ``ko-count`` timeouts, is dropped like DRBD drops it, and every request
on the link fails at that moment, marking its blocks out of sync before any reconnect.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lab.replicator import negotiate, wire
from lab.replicator.metadata import BLOCK

if TYPE_CHECKING:
    from lab.replicator.core import Replicator

# How long an initiator without a link listens between its dials (after `connect`, or after a
# peer that refused: its replicator not listening yet): a pair started together connects
# within this.
DIAL_PAUSE_S = 0.1


class Pending:
    """A request waiting for the peer. Whoever fails it marks its blocks out of sync at that
    moment (before any reconnect), so a waiter that wakes late never re-dirties blocks a
    resync already covered."""

    __slots__ = ("blocks", "data", "done", "link", "ok", "sent", "then")

    def __init__(self, blocks: range, link: wire.Link | None = None,
                 then: Callable[[Pending], None] | None = None) -> None:
        self.blocks = blocks
        self.link = link
        self.then = then  # runs in the thread that settles it
        self.sent = time.monotonic()
        self.done = threading.Event()
        self.ok = False
        self.data = b""

    def settle(self, ok: bool, data: bytes = b"") -> None:
        self.ok, self.data = ok, data
        if self.then is not None:  # first: it may answer the kernel
            self.then(self)
        self.done.set()


class Connection:
    def __init__(self, r: Replicator) -> None:
        self.r = r
        self.link: wire.Link | None = None
        self.link_gen = 0
        self.want_connect = False
        self.discard_my_data = False
        self.seq = 0
        self.pending: dict[int, Pending] = {}
        self.last_rx = 0.0
        me, peer = r.me, r.peer
        self.initiator = (me.address, me.port) < (peer.address, peer.port)
        self.handlers: dict[int, Callable[[wire.Link, wire.Frame], None]] = {
            wire.ACK: lambda _link, f: self.complete(f.seq, True),
            wire.DATA: r.io.on_data,
            wire.FLUSH: r.io.on_flush,
            wire.NEG_ACK: lambda _link, f: self.complete(f.seq, False),
            wire.READ_REQ: r.io.on_read,
            wire.READ_REPLY: lambda _link, f: self.complete(f.seq, True, f.payload),
            wire.DISCARD: r.io.on_discard,
            wire.PING: lambda link, f: link.send(wire.PING_ACK, b"", f.seq),
            wire.PING_ACK: lambda _link, f: self.complete(f.seq, True) if f.seq else None,
            wire.STATE: self._on_state,
            wire.RS_DATA: r.resync.on_data,
            wire.RS_ACK: r.resync.on_ack,
            wire.RS_DONE: lambda _link, f: r.resync.finish_target(f.json()),
            wire.OV_START: r.verify.on_start,
            wire.OV_REQ: r.verify.on_request,
            wire.OV_REPLY: r.verify.on_reply,
            wire.OV_DONE: r.verify.on_done,
            wire.SYNC_UUID: r.resync.on_sync_uuid,
            wire.RESIZE_REQ: r.resize.on_request,
            wire.RESIZE_DONE: lambda _link, f: self.complete(f.seq, True, f.payload),
            wire.RESIZE_SYNC: r.resize.on_sync,
        }

    # == requests =================================================================================
    def request(self, link: wire.Link, type_: int, payload: bytes | memoryview, offset: int,
                blocks: range, then: Callable[[Pending], None] | None = None) -> Pending:
        """Send a request the peer answers; ``then`` runs once it is answered or failed."""
        with self.r.lock:
            self.seq += 1
            seq = self.seq
            pend = Pending(blocks, link, then)
            current = self.link is link
            if current:
                self.pending[seq] = pend
        if not current:  # the link went away between the caller's look and now
            self.fail(pend)
            return pend
        try:
            link.send(type_, payload, seq, offset)
        except OSError as e:
            with self.r.lock:
                self.pending.pop(seq, None)
            self.fail(pend)
            self.link_lost(link, f"send failed: {e}")
        return pend

    def fail(self, p: Pending) -> None:
        md = self.r.md
        if len(p.blocks) and md is not None:
            md.mark_dirty(p.blocks.start * BLOCK, len(p.blocks) * BLOCK)
        p.settle(False)

    def complete(self, seq: int, ok: bool, data: bytes = b"") -> None:
        with self.r.lock:
            p = self.pending.pop(seq, None)
        if p is None:
            return
        if ok:
            p.settle(True, data)
        else:
            self.fail(p)

    def wait(self, pend: Pending) -> bool:
        """For the few callers that block (discard, ping): wait out ``timeout``/``ko-count``."""
        res = self.r.res
        ko = 0
        while not pend.done.wait(res.timeout_s):
            link = pend.link
            if link is None or self.link is not link:
                pend.done.wait(0.1)  # its link is gone: link_lost fails it right away
                break
            alive = self.last_rx > pend.sent  # it answers something, just not this request
            ko += 1
            if alive and ko < max(res.ko_count, 1):
                continue
            self.link_lost(link, "peer did not answer within timeout" if not alive
                           else f"ko-count {ko} reached")
            break
        return pend.ok

    def bound_in_flight(self, limit: int = 2048) -> None:
        """Protocol A must not queue unboundedly in front of a slow peer."""
        while len(self.pending) > limit:
            with self.r.lock:
                oldest = next(iter(self.pending.values()), None)
            if oldest is None or not self.wait(oldest):
                return

    def overdue(self) -> None:
        """Drop a peer that left the oldest request unanswered for ``timeout`` (silent) or
        ``ko-count`` timeouts (still answering other things)."""
        link = self.link
        with self.r.lock:
            oldest = next(iter(self.pending.values()), None)
        if link is None or oldest is None or oldest.link is not link:
            return
        timeout = self.r.res.timeout_s
        age = time.monotonic() - oldest.sent
        if age < timeout:
            return
        if self.last_rx <= oldest.sent:
            self.link_lost(link, "peer did not answer within timeout")
        elif age >= timeout * max(self.r.res.ko_count, 1):
            self.link_lost(link, f"ko-count {int(age // timeout)} reached")

    # == the link's life ==========================================================================
    def connector(self) -> None:
        """Listen always; the lower address also dials. One live link at a time."""
        r = self.r
        listener: socket.socket | None = None
        while not r.stopping:
            if listener is None:
                try:
                    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    listener.bind((r.me.address, r.me.port))
                    listener.listen(4)
                    listener.settimeout(0.5)
                except OSError:
                    if listener is not None:
                        listener.close()
                    listener = None
                    time.sleep(0.5)
                    continue
            sock: socket.socket | None = None
            # an initiator without a link listens only briefly: its peer may just be starting,
            # and `connect` (drbdadm up) may come any moment and must not wait out a long accept
            listener.settimeout(DIAL_PAUSE_S if self.initiator and self.link is None else 0.5)
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                pass
            except OSError:
                continue
            if sock is not None:
                if not self.want_connect:
                    sock.close()
                    continue
                old = self.link
                if old is not None:  # the peer restarted and dials again: the old link is dead
                    self.link_lost(old, "peer reconnected")
            if sock is None and self.want_connect and self.link is None and self.initiator:
                try:
                    sock = socket.create_connection((r.peer.address, r.peer.port),
                                                    timeout=1.0,
                                                    source_address=(r.me.address, 0))
                except ConnectionRefusedError:
                    # the peer's host answers, its replicator is not listening (yet): the next
                    # brief accept is the pause, so a pair started together connects at once
                    sock = None
                except OSError:
                    sock = None
                    time.sleep(min(r.res.connect_int_s, 0.5))
            if sock is not None:
                try:
                    self.establish(sock)
                except (OSError, wire.WireError, ValueError) as e:
                    r.log(f"connection attempt failed: {e}")
                    sock.close()
                    with r.lock:
                        if self.link is None and self.want_connect:
                            r.set_state(cstate="WFConnection")
        if listener is not None:
            listener.close()

    def establish(self, sock: socket.socket) -> None:
        r = self.r
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = wire.Link(sock)
        sock.settimeout(max(r.res.timeout_s, 1.0))
        link.send_json(wire.HELLO, {"resource": r.res.name, "node": r.hostname})
        hello = link.recv()
        if hello.type != wire.HELLO or hello.json().get("resource") != r.res.name:
            raise wire.WireError("peer is not serving this resource")
        r.set_state(cstate="WFReportParams")
        try:
            wire.authenticate(link, r.res.net.get("cram-hmac-alg"),
                              r.res.net.get("shared-secret"), max(r.res.timeout_s, 1.0))
        except wire.AuthError as e:
            r.log(f"authentication of peer failed: {e}")
            r.events.emit("auth-failed", role=r.role, cstate=r.cstate, dstate=r.dstate)
            raise
        try:
            resync = negotiate.handshake(r, link)
        except (OSError, wire.WireError, ValueError) as e:
            if self.link is link:  # installed, then the handshake's tail failed
                self.link_lost(link, f"handshake: {e}")
            raise
        if self.link is not link:
            return  # the handshake ended in a disconnect
        # from now on blocking I/O, but a send never waits longer than ``timeout`` (a frozen
        # peer stops reading: its buffers fill and we must not hang the writers)
        link.sock.settimeout(None)
        tv = wire.timeval(r.res.timeout_s)
        link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        threading.Thread(target=self.receiver, args=(link,), daemon=True,
                         name="receiver").start()
        if resync:
            r.resync.start_sender(link)

    def install(self, link: wire.Link, peer_role: str) -> None:
        """The handshake's point of no return: requests go to this link from now on."""
        with self.r.lock:
            self.link = link
            self.link_gen += 1
            self.last_rx = time.monotonic()
            self.r.peer_role = peer_role

    def receiver(self, link: wire.Link) -> None:
        handlers = self.handlers
        try:
            while True:
                f = link.recv()
                self.last_rx = time.monotonic()
                handler = handlers.get(f.type)
                if handler is None:
                    if f.type == wire.DISCONNECT:
                        raise wire.WireError("peer disconnected")
                    raise wire.WireError(f"unexpected frame type {f.type}")
                handler(link, f)
        except (OSError, wire.WireError, ValueError) as e:
            self.link_lost(link, f"{type(e).__name__}: {e}")

    def _on_state(self, _link: wire.Link, f: wire.Frame) -> None:
        s = f.json()
        self.r.set_state(peer_role=s["role"], pdsk=s["disk"])

    def send_state(self) -> None:
        link = self.link
        if link is not None:
            try:
                link.send_json(wire.STATE, {"role": self.r.role, "disk": self.r.dstate})
            except OSError as e:
                self.link_lost(link, f"send failed: {e}")

    def link_lost(self, link: wire.Link, reason: str) -> None:
        r = self.r
        with r.lock:
            if self.link is not link:
                link.close()
                return
            self.link = None
            link.close()
            pend, self.pending = self.pending, {}
            was = r.cstate
        for p in pend.values():
            self.fail(p)
        r.log(f"connection lost ({reason})")
        md = r.md
        if (md is not None and r.role == "Primary" and md.sb.bitmap == 0
                and r.dstate == "UpToDate"):
            md.new_current_uuid(primary=True)
        if was == "SyncSource":
            r.resync.aborted()
        elif was in ("VerifyS", "VerifyT"):
            r.verify.aborted()
        r.set_state(cstate="WFConnection" if self.want_connect else "StandAlone",
                    peer_role="Unknown", pdsk="DUnknown")
        r.events.emit("connection-lost", reason=reason, role=r.role, cstate=r.cstate,
                      dstate=r.dstate, out_of_sync_kib=r.oos_kib)
        if r.role == "Primary" and r.dstate not in ("UpToDate", "Consistent"):
            r.run_handler("pri-on-incon-degr")

    def pinger(self) -> None:
        """``ping-int``/``ping-timeout`` on an idle link (``timeout`` while busy), and the
        request watchdog."""
        r = self.r
        while not r.stopping:
            time.sleep(0.1)
            self.overdue()
            link = self.link
            if link is None:
                continue
            idle = time.monotonic() - self.last_rx
            busy = bool(self.pending) or r.cstate in ("SyncSource", "VerifyS")
            interval = min(r.res.ping_int_s, r.res.timeout_s / 2) if busy \
                else r.res.ping_int_s
            if idle < interval:
                continue
            sent = time.monotonic()
            try:
                link.send(wire.PING)
            except OSError as e:
                self.link_lost(link, f"ping: {e}")
                continue
            wait = r.res.timeout_s if busy else r.res.ping_timeout_s
            while time.monotonic() - sent < wait and self.link is link:
                if self.last_rx >= sent:
                    break
                time.sleep(0.02)
                self.overdue()
            else:
                if self.link is link and self.last_rx < sent:
                    self.link_lost(link, "PingAck did not arrive in time")

    # == commands =================================================================================
    def connect(self, discard_my_data: bool) -> None:
        with self.r.lock:
            self.discard_my_data = discard_my_data
            if self.want_connect:
                return
            self.want_connect = True
        self.r.set_state(cstate="WFConnection")

    def disconnect(self) -> None:
        with self.r.lock:
            self.want_connect = False
            link = self.link
        if link is not None:
            with contextlib.suppress(OSError):
                link.send(wire.DISCONNECT)
            self.link_lost(link, "disconnect requested")
        self.r.set_state(cstate="StandAlone")
