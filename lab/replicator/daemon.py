"""The per-node replicator: one process per resource, started by ``drbdadm up``/``attach``.

It serves the node's copy of the resource as one file through FUSE, backed by the local image
(pread/pwrite/fdatasync only -- it never touches the loop device it is exposed through), and
mirrors every write to the peer over TCP at the ``.res`` addresses with protocol C: a write
completes only after the peer has written it; flushes are forwarded. When the peer cannot be
reached the write completes locally and its blocks are marked out of sync in the on-disk
bitmap, so a reconnect resyncs only those. A peer that stops answering is dropped after the
resource's ``timeout`` (tenths of a second) -- writers never hang on it. State changes go to an
events2-like JSON stream; ``drbdadm`` talks to the daemon through a Unix control socket.

Threads: the FUSE loop (main thread), the control server, the connector (listen/connect +
handshake), one receiver per live link, the pinger and, while SyncSource, the resync sender.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.replicator import device, fusedev, wire
from lab.replicator.events import EventLog
from lab.replicator.handshake import Policy, Side, sync_handshake
from lab.replicator.metadata import BLOCK, Metadata
from lab.replicator.resfile import Resource, load_dir

RUN_DIR = "/run/drbd"
EVENTS_LOG = "/var/log/drbd-events.log"
RESYNC_CHUNK_BLOCKS = 64  # 256 KiB per resync frame
RESYNC_WINDOW = 16
UUID_NEW_BM_OFFSET = 1 << 48
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_KEEP_SIZE = 0x01
CLONE_NEWNS = 0x00020000
DISCARD = 20  # frame: offset, payload = 8-byte length


def run_paths(resource: str) -> tuple[str, str, str]:
    """(control socket, FUSE mount point, events log) of a resource."""
    return f"{RUN_DIR}/{resource}.ctl", f"{RUN_DIR}/{resource}", EVENTS_LOG


@dataclass
class Pending:
    """A request waiting for the peer. Whoever fails it marks its blocks out of sync at that
    moment (before any reconnect), so a waiter that wakes late never re-dirties blocks a
    resync already covered."""

    blocks: range
    link: wire.Link | None = None
    sent: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    data: bytes = b""
    then: Callable[[Pending], None] | None = None  # runs in the thread that settles it

    def settle(self, ok: bool, data: bytes = b"") -> None:
        self.ok, self.data = ok, data
        self.done.set()
        if self.then is not None:
            self.then(self)


class Join:
    """Runs ``finish`` once, in the thread that delivers the last of ``parts`` outcomes
    (the local disk's and the peer's), so nobody waits for the other."""

    __slots__ = ("finish", "left", "lock")

    def __init__(self, parts: int, finish: Callable[[], None]) -> None:
        self.left = parts
        self.finish = finish
        self.lock = threading.Lock()

    def arrive(self, _: object = None) -> None:
        with self.lock:
            self.left -= 1
            last = self.left == 0
        if last:
            self.finish()


class CommandError(Exception):
    """A refused command: ``rc`` and the DRBD-style message drbdadm prints."""

    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc


class Replicator:
    def __init__(self, res: Resource, hostname: str, records: str | None = None) -> None:
        self.res = res
        self.me = res.host(hostname)
        self.peer = res.peer_of(hostname)
        self.hostname = hostname
        self.records = records
        self.ctl_path, self.mnt, _ = run_paths(res.name)
        # a name unique to this run: once the mount is gone (crash), a loop device still over it
        # shows ``/<name>`` as its backing file, which is how cleanup recognises it
        self.fuse_name = f"{res.name}-{hostname}-{os.urandom(4).hex()}"
        self.fuse_file = f"{self.mnt}/{self.fuse_name}"
        self.events = EventLog(EVENTS_LOG, res.name, hostname)
        self.lock = threading.RLock()  # state
        self.io_lock = threading.Lock()  # orders writes and resync reads on the wire
        self.role = "Secondary"
        self.cstate = "StandAlone"
        self.peer_role = "Unknown"
        self.pdsk = "DUnknown"
        self.want_connect = False
        self.discard_my_data = False
        self.link: wire.Link | None = None
        self.link_gen = 0
        self.seq = 0
        self.pending: dict[int, Pending] = {}
        self.last_rx = 0.0
        self.loop_dev: str | None = None
        self.holder: subprocess.Popen[str] | None = None
        self.fd: int | None = None
        self.md: Metadata | None = None
        self.dstate = "Diskless"
        self._size = 0
        self.io_error_injected = False
        # fdatasync the image on flushes (default). The lab's faults kill nodes, not the host,
        # and a node's crash never loses what reached the host's page cache; "0" keeps the
        # flush a round trip that waits until the peer has written everything before it.
        self.image_sync = os.environ.get("HAPAIR_REPL_IMAGE_SYNC", "1") != "0"
        self.io_stats: dict[str, list[Any]] = {}  # op -> [count, seconds, bytes]
        self.resync_total = 0
        self.resync_done = 0
        self.resync_started = 0.0
        self.last_resync: dict[str, Any] = {}
        self.split_brain: dict[str, Any] = {}
        self.fuse = fusedev.FuseFile(self, self.mnt, self.fuse_name, f"drbd-{res.name}",
                                     writeback=os.environ.get("HAPAIR_REPL_WRITEBACK") == "1")
        self.mounted = self.fuse.mounted
        self.stopping = False
        # (link, window) of the running resync: RS_ACKs of an older link never count
        self.resync_window: tuple[wire.Link, threading.Semaphore] | None = None
        self.policy = Policy(
            after_sb_0pri=res.net_opt("after-sb-0pri"),
            after_sb_1pri=res.net_opt("after-sb-1pri"),
            after_sb_2pri=res.net_opt("after-sb-2pri"),
            rr_conflict=res.net_opt("rr-conflict"),
            always_asbp=res.net_opt("always-asbp") in ("yes", "1"),
        )
        self.initiator = (self.me.address, self.me.port) < (self.peer.address, self.peer.port)

    # == state & events ===========================================================================
    @property
    def oos_kib(self) -> int:
        return (self.md.dirty_blocks * BLOCK // 1024) if self.md else 0

    def state(self) -> dict[str, Any]:
        with self.lock:
            st: dict[str, Any] = {
                "role": self.role,
                "peer_role": self.peer_role,
                "cstate": self.cstate,
                "dstate": self.dstate,
                "pdsk": self.pdsk,
                "out_of_sync_kib": self.oos_kib,
                "minor": self.me.minor,
                "device": self.me.device,
                "loop": self.loop_dev,
                "fuse": self.mounted.is_set(),
                "io_stats": {k: {"count": v[0], "ms": round(v[1] * 1000, 3), "bytes": v[2]}
                             for k, v in self.io_stats.items()},
            }
            if self.md:
                st["uuids"] = {"current": f"{self.md.sb.current:016X}",
                               "bitmap": f"{self.md.sb.bitmap:016X}",
                               "history": [f"{h:016X}" for h in self.md.sb.history]}
            if self.cstate in ("SyncSource", "SyncTarget"):
                st["resync"] = {"total_kib": self.resync_total * BLOCK // 1024,
                                "done_kib": self.resync_done * BLOCK // 1024}
            if self.last_resync:
                st["last_resync"] = self.last_resync
            if self.split_brain:
                st["split_brain"] = self.split_brain
            return st

    def emit(self, event: str = "change", **fields: Any) -> None:
        st = self.state()
        st.pop("uuids", None)
        st.pop("io_stats", None)
        self.events.emit(event, **{**st, **fields})

    def log(self, msg: str) -> None:
        print(f"[{time.clock_gettime(time.CLOCK_MONOTONIC):.3f}] {self.res.name}: {msg}",
              flush=True)

    def set_state(self, **changes: str) -> None:
        with self.lock:
            changed = {k: v for k, v in changes.items() if getattr(self, k) != v}
            for k, v in changed.items():
                setattr(self, k, v)
            if "dstate" in changed and self.md and changed["dstate"] != "Diskless":
                self.md.set_disk(changed["dstate"])
        if changed:
            self.log("state " + " ".join(f"{k}:{v}" for k, v in changed.items()))
            self.emit("change")

    # == local disk ===============================================================================
    def attach(self) -> None:
        disk = self.me.disk
        fd = os.open(disk, os.O_RDWR)
        size = os.fstat(fd).st_size
        if stat.S_ISBLK(os.fstat(fd).st_mode):
            size = os.lseek(fd, 0, os.SEEK_END)
        md = Metadata.load(fd, size)
        crashed = md.attach_recovery()
        with self.lock:
            self.fd, self.md, self._size = fd, md, md.data_size
        disk_state = md.sb.disk
        if disk_state == "UpToDate":
            disk_state = "Consistent"  # DRBD attaches an up-to-date disk as Consistent
        if crashed:
            self.log(f"crashed primary: {md.dirty_blocks} blocks of the activity log marked")
        self.set_state(dstate=disk_state)

    def detach(self, reason: str = "detach") -> None:
        with self.lock:
            fd, self.fd = self.fd, None
            self.md = None
            self.dstate = "Diskless"
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log(f"detached ({reason})")
        self.emit("change", reason=reason)
        self.send_state()

    def local_io_error(self, what: str) -> None:
        policy = self.res.disk.get("on-io-error", "pass_on")
        self.log(f"local I/O error on {what}; on-io-error {policy}")
        self.events.emit("io-error", what=what, policy=policy, role=self.role,
                         cstate=self.cstate, dstate=self.dstate)
        if policy in ("detach", "call-local-io-error"):
            self.run_handler("local-io-error")
        if policy == "detach":
            self.detach("io-error")

    def _pwrite(self, data: bytes | memoryview, offset: int) -> bool:
        """Local write; False if the disk failed (and the policy took over)."""
        fd = self.fd
        if fd is None:
            return False
        try:
            if self.io_error_injected:
                raise OSError(errno.EIO, "injected I/O error")
            os.pwrite(fd, data, offset)
            return True
        except OSError:
            self.local_io_error("write")
            return False

    def _start_writeback(self, offset: int, length: int) -> None:
        """Hand the write to the host disk now, as a block device would, instead of leaving
        it in the page cache until the next flush: the flush then finds the work (block
        allocation included) mostly done on both nodes, rather than doing all of it twice at
        once on a host disk both images share. Durability still comes only from the flush."""
        fd = self.fd
        if fd is not None and _sync_file_range is not None:
            _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)

    # == handlers =================================================================================
    def run_handler(self, name: str) -> None:
        cmd = self.res.handlers.get(name)
        self.events.emit("helper", helper=name, configured=cmd is not None, role=self.role,
                         cstate=self.cstate, dstate=self.dstate)
        if not cmd:
            return
        env = dict(os.environ)
        env.update({"DRBD_RESOURCE": self.res.name, "DRBD_MINOR": str(self.me.minor),
                    "DRBD_CONF": self.res.file, "DRBD_PEER_ADDRESS": self.peer.address,
                    "DRBD_PEER_AF": "ipv4", "DRBD_LL_DISK": self.me.disk,
                    "DRBD_MY_ADDRESS": self.me.address, "DRBD_MY_AF": "ipv4"})

        def run() -> None:
            self.log(f"helper command: {name}")
            try:
                # in the node's own mount namespace (PID 1's), not the daemon's private copy
                r = subprocess.run(["nsenter", "--mount=/proc/1/ns/mnt", "sh", "-c", cmd],
                                   env=env, timeout=120,
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True)
                rc = r.returncode
                for line in (r.stdout + r.stderr).splitlines()[-20:]:
                    self.log(f"helper {name}: {line}")
            except subprocess.TimeoutExpired:
                rc = -1
            self.log(f"helper command: {name} exit code {rc}")
            self.events.emit("helper-done", helper=name, exit_code=rc)

        threading.Thread(target=run, name=f"helper-{name}", daemon=True).start()

    # == FUSE-facing I/O ==========================================================================
    def connected(self) -> bool:
        return self.link is not None and self.cstate in ("Connected", "SyncSource", "SyncTarget")

    def write(self, data: memoryview, offset: int, done: fusedev.Reply) -> None:
        """Send to the peer, write locally, answer once both did (protocol C) -- from the
        receiver thread when the ACK comes last, so no thread ever waits for the other."""
        n = len(data)
        if offset + n > self.size:
            done(-errno.ENOSPC)
            return
        blocks = range(offset // BLOCK, (offset + max(n, 1) - 1) // BLOCK + 1)
        out: list[Any] = [None, False]  # the peer's Pending, the local outcome

        def finish() -> None:
            pend, local_ok = out
            if not local_ok and not (pend is not None and pend.ok):
                done(-errno.EIO)  # a failed peer request marked its blocks when it failed
                return
            if not local_ok and self.md is not None and self.dstate != "Diskless":
                self.md.mark_dirty(offset, n)
            done(n)

        with self.io_lock:
            md = self.md
            if md is not None and self.role == "Primary":
                md.al_touch(offset, n)
            link = self.link if self.connected() and self.pdsk not in ("Diskless",) else None
            asynchronous = self.res.protocol == "A"
            join = Join(2 if link is not None and not asynchronous else 1, finish)
            if link is not None:  # send first: the peer writes while we write
                out[0] = self._send_request(link, wire.DATA, data, offset, blocks,
                                            None if asynchronous else join.arrive)
            out[1] = self._pwrite(data, offset)
            if out[1]:
                self._start_writeback(offset, n)
            if link is None and md is not None and out[1]:
                md.mark_dirty(offset, n)
        if link is not None and asynchronous:
            # protocol A: done once written here and handed to TCP; a later NEG_ACK or a lost
            # link marks the blocks out of sync
            if out[1]:
                self._bound_in_flight()
            else:
                self._wait(out[0])
        join.arrive()

    def read(self, size: int, offset: int, done: Callable[[bytes | int], None]) -> None:
        size = max(0, min(size, self.size - offset))
        fd = self.fd
        if fd is not None and self.dstate not in ("Diskless", "Inconsistent"):
            try:
                if self.io_error_injected:
                    raise OSError(errno.EIO, "injected I/O error")
                done(os.pread(fd, size, offset))
                return
            except OSError:
                self.local_io_error("read")
        link = self.link if self.connected() else None
        if link is None:
            done(-errno.EIO)
            return
        self._send_request(link, wire.READ_REQ, size.to_bytes(8, "big"), offset, range(0),
                           lambda p: done(p.data if p.ok else -errno.EIO))

    def open_error(self) -> int:
        return 0 if self.role == "Primary" else errno.EMEDIUMTYPE  # DRBD: a Secondary refuses

    def fsync(self, done: fusedev.Reply) -> None:
        """Forward the flush first, then flush locally: both disks sync at the same time."""
        link = self.link if self.connected() else None
        wait_peer = link is not None and self.res.protocol != "A"  # A: the peer flushes later
        join = Join(2 if wait_peer else 1, lambda: done(0))
        if link is not None:
            self._send_request(link, wire.FLUSH, b"", 0, range(0),
                               join.arrive if wait_peer else None)
        fd = self.fd
        if fd is not None and self.image_sync:
            try:
                os.fdatasync(fd)
            except OSError:
                self.local_io_error("flush")
        join.arrive()

    def discard(self, offset: int, length: int) -> None:
        """Punch a hole locally and on the peer (ext4's discard at mkfs time)."""
        length = max(0, min(length, self.size - offset))
        with self.io_lock:
            fd = self.fd
            if fd is not None:
                _punch(fd, offset, length)
            link = self.link if self.connected() else None
            pend = None
            if link is not None:
                blocks = range(offset // BLOCK, (offset + max(length, 1) - 1) // BLOCK + 1)
                pend = self._send_request(link, DISCARD, length.to_bytes(8, "big"), offset,
                                          blocks)
            elif self.md is not None:
                self.md.mark_dirty(offset, length)
        if pend is not None:
            self._wait(pend)  # a failure marked the range out of sync

    @property
    def size(self) -> int:
        return self._size

    def _send_request(self, link: wire.Link, type_: int, payload: bytes | memoryview,
                      offset: int, blocks: range,
                      then: Callable[[Pending], None] | None = None) -> Pending:
        with self.lock:
            self.seq += 1
            seq = self.seq
            pend = Pending(blocks, link, then=then)
            current = self.link is link
            if current:
                self.pending[seq] = pend
        if not current:  # the link went away between the caller's look and now
            self._fail(pend)
            return pend
        try:
            link.send(type_, payload, seq, offset)
        except OSError as e:
            with self.lock:
                self.pending.pop(seq, None)
            self._fail(pend)
            self.link_lost(link, f"send failed: {e}")
        return pend

    def _fail(self, p: Pending) -> None:
        if len(p.blocks) and self.md is not None:
            self.md.mark_dirty(p.blocks.start * BLOCK, len(p.blocks) * BLOCK)
        p.settle(False)

    def _wait(self, pend: Pending) -> bool:
        """Protocol C: wait for the peer; give up after ``timeout`` (ko-count while it pings)."""
        timeout = self.res.timeout_s
        ko = 0
        while not pend.done.wait(timeout):
            link = pend.link
            if link is None or self.link is not link:
                pend.done.wait(0.1)  # its link is gone: link_lost fails it right away
                break
            alive = self.last_rx > pend.sent  # it answers something, just not this request
            ko += 1
            if alive and ko < max(self.res.ko_count, 1):
                continue
            self.link_lost(link, "peer did not answer within timeout" if not alive
                           else f"ko-count {ko} reached")
            break
        return pend.ok

    # == connection ===============================================================================
    def connector(self) -> None:
        """Listen always; the lower address also dials. One live link at a time."""
        listener: socket.socket | None = None
        while not self.stopping:
            if listener is None:
                try:
                    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    listener.bind((self.me.address, self.me.port))
                    listener.listen(4)
                    listener.settimeout(0.5)
                except OSError:
                    if listener is not None:
                        listener.close()
                    listener = None
                    time.sleep(0.5)
                    continue
            sock: socket.socket | None = None
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
                    sock = socket.create_connection((self.peer.address, self.peer.port),
                                                    timeout=1.0,
                                                    source_address=(self.me.address, 0))
                except OSError:
                    sock = None
                    time.sleep(min(self.res.connect_int_s, 0.5))
            if sock is not None:
                try:
                    self.establish(sock)
                except (OSError, wire.WireError, ValueError) as e:
                    self.log(f"connection attempt failed: {e}")
                    sock.close()
                    with self.lock:
                        if self.link is None and self.want_connect:
                            self.set_state(cstate="WFConnection")
        if listener is not None:
            listener.close()

    def establish(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = wire.Link(sock)
        sock.settimeout(max(self.res.timeout_s, 1.0))
        link.send_json(wire.HELLO, {"resource": self.res.name, "node": self.hostname})
        hello = link.recv()
        if hello.type != wire.HELLO or hello.json().get("resource") != self.res.name:
            raise wire.WireError("peer is not serving this resource")
        self.set_state(cstate="WFReportParams")
        try:
            wire.authenticate(link, self.res.net.get("cram-hmac-alg"),
                              self.res.net.get("shared-secret"), max(self.res.timeout_s, 1.0))
        except wire.AuthError as e:
            self.log(f"authentication of peer failed: {e}")
            self.events.emit("auth-failed", role=self.role, cstate=self.cstate,
                             dstate=self.dstate)
            raise
        try:
            self.handshake(link)
        except (OSError, wire.WireError, ValueError) as e:
            if self.link is link:  # installed, then the handshake's tail failed
                self.link_lost(link, f"handshake: {e}")
            raise

    def _side(self) -> Side:
        md = self.md
        assert md is not None
        return Side(uuids=md.sb.uuids, role=self.role, disk=self.dstate, bits=md.dirty_blocks,
                    crashed_primary=md.sb.crashed_primary, discard_my_data=self.discard_my_data,
                    can_demote=self.role != "Primary" or self._busy() is None)

    def handshake(self, link: wire.Link) -> None:
        md = self.md
        if md is None:
            raise wire.WireError("diskless connect is not supported")
        local = self._side()
        link.send_json(wire.PARAMS, {
            "uuids": [local.uuids.current, local.uuids.bitmap, *local.uuids.history],
            "role": local.role, "disk": local.disk, "bits": local.bits, "size": md.data_size,
            "crashed_primary": local.crashed_primary, "discard_my_data": local.discard_my_data,
            "can_demote": local.can_demote})
        f = link.recv()
        if f.type != wire.PARAMS:
            raise wire.WireError("expected parameters")
        p = f.json()
        if p["size"] != md.data_size:
            raise wire.WireError(f"peer size {p['size']} != mine {md.data_size}")
        from lab.replicator.handshake import Uuids

        u = p["uuids"]
        peer = Side(uuids=Uuids(u[0], u[1], (u[2], u[3])), role=p["role"], disk=p["disk"],
                    bits=p["bits"], crashed_primary=p["crashed_primary"],
                    discard_my_data=p["discard_my_data"], can_demote=p["can_demote"])
        out = sync_handshake(local, peer, self.policy, self.initiator)
        for m in out.messages:
            self.log(m)
        decision = {"hg": out.hg, "rule": out.rule, "action": out.action, "full": out.full,
                    "split_brain": out.split_brain, "auto_resolved": out.auto_resolved,
                    "handlers": list(out.handlers), "demote": out.demote,
                    "my_changes_blocks": local.bits, "peer_changes_blocks": peer.bits,
                    "pcount": (local.role == "Primary") + (peer.role == "Primary")}
        if out.split_brain:
            self.split_brain = {**decision, "policy": {
                "after-sb-0pri": self.policy.after_sb_0pri,
                "after-sb-1pri": self.policy.after_sb_1pri,
                "after-sb-2pri": self.policy.after_sb_2pri},
                "discarded": ("this node" if out.action == "target" else
                              "peer" if out.action == "source" else "nobody")}
        self.events.emit("handshake", **decision, role=self.role, peer_role=peer.role,
                         cstate=self.cstate, dstate=self.dstate, messages=list(out.messages))
        for h in out.handlers:
            self.run_handler(h)
        if out.action == "disconnect":
            link.close()
            with self.lock:
                self.want_connect = False
            self.set_state(cstate="StandAlone", peer_role="Unknown", pdsk="DUnknown")
            return
        if out.demote:
            self.log("Successfully gave up primary role.")
            self._demote()
        self.discard_my_data = False
        with self.io_lock:  # no application write may slip between bitmap and link
            resync = self._connect_data_path(link, md, out, peer)
        # from now on blocking I/O, but a send never waits longer than ``timeout`` (a frozen
        # peer stops reading: its buffers fill and we must not hang the writers)
        link.sock.settimeout(None)
        tv = struct.pack("ll", int(self.res.timeout_s), int(self.res.timeout_s % 1 * 1e6))
        link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        threading.Thread(target=self.receiver, args=(link,), daemon=True,
                         name="receiver").start()
        if resync:
            window = threading.Semaphore(RESYNC_WINDOW)
            self.resync_window = (link, window)
            threading.Thread(target=self.resync_sender, args=(link, window), daemon=True,
                             name="resync").start()

    def _connect_data_path(self, link: wire.Link, md: Metadata, out: Any, peer: Side) -> bool:
        """Bitmaps, link installation and the sync UUID; True if a resync must be sent."""
        # exchange bitmaps (DRBD ORs both sides' out-of-sync bits)
        link.send(wire.BITMAP, zlib.compress(bytes(md.bitmap)))
        f = link.recv()
        if f.type != wire.BITMAP:
            raise wire.WireError("expected bitmap")
        md.merge(zlib.decompress(f.payload))
        if out.full:
            md.set_all()
        with self.lock:
            self.link = link
            self.link_gen += 1
            self.last_rx = time.monotonic()
            self.peer_role = peer.role
        if out.action == "source":
            uuid = md.sb.bitmap
            uuid = uuid + UUID_NEW_BM_OFFSET if uuid and uuid != 4 else random.getrandbits(64)
            md.set_uuids(bitmap=uuid)
            link.send_json(wire.SYNC_UUID, {"uuid": uuid})
            self.resync_total, self.resync_done = md.dirty_blocks, 0
            self.resync_started = time.monotonic()
            self.set_state(cstate="SyncSource", pdsk="Inconsistent")
            if self.dstate == "Consistent":
                self.set_state(dstate="UpToDate")
            self.events.emit("resync-started", side="source", blocks=self.resync_total,
                             kib=self.resync_total * BLOCK // 1024, full=out.full,
                             role=self.role, cstate=self.cstate, dstate=self.dstate)
            return True
        if out.action == "target":
            f = link.recv()
            if f.type != wire.SYNC_UUID:
                raise wire.WireError("expected sync UUID")
            md.set_uuids(current=f.json()["uuid"] & ~1, bitmap=0)
            self.resync_total, self.resync_done = md.dirty_blocks, 0
            self.resync_started = time.monotonic()
            self.set_state(cstate="SyncTarget", dstate="Inconsistent", pdsk="UpToDate")
            self.events.emit("resync-started", side="target", blocks=self.resync_total,
                             kib=self.resync_total * BLOCK // 1024, full=out.full,
                             role=self.role, cstate=self.cstate, dstate=self.dstate)
        else:
            if md.sb.crashed_primary:
                md.sb.crashed_primary = False
                md.write_superblock()
            both_ok = self.dstate in ("UpToDate", "Consistent") and peer.disk in (
                "UpToDate", "Consistent")
            self.set_state(cstate="Connected",
                           dstate="UpToDate" if both_ok else self.dstate,
                           pdsk="UpToDate" if both_ok else peer.disk)
        return False

    def send_state(self) -> None:
        link = self.link
        if link is not None:
            try:
                link.send_json(wire.STATE, {"role": self.role, "disk": self.dstate})
            except OSError as e:
                self.link_lost(link, f"send failed: {e}")

    def link_lost(self, link: wire.Link, reason: str) -> None:
        with self.lock:
            if self.link is not link:
                link.close()
                return
            self.link = None
            link.close()
            pend, self.pending = self.pending, {}
            was = self.cstate
        for p in pend.values():
            self._fail(p)
        self.log(f"connection lost ({reason})")
        md = self.md
        if (md is not None and self.role == "Primary" and md.sb.bitmap == 0
                and self.dstate == "UpToDate"):
            md.new_current_uuid(primary=True)
        if was == "SyncSource" and self.resync_total:
            self.last_resync = {"side": "source", "aborted": True,
                                "blocks": self.resync_done,
                                "kib": self.resync_done * BLOCK // 1024}
        self.set_state(cstate="WFConnection" if self.want_connect else "StandAlone",
                       peer_role="Unknown", pdsk="DUnknown")
        self.events.emit("connection-lost", reason=reason, role=self.role, cstate=self.cstate,
                         dstate=self.dstate, out_of_sync_kib=self.oos_kib)
        if self.role == "Primary" and self.dstate not in ("UpToDate", "Consistent"):
            self.run_handler("pri-on-incon-degr")

    def receiver(self, link: wire.Link) -> None:
        try:
            while True:
                f = link.recv()
                self.last_rx = time.monotonic()
                self.dispatch(link, f)
        except (OSError, wire.WireError, ValueError) as e:
            self.link_lost(link, f"{type(e).__name__}: {e}")

    def _bound_in_flight(self, limit: int = 2048) -> None:
        """Protocol A must not queue unboundedly in front of a slow peer."""
        while len(self.pending) > limit:
            with self.lock:
                oldest = next(iter(self.pending.values()), None)
            if oldest is None or not self._wait(oldest):
                return

    def _complete(self, seq: int, ok: bool, data: bytes = b"") -> None:
        with self.lock:
            p = self.pending.pop(seq, None)
        if p is None:
            return
        if not ok:
            self._fail(p)
            return
        p.settle(True, data)

    def dispatch(self, link: wire.Link, f: wire.Frame) -> None:
        t = f.type
        if t == wire.DATA and self.res.protocol == "B":
            link.send(wire.ACK, b"", f.seq)  # protocol B: acknowledged on receipt
            if self.fd is not None:
                self._pwrite(f.payload, f.offset)
        elif t == wire.DATA or t == wire.RS_DATA:
            ok = self._pwrite(f.payload, f.offset) if self.fd is not None else False
            md = self.md
            blocks = range(f.offset // BLOCK, (f.offset + len(f.payload) + BLOCK - 1) // BLOCK)
            if t == wire.RS_DATA:
                if ok and md is not None:
                    md.clear_blocks(blocks)
                    self.resync_done += len(blocks)
                link.send(wire.RS_ACK, len(f.payload).to_bytes(8, "big"), f.seq, f.offset)
            else:
                link.send(wire.ACK if ok else wire.NEG_ACK, b"", f.seq)
                if ok:
                    self._start_writeback(f.offset, len(f.payload))
        elif t == DISCARD:
            if self.fd is not None:
                _punch(self.fd, f.offset, int.from_bytes(f.payload, "big"))
            link.send(wire.ACK, b"", f.seq)
        elif t == wire.FLUSH:
            ok = True
            if self.fd is not None and self.image_sync:
                try:
                    os.fdatasync(self.fd)
                except OSError:
                    ok = False
            link.send(wire.ACK if ok else wire.NEG_ACK, b"", f.seq)
        elif t == wire.ACK:
            self._complete(f.seq, True)
        elif t == wire.NEG_ACK:
            self._complete(f.seq, False)
        elif t == wire.RS_ACK:
            n = int.from_bytes(f.payload, "big")
            if self.md is not None:
                self.md.clear_blocks(range(f.offset // BLOCK, (f.offset + n) // BLOCK))
            self.resync_done += n // BLOCK
            win = self.resync_window
            if win is not None and win[0] is link:
                win[1].release()
        elif t == wire.RS_DONE:
            self.finish_resync_target(f.json())
        elif t == wire.STATE:
            s = f.json()
            self.set_state(peer_role=s["role"], pdsk=s["disk"])
        elif t == wire.PING:
            link.send(wire.PING_ACK, b"", f.seq)
        elif t == wire.PING_ACK:
            if f.seq:
                self._complete(f.seq, True)
        elif t == wire.READ_REQ:
            n = int.from_bytes(f.payload, "big")
            data = os.pread(self.fd, n, f.offset) if self.fd is not None else b""
            link.send(wire.READ_REPLY if self.fd is not None else wire.NEG_ACK, data, f.seq)
        elif t == wire.READ_REPLY:
            self._complete(f.seq, True, f.payload)
        elif t == wire.DISCONNECT:
            raise wire.WireError("peer disconnected")
        else:
            raise wire.WireError(f"unexpected frame type {t}")

    def resync_sender(self, link: wire.Link, window: threading.Semaphore) -> None:
        md = self.md
        assert md is not None
        dirty = md.dirty_list()
        i = 0
        last_progress = time.monotonic()
        try:
            while i < len(dirty):
                start = dirty[i]
                j = i + 1
                while j < len(dirty) and dirty[j] == dirty[j - 1] + 1 and j - i < \
                        RESYNC_CHUNK_BLOCKS:
                    j += 1
                n = j - i
                while not window.acquire(timeout=self.res.timeout_s):
                    if time.monotonic() - self.last_rx > self.res.timeout_s:
                        self.link_lost(link, "resync: peer did not answer within timeout")
                        return
                    if self.link is not link:
                        return
                if self.link is not link:
                    window.release()
                    return
                with self.io_lock:
                    fd = self.fd
                    if fd is None:
                        raise OSError(errno.EIO, "diskless during resync")
                    data = os.pread(fd, n * BLOCK, start * BLOCK)
                    link.send(wire.RS_DATA, data, 0, start * BLOCK)
                i = j
                if time.monotonic() - last_progress >= 1.0:
                    last_progress = time.monotonic()
                    self.events.emit("resync-progress", side="source",
                                     done_kib=self.resync_done * BLOCK // 1024,
                                     total_kib=self.resync_total * BLOCK // 1024,
                                     role=self.role, cstate=self.cstate, dstate=self.dstate)
            for _ in range(RESYNC_WINDOW):  # wait until every chunk was acknowledged
                while not window.acquire(timeout=self.res.timeout_s):
                    if self.link is not link:
                        return
                    if time.monotonic() - self.last_rx > self.res.timeout_s:
                        self.link_lost(link, "resync: peer did not answer within timeout")
                        return
            for _ in range(RESYNC_WINDOW):
                window.release()
        except OSError as e:
            self.link_lost(link, f"resync: {e}")
            return
        md.write_bitmap()
        md.clear_bitmap_uuid()
        if md.sb.crashed_primary:
            md.sb.crashed_primary = False
            md.write_superblock()
        elapsed = time.monotonic() - self.resync_started
        self.last_resync = {"side": "source", "blocks": self.resync_total,
                            "kib": self.resync_total * BLOCK // 1024,
                            "seconds": round(elapsed, 3)}
        self.set_state(cstate="Connected", pdsk="UpToDate")
        link.send_json(wire.RS_DONE, {"current": md.sb.current, "history": md.sb.history})
        self.events.emit("resync-finished", **self.last_resync, role=self.role,
                         cstate=self.cstate, dstate=self.dstate, out_of_sync_kib=self.oos_kib)

    def finish_resync_target(self, src: dict[str, Any]) -> None:
        md = self.md
        if md is None or self.fd is None:
            return
        os.fdatasync(self.fd)
        md.clear_blocks(range(md.blocks))
        md.write_bitmap()
        md.set_uuids(current=(src["current"] & ~1) | (1 if self.role == "Primary" else 0),
                     bitmap=0, history=(src["history"][0], src["history"][1]))
        if md.sb.crashed_primary:
            md.sb.crashed_primary = False
            md.write_superblock()
        elapsed = time.monotonic() - self.resync_started
        self.last_resync = {"side": "target", "blocks": self.resync_total,
                            "kib": self.resync_total * BLOCK // 1024,
                            "seconds": round(elapsed, 3)}
        self.set_state(cstate="Connected", dstate="UpToDate", pdsk="UpToDate")
        self.events.emit("resync-finished", **self.last_resync, role=self.role,
                         cstate=self.cstate, dstate=self.dstate, out_of_sync_kib=self.oos_kib)

    def _overdue(self) -> None:
        """Requests answer asynchronously, so no writer times its own: drop a peer that left
        the oldest request unanswered for ``timeout`` (silent) or ``ko-count`` timeouts."""
        link = self.link
        with self.lock:
            oldest = next(iter(self.pending.values()), None)
        if link is None or oldest is None or oldest.link is not link:
            return
        age = time.monotonic() - oldest.sent
        if age < self.res.timeout_s:
            return
        if self.last_rx <= oldest.sent:
            self.link_lost(link, "peer did not answer within timeout")
        elif age >= self.res.timeout_s * max(self.res.ko_count, 1):
            self.link_lost(link, f"ko-count {int(age // self.res.timeout_s)} reached")

    def pinger(self) -> None:
        while not self.stopping:
            time.sleep(0.1)
            self._overdue()
            link = self.link
            if link is None:
                continue
            idle = time.monotonic() - self.last_rx
            busy = bool(self.pending) or self.cstate == "SyncSource"
            interval = min(self.res.ping_int_s, self.res.timeout_s / 2) if busy \
                else self.res.ping_int_s
            if idle < interval:
                continue
            sent = time.monotonic()
            try:
                link.send(wire.PING)
            except OSError as e:
                self.link_lost(link, f"ping: {e}")
                continue
            wait = self.res.timeout_s if busy else self.res.ping_timeout_s
            while time.monotonic() - sent < wait and self.link is link:
                if self.last_rx >= sent:
                    break
                time.sleep(0.02)
                self._overdue()
            else:
                if self.link is link and self.last_rx < sent:
                    self.link_lost(link, "PingAck did not arrive in time")

    # == roles ====================================================================================
    def _busy(self) -> str | None:
        if self.loop_dev is None:
            return None
        holder = self.holder.pid if self.holder is not None else None
        return device.in_use(self.loop_dev, exclude=holder)

    def primary(self, force: bool) -> None:
        # a role change waits for a handshake in flight, as DRBD serialises state changes
        deadline = time.monotonic() + max(self.res.timeout_s, 1.0)
        while self.cstate == "WFReportParams" and time.monotonic() < deadline:
            time.sleep(0.02)
        with self.lock:
            if self.role == "Primary":
                return
            if self.md is None or self.dstate == "Diskless":
                raise CommandError(17, "State change failed: (-2) Need access to UpToDate data")
            if self.peer_role == "Primary" and self.res.net_opt("allow-two-primaries") != "yes":
                raise CommandError(11, "State change failed: (-1) Multiple primaries not "
                                       "allowed by config")
            if not force and (self.cstate == "SyncTarget"
                              or self.dstate in ("Inconsistent", "Outdated")):
                raise CommandError(17, "State change failed: (-2) Need access to UpToDate data")
            md = self.md
            was_connected = self.connected()
            if force or (not was_connected and md.sb.bitmap == 0):
                md.new_current_uuid(primary=True)
            self.role = "Primary"
            md.set_primary_flag(True)
        try:
            self._expose()
        except (OSError, device.DeviceError) as e:
            with self.lock:
                self.role = "Secondary"
                md.set_primary_flag(False)
            raise CommandError(10, f"cannot expose {self.me.device}: {e}") from e
        if (force and self.dstate != "UpToDate") or self.dstate == "Consistent":
            self.set_state(dstate="UpToDate")
        self.log("role Primary")
        self.emit("change")
        self.send_state()
        if force and was_connected and self.pdsk in ("Inconsistent", "Outdated", "UpToDate"):
            # --overwrite-data-of-peer: reconnect so the handshake starts a full sync from here
            md.set_all()
            link = self.link
            if link is not None:
                self.link_lost(link, "overwrite-data-of-peer: forcing full sync")

    def secondary(self) -> None:
        with self.lock:
            if self.role != "Primary":
                return
            why = self._busy()
            if why is not None:
                raise CommandError(11, "State change failed: (-12) Device is held open by "
                                       "someone")
        self._demote()
        self.send_state()

    def _demote(self) -> None:
        self._unexpose()
        with self.lock:
            self.role = "Secondary"
            if self.md is not None:
                self.md.set_primary_flag(False)
        self.log("role Secondary")
        self.emit("change")

    def _expose(self) -> None:
        """A self-clearing loop device held by ``loopholder``, then ``/dev/drbdN`` over it."""
        holder = subprocess.Popen([sys.executable, "-m", "lab.replicator.loopholder",
                                   self.fuse_file], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stderr is not None
        loop = holder.stdout.readline().strip()
        if not loop.startswith("/dev/loop"):
            holder.wait(10)
            raise device.DeviceError(f"loop device over {self.fuse_file}: "
                                     f"{holder.stderr.read().strip()[-300:]}")
        self.holder = holder
        backing = device.loop_backing(loop) or self.fuse_file
        if self.records:
            _record(self.records, {"kind": "loop", "device": loop, "backing": backing,
                                   "node": self.hostname, "resource": self.res.name})
        self.loop_dev = loop
        device.make_block_node(self.me.device, loop)

    def _unexpose(self) -> None:
        loop, self.loop_dev = self.loop_dev, None
        holder, self.holder = self.holder, None
        device.make_secondary_node(self.me.device, self.fuse_file)
        if holder is not None:
            holder.terminate()  # our own child, by its Popen: autoclear detaches the loop
            holder.wait(10)
        if loop is not None and device.loop_backing(loop) == self.fuse_file:
            device.detach_loop(loop)  # still bound (autoclear raced an opener): detach now

    # == control ==================================================================================
    def control_server(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ctl_path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.ctl_path)
        os.chmod(self.ctl_path, 0o600)
        srv.listen(8)
        while not self.stopping:
            conn, _ = srv.accept()
            threading.Thread(target=self.serve_control, args=(conn,), daemon=True).start()

    def serve_control(self, conn: socket.socket) -> None:
        with conn:
            buf = wire.recv_line(conn)
            if not buf:
                return
            req = json.loads(buf)
            try:
                out = self.command(req)
                reply: dict[str, Any] = {"rc": 0, "state": self.state(), **out}
            except CommandError as e:
                reply = {"rc": e.rc, "err": str(e), "state": self.state()}
            except Exception as e:  # report, never crash the daemon on a bad request
                reply = {"rc": 20, "err": f"{type(e).__name__}: {e}", "state": self.state()}
            conn.sendall(json.dumps(reply).encode() + b"\n")
            if req.get("cmd") == "down" and reply["rc"] == 0:
                self.shutdown()

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "status":
            return {}
        if cmd == "primary":
            self.primary(bool(req.get("force")))
        elif cmd == "secondary":
            self.secondary()
        elif cmd == "connect":
            if self.md is None:
                raise CommandError(10, "Failure: (138) Device has no disk")
            with self.lock:
                self.discard_my_data = bool(req.get("discard_my_data"))
                if self.want_connect:
                    return {}
                self.want_connect = True
            self.set_state(cstate="WFConnection")
        elif cmd == "disconnect":
            with self.lock:
                self.want_connect = False
                link = self.link
            if link is not None:
                with contextlib.suppress(OSError):
                    link.send(wire.DISCONNECT)
                self.link_lost(link, "disconnect requested")
            self.set_state(cstate="StandAlone")
        elif cmd == "detach":
            if self.role == "Primary" and not self.connected():
                raise CommandError(11, "State change failed: (-2) Need access to UpToDate "
                                       "data")
            self.detach("detach requested")
        elif cmd == "attach":
            if self.fd is None:
                self.attach()
        elif cmd == "invalidate":
            if not self.connected() or self.pdsk != "UpToDate":
                raise CommandError(11, "State change failed: (-15) Need a connection to start "
                                       "verify or resync")
            md = self.md
            assert md is not None
            md.set_all()
            self.set_state(dstate="Inconsistent")
            link = self.link
            if link is not None:
                self.link_lost(link, "invalidate: resync from peer")
        elif cmd == "ping":  # round trips through the same path a write takes, for the bench
            rtts = []
            for _ in range(int(req.get("count", 100))):
                link = self.link
                if link is None:
                    raise CommandError(10, "not connected")
                t0 = time.perf_counter()
                if not self._wait(self._send_request(link, wire.PING, b"", 0, range(0))):
                    raise CommandError(10, "ping failed")
                rtts.append((time.perf_counter() - t0) * 1000)
            rtts.sort()
            return {"rtt_ms": {"median": round(rtts[len(rtts) // 2], 3),
                               "p99": round(rtts[int(len(rtts) * 0.99)], 3)}}
        elif cmd == "threads":  # diagnostics: where every thread is right now
            import traceback

            frames = sys._current_frames()
            return {"threads": {t.name: "".join(traceback.format_stack(frames[t.ident])[-6:])
                                for t in threading.enumerate() if t.ident in frames}}
        elif cmd == "io-error":
            self.io_error_injected = bool(req.get("on", True))
        elif cmd == "down":
            if self.role == "Primary":
                self.secondary()
            self.command({"cmd": "disconnect"})
        else:
            raise CommandError(20, f"unknown command {cmd!r}")
        return {}

    def shutdown(self) -> None:
        self.stopping = True
        device.remove_node(self.me.device)
        self.events.emit("down", role=self.role, cstate="Unconfigured", dstate="Unconfigured")
        os.kill(os.getpid(), signal.SIGTERM)  # the FUSE loop leaves and unmounts

    # == main =====================================================================================
    def serve(self, connect: bool) -> None:
        _unmount_stale(self.mnt)
        os.makedirs(self.mnt, exist_ok=True)
        self.attach()
        self.emit("exists")
        threading.Thread(target=self.control_server, daemon=True, name="control").start()
        threading.Thread(target=self.connector, daemon=True, name="connector").start()
        threading.Thread(target=self.pinger, daemon=True, name="pinger").start()
        device.make_secondary_node(self.me.device, self.fuse_file)
        if connect:
            self.command({"cmd": "connect"})
        self.fuse.serve()  # until ``down`` sends SIGTERM
        self.log("FUSE loop ended")
        self.stopping = True


def _libc_sync_file_range() -> Any:
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except AttributeError:
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


SYNC_FILE_RANGE_WRITE = 2
# HAPAIR_REPL_EARLY_WRITEBACK=0 leaves writes in the page cache until the flush (comparison)
_sync_file_range = (_libc_sync_file_range()
                    if os.environ.get("HAPAIR_REPL_EARLY_WRITEBACK", "1") != "0" else None)


def _punch(fd: int, offset: int, length: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        os.pwrite(fd, bytes(length), offset)  # no hole punching here: write the zeros


def _record(path: str, entry: dict[str, Any]) -> None:
    """Append to the lab's cleanup journal (same format as lab.state.Records)."""
    line = json.dumps(entry, sort_keys=True) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _unmount_stale(mnt: str) -> None:
    """A daemon killed with -9 leaves its FUSE mount behind ("Transport endpoint...")."""
    with open("/proc/self/mounts") as f:
        if f" {mnt} " in f.read():
            subprocess.run(["umount", "-l", mnt], capture_output=True)


def private_mount_namespace() -> None:
    """Leave the node's mount namespace for a private copy, before any thread exists.

    Why: if the daemon held the node's namespace, its own exit could be the one that tears it
    down, unmounting the ext4 on /dev/drbdN -- whose final flush goes through the loop device to
    this very FUSE server, which is exiting: an unkillable D-state wait. In a copy made before
    anything is mounted on the device, the daemon's exit never unmounts that filesystem. The
    FUSE mount still appears in the node: ``drbdadm`` made ``/run/drbd`` a shared mount, so the
    mount under it propagates back to the node's namespace.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resource", required=True)
    ap.add_argument("--config-dir", default="/etc/drbd.d")
    ap.add_argument("--no-connect", action="store_true")
    ap.add_argument("--records", default=os.environ.get("HAPAIR_LAB_RECORDS"))
    args = ap.parse_args(argv)
    # FUSE workers, the receiver and the resync sender hand work to each other constantly: a
    # short GIL switch interval keeps a woken thread from waiting out another's time slice
    sys.setswitchinterval(float(os.environ.get("HAPAIR_REPL_SWITCH_INTERVAL", "0.0002")))
    private_mount_namespace()
    res = load_dir(args.config_dir)[args.resource]
    r = Replicator(res, socket.gethostname(), args.records)
    os.makedirs(RUN_DIR, exist_ok=True)
    r.serve(connect=not args.no_connect)
    return 0


if __name__ == "__main__":
    sys.exit(main())
