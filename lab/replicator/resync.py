"""Bitmap resync: the source sends every out-of-sync block, the target writes and clears it.

Why a window of RS_ACKs: the source must not outrun a slow target (its socket buffers fill
and application writes would queue behind the resync), yet a round trip per chunk is slow;
DRBD paces with its own controller, a fixed window of chunks in flight is enough here.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from lab.replicator import wire
from lab.replicator.metadata import BLOCK, Metadata

if TYPE_CHECKING:
    from lab.replicator.core import Replicator

CHUNK_BLOCKS = 64  # 256 KiB per resync frame
WINDOW = 16
UUID_NEW_BM_OFFSET = 1 << 48


class Resync:
    def __init__(self, r: Replicator) -> None:
        self.r = r
        self.total = 0
        self.done = 0
        self.started = 0.0
        self.last: dict[str, Any] = {}
        # (link, window) of the running resync: RS_ACKs of an older link never count
        self.window: tuple[wire.Link, threading.Semaphore] | None = None

    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {}
        if self.r.cstate in ("SyncSource", "SyncTarget"):
            st["resync"] = {"total_kib": self.total * BLOCK // 1024,
                            "done_kib": self.done * BLOCK // 1024}
        if self.last:
            st["last_resync"] = self.last
        return st

    def _started(self, side: str, full: bool) -> None:
        r = self.r
        r.events.emit("resync-started", side=side, blocks=self.total,
                      kib=self.total * BLOCK // 1024, full=full,
                      role=r.role, cstate=r.cstate, dstate=r.dstate)

    def begin_source(self, link: wire.Link, md: Metadata, full: bool) -> None:
        """A new bitmap UUID for this sync, sent to the target (DRBD's sync UUID)."""
        r = self.r
        uuid = md.sb.bitmap
        uuid = uuid + UUID_NEW_BM_OFFSET if uuid and uuid != 4 else random.getrandbits(64)
        md.set_uuids(bitmap=uuid)
        link.send_json(wire.SYNC_UUID, {"uuid": uuid})
        self.total, self.done = md.dirty_blocks, 0
        self.started = time.monotonic()
        r.set_state(cstate="SyncSource", pdsk="Inconsistent")
        if r.dstate == "Consistent":
            r.set_state(dstate="UpToDate")
        self._started("source", full)

    def begin_target(self, md: Metadata, uuid: int, full: bool) -> None:
        md.set_uuids(current=uuid & ~1, bitmap=0)
        self.total, self.done = md.dirty_blocks, 0
        self.started = time.monotonic()
        self.r.set_state(cstate="SyncTarget", dstate="Inconsistent", pdsk="UpToDate")
        self._started("target", full)

    def on_sync_uuid(self, _link: wire.Link, f: wire.Frame) -> None:
        """A resync started on a live link (new storage after an online grow)."""
        md = self.r.md
        if md is not None:
            self.begin_target(md, f.json()["uuid"], False)

    def aborted(self) -> None:
        if self.total:
            self.last = {"side": "source", "aborted": True, "blocks": self.done,
                         "kib": self.done * BLOCK // 1024}

    def _finished(self, side: str) -> None:
        self.last = {"side": side, "blocks": self.total, "kib": self.total * BLOCK // 1024,
                     "seconds": round(time.monotonic() - self.started, 3)}

    # == source ===================================================================================
    def start_sender(self, link: wire.Link) -> None:
        window = threading.Semaphore(WINDOW)
        self.window = (link, window)
        threading.Thread(target=self.sender, args=(link, window), daemon=True,
                         name="resync").start()

    def acquire(self, link: wire.Link, window: threading.Semaphore) -> bool:
        """A window slot; False if the link went (or the target stopped answering)."""
        r = self.r
        while not window.acquire(timeout=r.res.timeout_s):
            if r.conn.link is not link:
                return False
            if time.monotonic() - r.conn.last_rx > r.res.timeout_s:
                r.conn.link_lost(link, "resync: peer did not answer within timeout")
                return False
        return True

    def sender(self, link: wire.Link, window: threading.Semaphore) -> None:
        r = self.r
        md = r.md
        assert md is not None
        dirty = md.dirty_list()
        i = 0
        last_progress = time.monotonic()
        try:
            while i < len(dirty):
                start = dirty[i]
                j = i + 1
                while j < len(dirty) and dirty[j] == dirty[j - 1] + 1 and j - i < CHUNK_BLOCKS:
                    j += 1
                if not self.acquire(link, window):
                    return
                if r.conn.link is not link:
                    window.release()
                    return
                with r.io_lock:
                    fd = r.fd
                    if fd is None:
                        raise OSError(errno.EIO, "diskless during resync")
                    data = os.pread(fd, (j - i) * BLOCK, start * BLOCK)
                    link.send(wire.RS_DATA, data, 0, start * BLOCK)
                i = j
                if time.monotonic() - last_progress >= 1.0:
                    last_progress = time.monotonic()
                    r.events.emit("resync-progress", side="source",
                                  done_kib=self.done * BLOCK // 1024,
                                  total_kib=self.total * BLOCK // 1024,
                                  role=r.role, cstate=r.cstate, dstate=r.dstate)
            for _ in range(WINDOW):  # wait until every chunk was acknowledged
                if not self.acquire(link, window):
                    return
            for _ in range(WINDOW):
                window.release()
        except OSError as e:
            r.conn.link_lost(link, f"resync: {e}")
            return
        md.write_bitmap()
        md.clear_bitmap_uuid()
        if md.sb.crashed_primary:
            md.sb.crashed_primary = False
            md.write_superblock()
        self._finished("source")
        r.set_state(cstate="Connected", pdsk="UpToDate")
        link.send_json(wire.RS_DONE, {"current": md.sb.current, "history": md.sb.history})
        r.events.emit("resync-finished", **self.last, role=r.role, cstate=r.cstate,
                      dstate=r.dstate, out_of_sync_kib=r.oos_kib)

    def on_ack(self, link: wire.Link, f: wire.Frame) -> None:
        n = int.from_bytes(f.payload, "big")
        md = self.r.md
        if md is not None:
            md.clear_blocks(range(f.offset // BLOCK, (f.offset + n) // BLOCK))
        self.done += n // BLOCK
        win = self.window
        if win is not None and win[0] is link:
            win[1].release()

    # == target ===================================================================================
    def on_data(self, link: wire.Link, f: wire.Frame) -> None:
        r = self.r
        ok = r.disk.pwrite(f.payload, f.offset)
        md = r.md
        if ok and md is not None:
            blocks = range(f.offset // BLOCK, (f.offset + len(f.payload) + BLOCK - 1) // BLOCK)
            md.clear_blocks(blocks)
            self.done += len(blocks)
        link.send(wire.RS_ACK, len(f.payload).to_bytes(8, "big"), f.seq, f.offset)

    def finish_target(self, src: dict[str, Any]) -> None:
        r = self.r
        md = r.md
        if md is None or r.fd is None:
            return
        os.fdatasync(r.fd)
        md.clear_blocks(range(md.blocks))
        md.write_bitmap()
        md.set_uuids(current=(src["current"] & ~1) | (1 if r.role == "Primary" else 0),
                     bitmap=0, history=(src["history"][0], src["history"][1]))
        if md.sb.crashed_primary:
            md.sb.crashed_primary = False
            md.write_superblock()
        self._finished("target")
        r.set_state(cstate="Connected", dstate="UpToDate", pdsk="UpToDate")
        r.events.emit("resync-finished", **self.last, role=r.role, cstate=r.cstate,
                      dstate=r.dstate, out_of_sync_kib=r.oos_kib)
