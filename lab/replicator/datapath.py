"""Application I/O: what the FUSE file's reads, writes, flushes and discards do on both disks.

Why answers go through callbacks: a protocol-C write is done when the local write and the
peer's ACK are both in, and whichever thread delivers the last of them -- the FUSE reader after
its pwrite, or the link's receiver on the ACK -- answers the kernel there and then. Parking a
thread until the ACK came cost two thread wake-ups per write, most of the replicated disk's
latency on a small VM.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab.replicator import fusedev, wire
from lab.replicator.metadata import BLOCK

if TYPE_CHECKING:
    from lab.replicator.core import Replicator


class Join:
    """Runs ``finish`` once, in the thread that delivers the last of ``parts`` outcomes."""

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


class DataPath:
    """The FUSE file's operations (``fusedev.Device``) and the peer's side of them."""

    def __init__(self, r: Replicator) -> None:
        self.r = r
        # op -> [requests, bytes, seconds from the kernel's request to our answer], for the bench
        self.stats: dict[str, list[float]] = {"write": [0, 0, 0.0], "fsync": [0, 0, 0.0]}
        self.stats_lock = threading.Lock()

    def _count(self, op: str, nbytes: int, t0: float) -> None:
        dt = time.perf_counter() - t0
        with self.stats_lock:
            st = self.stats[op]
            st[0] += 1
            st[1] += nbytes
            st[2] += dt

    def io_stats(self) -> dict[str, dict[str, float]]:
        with self.stats_lock:
            return {op: {"count": int(c), "bytes": int(b), "ms": round(s * 1000, 3)}
                    for op, (c, b, s) in self.stats.items()}

    @property
    def size(self) -> int:
        return self.r.size

    def open_error(self) -> int:
        return 0 if self.r.role == "Primary" else errno.EMEDIUMTYPE  # DRBD: Secondary refuses

    # == this node's requests =====================================================================
    def write(self, data: memoryview, offset: int, done: fusedev.Reply) -> None:
        """Send to the peer, write locally, answer once both did (protocol C)."""
        t0 = time.perf_counter()
        r = self.r
        n = len(data)
        if offset + n > r.size:
            done(-errno.ENOSPC)
            return
        out: list[Any] = [None, False]  # the peer's Pending, the local outcome

        def finish() -> None:
            pend, local_ok = out
            if not local_ok and not (pend is not None and pend.ok):
                done(-errno.EIO)  # a failed peer request marked its blocks when it failed
                return
            if not local_ok and r.md is not None and r.dstate != "Diskless":
                r.md.mark_dirty(offset, n)
            done(n)
            self._count("write", n, t0)

        with r.io_lock:
            md = r.md
            if md is not None and r.role == "Primary":
                md.al_touch(offset, n)
            link = r.conn.link if r.connected() and r.pdsk != "Diskless" else None
            asynchronous = r.res.protocol == "A"
            join = Join(2 if link is not None and not asynchronous else 1, finish)
            if link is not None:  # send first: the peer writes while we write
                blocks = range(offset // BLOCK, (offset + max(n, 1) - 1) // BLOCK + 1)
                out[0] = r.conn.request(link, wire.DATA, data, offset, blocks,
                                        None if asynchronous else join.arrive)
            out[1] = r.disk.pwrite(data, offset)
            if out[1]:
                r.disk.start_writeback(offset, n)
                if link is None and md is not None:
                    md.mark_dirty(offset, n)
        if link is not None and asynchronous:
            # protocol A: done once written here and handed to TCP; a later NEG_ACK or a lost
            # link marks the blocks out of sync
            if out[1]:
                r.conn.bound_in_flight()
            else:
                r.conn.wait(out[0])
        join.arrive()

    def read(self, size: int, offset: int, done: Callable[[bytes | int], None]) -> None:
        r = self.r
        size = max(0, min(size, r.size - offset))
        if r.dstate not in ("Diskless", "Inconsistent"):
            data = r.disk.pread(size, offset)
            if data is not None:
                done(data)
                return
        link = r.conn.link if r.connected() else None
        if link is None:
            done(-errno.EIO)
            return
        r.conn.request(link, wire.READ_REQ, size.to_bytes(8, "big"), offset, range(0),
                       lambda p: done(p.data if p.ok else -errno.EIO))

    def fsync(self, done: fusedev.Reply) -> None:
        """Forward the flush first, then flush locally: both disks sync at the same time."""
        t0 = time.perf_counter()
        r = self.r
        link = r.conn.link if r.connected() else None
        wait_peer = link is not None and r.res.protocol != "A"  # A: the peer flushes later

        def finish() -> None:
            done(0)
            self._count("fsync", 0, t0)

        join = Join(2 if wait_peer else 1, finish)
        if link is not None:
            r.conn.request(link, wire.FLUSH, b"", 0, range(0),
                           join.arrive if wait_peer else None)
        if not r.disk.flush():
            r.disk.io_error("flush")
        join.arrive()

    def discard(self, offset: int, length: int) -> None:
        """Punch a hole locally and on the peer (ext4's discard at mkfs time)."""
        r = self.r
        length = max(0, min(length, r.size - offset))
        with r.io_lock:
            r.disk.punch(offset, length)
            link = r.conn.link if r.connected() else None
            pend = None
            if link is not None:
                blocks = range(offset // BLOCK, (offset + max(length, 1) - 1) // BLOCK + 1)
                pend = r.conn.request(link, wire.DISCARD, length.to_bytes(8, "big"), offset,
                                      blocks)
            elif r.md is not None:
                r.md.mark_dirty(offset, length)
        if pend is not None:
            r.conn.wait(pend)  # a failure marked the range out of sync

    # == the peer's requests ======================================================================
    def on_data(self, link: wire.Link, f: wire.Frame) -> None:
        r = self.r
        if r.res.protocol == "B":
            link.send(wire.ACK, b"", f.seq)  # protocol B: acknowledged on receipt
            r.disk.pwrite(f.payload, f.offset)
            return
        ok = r.disk.pwrite(f.payload, f.offset)
        link.send(wire.ACK if ok else wire.NEG_ACK, b"", f.seq)
        if ok:
            r.disk.start_writeback(f.offset, len(f.payload))

    def on_flush(self, link: wire.Link, f: wire.Frame) -> None:
        link.send(wire.ACK if self.r.disk.flush() else wire.NEG_ACK, b"", f.seq)

    def on_discard(self, link: wire.Link, f: wire.Frame) -> None:
        self.r.disk.punch(f.offset, int.from_bytes(f.payload, "big"))
        link.send(wire.ACK, b"", f.seq)

    def on_read(self, link: wire.Link, f: wire.Frame) -> None:
        data = self.r.disk.pread(int.from_bytes(f.payload, "big"), f.offset)
        if data is None:
            link.send(wire.NEG_ACK, b"", f.seq)
        else:
            link.send(wire.READ_REPLY, data, f.seq)
