"""Online verify (``drbdadm verify``): compare every block's digest with the peer's.

Why each side reads its copy when it does: application writes reach the Secondary in the
order they cross the wire. A Primary source reads a chunk and sends the request under the I/O
lock, so no write lands between its read and the Secondary's (which the request, behind every
earlier write on the wire, triggers). A Secondary source reads its chunk when the reply comes
in, behind every write the Primary sent before replying. (A Primary target can still, rarely,
reply for a chunk whose write it sent but has not yet written locally: a false positive,
which costs a block of resync, never a missed difference.) Blocks that differ are marked out
of sync on both nodes (as DRBD 8.4 does) but not resynced: that takes a disconnect/connect,
as DRBD's documentation says.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from lab.replicator import wire
from lab.replicator.control import CommandError
from lab.replicator.metadata import BLOCK

if TYPE_CHECKING:
    from lab.replicator.core import Replicator

CHUNK_BLOCKS = 64  # 256 KiB per request
WINDOW = 16


def digests(alg: str, data: bytes, blocks: int) -> list[bytes]:
    return [hashlib.new(alg, data[i * BLOCK:(i + 1) * BLOCK]).digest() for i in range(blocks)]


def _alg(name: str) -> str:
    return name.lower().replace("-", "")


class Verify:
    def __init__(self, r: Replicator) -> None:
        self.r = r
        self.alg = ""
        self.total = 0  # blocks
        self.done = 0
        self.found: list[int] = []
        self.started = 0.0
        self.last: dict[str, Any] = {}
        # request offset -> our digests (None: read when the reply comes, see above)
        self.expected: dict[int, list[bytes] | None] = {}
        self.window: tuple[wire.Link, threading.Semaphore] | None = None

    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {}
        if self.r.cstate in ("VerifyS", "VerifyT"):
            st["verify"] = {"total_kib": self.total * BLOCK // 1024,
                            "done_kib": self.done * BLOCK // 1024}
        if self.last:
            st["last_verify"] = self.last
        return st

    # == source ===================================================================================
    def start(self) -> None:
        """The ``verify`` command: refused like DRBD 8.4 refuses it."""
        r = self.r
        alg = r.res.net.get("verify-alg", "")
        with r.lock:
            md, link = r.md, r.conn.link
            if md is None:
                raise CommandError(11, "State change failed: (-11) Device is diskless, the "
                                       "requested operation requires a disk")
            if link is None or not r.connected():
                raise CommandError(11, "State change failed: (-15) Need a connection to start "
                                       "verify or resync")
            if r.cstate != "Connected":
                raise CommandError(11, "State change failed: (-8) Can not start OV/resync "
                                       "since it is already active")
            if not alg or _alg(alg) not in hashlib.algorithms_available:
                raise CommandError(11, "State change failed: (-14) Need a verify algorithm to "
                                       "start online verify")
            self._begin(_alg(alg), md.blocks, "VerifyS")
        link.send_json(wire.OV_START, {"alg": self.alg, "blocks": self.total})
        window = threading.Semaphore(WINDOW)
        self.window = (link, window)
        threading.Thread(target=self._sender, args=(link, window), daemon=True,
                         name="verify").start()

    def _begin(self, alg: str, blocks: int, cstate: str) -> None:
        r = self.r
        self.alg, self.total, self.done, self.found = alg, blocks, 0, []
        self.expected = {}
        self.started = time.monotonic()
        r.set_state(cstate=cstate)
        r.log(f"Online Verify start sector: 0 ({cstate}, {blocks} blocks, {alg})")
        r.events.emit("verify-started", side="source" if cstate == "VerifyS" else "target",
                      blocks=blocks, alg=alg, role=r.role, cstate=r.cstate, dstate=r.dstate)

    def _sender(self, link: wire.Link, window: threading.Semaphore) -> None:
        r = self.r
        last_progress = time.monotonic()
        try:
            for start in range(0, self.total, CHUNK_BLOCKS):
                n = min(CHUNK_BLOCKS, self.total - start)
                if not r.resync.acquire(link, window) or r.cstate != "VerifyS":
                    return
                with r.io_lock:  # see the module's docstring
                    fd = r.fd
                    if fd is None:
                        raise OSError("diskless during verify")
                    if r.role == "Primary":
                        data = os.pread(fd, n * BLOCK, start * BLOCK)
                        self.expected[start * BLOCK] = digests(self.alg, data, n)
                    else:
                        self.expected[start * BLOCK] = None
                    link.send(wire.OV_REQ, n.to_bytes(8, "big"), 0, start * BLOCK)
                if time.monotonic() - last_progress >= 1.0:
                    last_progress = time.monotonic()
                    r.events.emit("verify-progress", side="source",
                                  done_kib=self.done * BLOCK // 1024,
                                  total_kib=self.total * BLOCK // 1024,
                                  role=r.role, cstate=r.cstate, dstate=r.dstate)
            for _ in range(WINDOW):  # every reply in
                if not r.resync.acquire(link, window):
                    return
        except OSError as e:
            r.conn.link_lost(link, f"verify: {e}")
            return
        if r.conn.link is not link or r.cstate != "VerifyS":
            return
        link.send_json(wire.OV_DONE, {"found": self.found})
        self._finished("source")

    def on_reply(self, link: wire.Link, f: wire.Frame) -> None:
        r = self.r
        size = hashlib.new(self.alg).digest_size
        mine = self.expected.pop(f.offset, [])
        if mine is None:
            data = r.disk.pread(len(f.payload) // size * BLOCK, f.offset)
            if data is None:
                raise wire.WireError("verify: local read failed")
            mine = digests(self.alg, data, len(f.payload) // size)
        theirs = [f.payload[i:i + size] for i in range(0, len(f.payload), size)]
        first = f.offset // BLOCK
        for i, digest in enumerate(mine):
            if i >= len(theirs) or theirs[i] != digest:
                self.found.append(first + i)
                if r.md is not None:
                    r.md.mark_dirty((first + i) * BLOCK, BLOCK)
        self.done += len(mine)
        win = self.window
        if win is not None and win[0] is link:
            win[1].release()

    # == target ===================================================================================
    def on_start(self, _link: wire.Link, f: wire.Frame) -> None:
        p = f.json()
        self._begin(p["alg"], int(p["blocks"]), "VerifyT")

    def on_request(self, link: wire.Link, f: wire.Frame) -> None:
        n = int.from_bytes(f.payload, "big")
        data = self.r.disk.pread(n * BLOCK, f.offset)
        if data is None:
            raise wire.WireError("verify: local read failed")
        link.send(wire.OV_REPLY, b"".join(digests(self.alg, data, n)), f.seq, f.offset)
        self.done += n

    def on_done(self, _link: wire.Link, f: wire.Frame) -> None:
        md = self.r.md
        self.found = [int(b) for b in f.json()["found"]]
        if md is not None:
            for block in self.found:
                md.mark_dirty(block * BLOCK, BLOCK)
        self._finished("target")

    def _finished(self, side: str) -> None:
        """DRBD's kernel log lines, the event, and the ``out-of-sync`` handler if any."""
        r = self.r
        secs = max(time.monotonic() - self.started, 0.001)
        kib = self.total * BLOCK // 1024
        self.last = {"side": side, "blocks": self.total, "oos_blocks": len(self.found),
                     "oos_kib": len(self.found) * BLOCK // 1024, "seconds": round(secs, 3)}
        r.set_state(cstate="Connected")
        r.log(f"Online verify done (total {int(secs)} sec; paused 0 sec; {int(kib / secs)} "
              "K/sec)")
        oos = r.md.dirty_blocks if r.md is not None else 0
        if oos:
            r.log(f"Online verify found {oos} {BLOCK // 1024}k block out of sync!")
        r.events.emit("verify-finished", **self.last, role=r.role, cstate=r.cstate,
                      dstate=r.dstate, out_of_sync_kib=r.oos_kib)
        if oos:
            r.run_handler("out-of-sync")

    def aborted(self) -> None:
        r = self.r
        self.last = {"side": "source" if r.cstate == "VerifyS" else "target", "aborted": True,
                     "blocks": self.done, "oos_blocks": len(self.found)}
        r.log("Online verify aborted (connection lost)")
