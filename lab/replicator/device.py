"""Exposing the replicated file as ``/dev/drbdN`` inside a node, and taking it away again.

While Primary, ``/dev/drbdN`` is a real block device: a loop device over the FUSE-served file
(set up and held by ``loopholder``), with a device node made in the node's private ``/dev``
(major:minor of the loop). While
Secondary it is a symlink to the FUSE file, whose ``open`` fails with EMEDIUMTYPE -- what DRBD
answers when someone opens a Secondary. Only the daemon's control thread calls this (never a
FUSE worker), so loop set-up and tear-down never wait on the daemon's own I/O.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
from pathlib import Path


class DeviceError(RuntimeError):
    pass


def loop_backing(dev: str) -> str | None:
    try:
        return Path(f"/sys/block/{Path(dev).name}/loop/backing_file").read_text().strip()
    except FileNotFoundError:
        return None


def in_use(dev: str, exclude: int | None = None) -> str | None:
    """Why ``dev`` (the loop under /dev/drbdN) counts as open, or None; ``exclude``: the pid
    of the process that holds it for us.

    A mount holds it exclusively (O_EXCL open fails with EBUSY); any other opener shows up as
    an fd in /proc of the node's PID namespace.
    """
    try:
        rdev = os.stat(dev).st_rdev
    except FileNotFoundError:
        return None
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_EXCL)
        os.close(fd)
    except OSError as e:
        if e.errno == errno.EBUSY:
            return "mounted or held exclusively"
        raise
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in (me, exclude):
            continue
        try:
            for fd_link in (proc / "fd").iterdir():
                try:
                    st = os.stat(fd_link)
                except OSError:
                    continue
                if stat.S_ISBLK(st.st_mode) and st.st_rdev == rdev:
                    return f"open by pid {proc.name}"
        except (PermissionError, FileNotFoundError, ProcessLookupError):
            continue
    return None


def detach_loop(dev: str) -> None:
    r = subprocess.run(["losetup", "-d", dev], capture_output=True, text=True)
    if r.returncode != 0 and loop_backing(dev) is not None:
        raise DeviceError(f"losetup -d {dev}: {r.stderr.strip()}")


def make_block_node(path: str, loop_dev: str) -> None:
    """Replace ``path`` by a block device node with the loop device's major:minor."""
    rdev = os.stat(loop_dev).st_rdev
    _remove(path)
    os.mknod(path, 0o660 | stat.S_IFBLK, rdev)


def make_secondary_node(path: str, fuse_file: str) -> None:
    """``path`` becomes a symlink to the FUSE file (opening it fails: EMEDIUMTYPE)."""
    _remove(path)
    os.symlink(fuse_file, path)


def remove_node(path: str) -> None:
    _remove(path)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
