"""The node's own copy: the backing image, its metadata, and what an I/O error on it does.

Only pread/pwrite/fdatasync (and hole punching) on the image -- never the loop device or a
mount over it, which would wait on this very daemon.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from typing import TYPE_CHECKING, Any

from lab.replicator.metadata import Metadata

if TYPE_CHECKING:
    from lab.replicator.core import Replicator

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
SYNC_FILE_RANGE_WRITE = 2


def _libc_function(name: str, *argtypes: Any) -> Any:
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except AttributeError:
        return None
    fn.argtypes = list(argtypes)
    return fn


_fallocate = _libc_function("fallocate", ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                            ctypes.c_int64)
# HAPAIR_REPL_EARLY_WRITEBACK=0 leaves writes in the page cache until the flush (comparison)
_sync_file_range = (_libc_function("sync_file_range", ctypes.c_int, ctypes.c_int64,
                                   ctypes.c_int64, ctypes.c_uint)
                    if os.environ.get("HAPAIR_REPL_EARLY_WRITEBACK", "1") != "0" else None)


class LocalDisk:
    def __init__(self, r: Replicator) -> None:
        self.r = r
        self.io_error_injected = False
        # fdatasync the image on flushes (default). The lab's faults kill nodes, not the host,
        # and a node's crash never loses what reached the host's page cache; "0" keeps the
        # flush a round trip that waits until the peer has written everything before it.
        self.image_sync = os.environ.get("HAPAIR_REPL_IMAGE_SYNC", "1") != "0"

    def attach(self) -> None:
        r = self.r
        fd = os.open(r.me.disk, os.O_RDWR)
        size = os.fstat(fd).st_size
        if stat.S_ISBLK(os.fstat(fd).st_mode):
            size = os.lseek(fd, 0, os.SEEK_END)
        md = Metadata.load(fd, size)
        crashed = md.attach_recovery()
        with r.lock:
            r.fd, r.md, r.size = fd, md, md.data_size
        disk_state = md.sb.disk
        if disk_state == "UpToDate":
            disk_state = "Consistent"  # DRBD attaches an up-to-date disk as Consistent
        if crashed:
            r.log(f"crashed primary: {md.dirty_blocks} blocks of the activity log marked")
        r.set_state(dstate=disk_state)

    def detach(self, reason: str = "detach") -> None:
        r = self.r
        with r.lock:
            fd, r.fd = r.fd, None
            r.md = None
            r.dstate = "Diskless"
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        r.log(f"detached ({reason})")
        r.emit("change", reason=reason)
        r.conn.send_state()

    def io_error(self, what: str) -> None:
        """``on-io-error``: pass it on, call the handler, or detach (DRBD's choices)."""
        r = self.r
        policy = r.res.disk.get("on-io-error", "pass_on")
        r.log(f"local I/O error on {what}; on-io-error {policy}")
        r.events.emit("io-error", what=what, policy=policy, role=r.role,
                      cstate=r.cstate, dstate=r.dstate)
        if policy in ("detach", "call-local-io-error"):
            r.run_handler("local-io-error")
        if policy == "detach":
            self.detach("io-error")

    def pwrite(self, data: bytes | memoryview, offset: int) -> bool:
        """Local write; False if the disk failed (and the policy took over)."""
        fd = self.r.fd
        if fd is None:
            return False
        try:
            if self.io_error_injected:
                raise OSError(errno.EIO, "injected I/O error")
            os.pwrite(fd, data, offset)
            return True
        except OSError:
            self.io_error("write")
            return False

    def pread(self, size: int, offset: int) -> bytes | None:
        """None if the disk failed (and the policy took over)."""
        fd = self.r.fd
        if fd is None:
            return None
        try:
            if self.io_error_injected:
                raise OSError(errno.EIO, "injected I/O error")
            return os.pread(fd, size, offset)
        except OSError:
            self.io_error("read")
            return None

    def flush(self) -> bool:
        fd = self.r.fd
        if fd is None or not self.image_sync:
            return True
        try:
            os.fdatasync(fd)
            return True
        except OSError:
            return False

    def start_writeback(self, offset: int, length: int) -> None:
        """Hand the write to the host disk now, as a block device would, instead of leaving
        it in the page cache until the next flush: the flush then finds the work (block
        allocation included) mostly done on both nodes, rather than doing all of it twice at
        once on a host disk both images share. Durability still comes only from the flush."""
        fd = self.r.fd
        if fd is not None and _sync_file_range is not None:
            _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)

    def punch(self, offset: int, length: int) -> None:
        """Discard: deallocate the range (reads return zeros afterwards)."""
        fd = self.r.fd
        if fd is None:
            return
        if _fallocate is None or _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                            offset, length) != 0:
            os.pwrite(fd, bytes(length), offset)  # no hole punching here: write the zeros
