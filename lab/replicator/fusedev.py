"""The replicated device as one file, served by speaking the kernel's FUSE protocol directly.

Why not libfuse (through mfusepy): its high-level loop calls a handler in a worker thread and
replies only when that handler returns, so a protocol-C write had to park the worker on an event
that the link's receiver thread set when the peer's ACK came in -- two thread wake-ups (and a
GIL hand-over) per write, on top of the round trip, which was most of the replicated disk's
latency. Here a request may be answered from any thread: the receiver answers a write the moment
the peer's ACK arrives (if the local write is done), and the reader thread never waits on the
network. Only the handful of opcodes a loop device over one regular file needs are served;
everything else gets ENOSYS, which the kernel remembers.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import stat
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

# opcodes (linux/fuse.h)
LOOKUP, FORGET, GETATTR, SETATTR = 1, 2, 3, 4
OPEN, READ, WRITE, STATFS, RELEASE, FSYNC, FLUSH, INIT = 14, 15, 16, 17, 18, 20, 25, 26
OPENDIR, READDIR, RELEASEDIR, INTERRUPT, DESTROY, BATCH_FORGET, FALLOCATE = 27, 28, 29, 36, 38, \
    42, 43

FUSE_ASYNC_READ = 1 << 0
FUSE_BIG_WRITES = 1 << 5
FUSE_ASYNC_DIO = 1 << 15
FUSE_WRITEBACK_CACHE = 1 << 16
FUSE_MAX_PAGES = 1 << 22
FATTR_SIZE = 1 << 3
FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2

MAX_WRITE = 1 << 20
ROOT, FILE = 1, 2
TTL = 1  # seconds the kernel may cache attributes and the name (libfuse's default)

IN_HEADER = struct.Struct("=IIQQIIIHH")
OUT_HEADER = struct.Struct("=IiQ")
ATTR = "QQQQQQIIIIIIIIII"
ENTRY_OUT = struct.Struct("=QQQQII" + ATTR)
ATTR_OUT = struct.Struct("=QII" + ATTR)
OPEN_OUT = struct.Struct("=QIi")
RW_IN = struct.Struct("=QQIIQII")  # fuse_read_in and fuse_write_in share the layout
WRITE_OUT = struct.Struct("=II")
SETATTR_IN = struct.Struct("=IIQQQQQQIIIIIIII")
FALLOCATE_IN = struct.Struct("=QQQII")
KSTATFS = struct.Struct("=QQQQQIIII6I")
INIT_IN = struct.Struct("=IIII")
INIT_OUT = struct.Struct("=IIIIHHIIHHI7I")
DIRENT = struct.Struct("=QQII")
NOTIFY_INVAL_INODE = 2
NOTIFY_INVAL = struct.Struct("=Qqq")  # ino, offset (-1: attributes only), length

Reply = Callable[[int], None]  # bytes written (>= 0) or -errno


class Device(Protocol):
    """What the file's owner provides; ``write``/``read``/``fsync`` answer through ``done``,
    from whichever thread learns the outcome last."""

    @property
    def size(self) -> int: ...

    def open_error(self) -> int: ...

    def write(self, data: memoryview, offset: int, done: Reply) -> None: ...

    def read(self, size: int, offset: int, done: Callable[[bytes | int], None]) -> None: ...

    def fsync(self, done: Reply) -> None: ...

    def discard(self, offset: int, length: int) -> None: ...


class Stop(Exception):
    """SIGTERM: leave the request loop and unmount."""


class FuseFile:
    """One regular file ``name`` in a directory mounted at ``mountpoint``."""

    def __init__(self, device: Device, mountpoint: str, name: str, fsname: str,
                 writeback: bool = False) -> None:
        self.device = device
        self.mountpoint = mountpoint
        self.name = name
        self.fsname = fsname
        self.writeback = writeback
        self.fd = -1
        self.mounted = threading.Event()

    # -- replies (any thread: each is one write(2) on /dev/fuse) --------------------------------
    def _send(self, unique: int, error: int = 0, *payload: bytes | memoryview) -> None:
        size = OUT_HEADER.size + sum(len(p) for p in payload)
        with contextlib.suppress(OSError):  # ENOENT: the request was aborted meanwhile
            os.writev(self.fd, [OUT_HEADER.pack(size, error, unique), *payload])

    def invalidate_attributes(self) -> None:
        """Make the kernel ask for the file's size again (after an online resize)."""
        with contextlib.suppress(OSError):  # ENOENT: the kernel holds no inode for it
            os.writev(self.fd, [OUT_HEADER.pack(OUT_HEADER.size + NOTIFY_INVAL.size,
                                                NOTIFY_INVAL_INODE, 0),
                                NOTIFY_INVAL.pack(FILE, -1, 0)])

    def answer(self, unique: int) -> Reply:
        def done(result: int) -> None:
            if result < 0:
                self._send(unique, result)
            else:
                self._send(unique, 0, WRITE_OUT.pack(result, 0))
        return done

    def _attr(self, node: int) -> tuple[int, ...]:
        now = int(time.time())
        if node == ROOT:
            return (ROOT, 0, 0, now, now, now, 0, 0, 0, stat.S_IFDIR | 0o755, 2, 0, 0, 0, 4096,
                    0)
        size = self.device.size
        return (FILE, size, size // 512, now, now, now, 0, 0, 0, stat.S_IFREG | 0o600, 1, 0, 0,
                0, 4096, 0)

    # -- the loop ---------------------------------------------------------------------------------
    def mount(self) -> None:
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        opts = (f"fd={self.fd},rootmode={stat.S_IFDIR:o},user_id=0,group_id=0,allow_other,"
                f"max_read={MAX_WRITE}")
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(self.fsname.encode(), self.mountpoint.encode(), b"fuse",
                      ctypes.c_ulong(MS_NOSUID | MS_NODEV), opts.encode()) != 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"mount fuse on {self.mountpoint}: {os.strerror(err)}")

    def unmount(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.umount2(self.mountpoint.encode(), MNT_DETACH)

    def serve(self) -> None:
        """Mount, answer requests until SIGTERM or the kernel ends the connection, unmount."""
        self.mount()

        stopping = False

        def stop(_sig: int, _frame: object) -> None:
            # once: a second SIGTERM (`drbdadm down` asks again) must not break the unmount
            nonlocal stopping
            if not stopping:
                stopping = True
                raise Stop()

        previous = signal.signal(signal.SIGTERM, stop)
        buf = bytearray(MAX_WRITE + 64 * 1024)
        view = memoryview(buf)
        try:
            while True:
                try:
                    n = os.readv(self.fd, [buf])
                except OSError as e:
                    if e.errno in (errno.ENOENT, errno.EAGAIN):
                        continue  # a request interrupted before we read it
                    if e.errno == errno.ENODEV:  # unmounted
                        return
                    raise
                if not self._handle(view[:n]):
                    return
        except Stop:
            pass
        finally:
            stopping = True
            self.unmount()
            os.close(self.fd)
            signal.signal(signal.SIGTERM, previous)

    def _handle(self, req: memoryview) -> bool:
        _len, op, unique, node, _uid, _gid, _pid, _ext, _pad = IN_HEADER.unpack_from(req)
        arg = req[IN_HEADER.size:]
        if op == WRITE:
            _fh, offset, size, _wf, _lo, _fl, _p = RW_IN.unpack_from(arg)
            self.device.write(arg[RW_IN.size:RW_IN.size + size], offset, self.answer(unique))
        elif op == READ:
            _fh, offset, size, _rf, _lo, _fl, _p = RW_IN.unpack_from(arg)
            if node == FILE:
                self.device.read(size, offset, lambda r: self._send(unique, r) if isinstance(
                    r, int) else self._send(unique, 0, r))
            else:
                self._send(unique, -errno.EISDIR)
        elif op == FSYNC:
            self.device.fsync(lambda r: self._send(unique, min(r, 0)))
        elif op in (FORGET, BATCH_FORGET, INTERRUPT):
            pass  # no reply: the interrupted request is answered when it completes
        elif op == INIT:
            self._init(unique, arg)
        elif op == DESTROY:
            self._send(unique)
            return False
        else:
            self._meta(op, unique, node, arg)
        return True

    def _init(self, unique: int, arg: memoryview) -> None:
        major, minor, max_readahead, flags = INIT_IN.unpack_from(arg)
        if major != 7:
            self._send(unique, -errno.EPROTO)
            return
        want = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_ASYNC_DIO
        if self.writeback:
            want |= FUSE_WRITEBACK_CACHE
        self._send(unique, 0, INIT_OUT.pack(7, min(minor, 38), max_readahead, flags & want, 0, 0,
                                            MAX_WRITE, 1, MAX_WRITE // 4096, 0, 0,
                                            *([0] * 7)))
        self.mounted.set()

    def _meta(self, op: int, unique: int, node: int, arg: memoryview) -> None:
        """Everything but the data path: names, attributes, open/close, space."""
        if op == LOOKUP:
            name = bytes(arg).split(b"\0", 1)[0].decode(errors="replace")
            if node != ROOT or name != self.name:
                self._send(unique, -errno.ENOENT)
                return
            self._send(unique, 0, ENTRY_OUT.pack(FILE, 0, TTL, TTL, 0, 0, *self._attr(FILE)))
        elif op in (GETATTR, SETATTR):
            if op == SETATTR:
                valid, _p, _fh, size, *_rest = SETATTR_IN.unpack_from(arg)
                if valid & FATTR_SIZE and size != self.device.size:
                    self._send(unique, -errno.EPERM)
                    return
            self._send(unique, 0, ATTR_OUT.pack(TTL, 0, 0, *self._attr(node)))
        elif op == OPEN:
            err = self.device.open_error()
            if err:
                self._send(unique, -err)
            else:
                self._send(unique, 0, OPEN_OUT.pack(0, FOPEN_PARALLEL_DIRECT_WRITES, 0))
        elif op == OPENDIR:
            self._send(unique, 0, OPEN_OUT.pack(0, 0, 0))
        elif op == READDIR:
            _fh, offset, size, *_rest = RW_IN.unpack_from(arg)
            out = b""
            for i, (ino, name, kind) in enumerate([(ROOT, ".", 4), (ROOT, "..", 4),
                                                   (FILE, self.name, 8)]):
                if i < offset:
                    continue
                raw = name.encode()
                ent = DIRENT.pack(ino, i + 1, len(raw), kind) + raw
                ent += b"\0" * (-len(ent) % 8)
                if len(out) + len(ent) > size:
                    break
                out += ent
            self._send(unique, 0, out)
        elif op in (RELEASE, RELEASEDIR, FLUSH):
            self._send(unique)
        elif op == STATFS:
            blocks = self.device.size // 4096
            self._send(unique, 0, KSTATFS.pack(blocks, 0, 0, 0, 0, 4096, 255, 4096, 0,
                                               *([0] * 6)))
        elif op == FALLOCATE:
            _fh, offset, length, mode, _p = FALLOCATE_IN.unpack_from(arg)
            if mode & FALLOC_FL_PUNCH_HOLE:
                self.device.discard(offset, length)
                self._send(unique)
            elif mode == 0 and offset + length <= self.device.size:
                self._send(unique)  # the image is fully allocated already
            else:
                self._send(unique, -errno.EOPNOTSUPP)
        else:
            self._send(unique, -errno.ENOSYS)
