"""Reading directories that other processes change while we read them.

The machine-wide places the lab reads -- the freezer cgroup tree, /proc, /sys/block,
/run/netns, the state directory -- change under our feet whenever another lab (a parallel pytest
worker, a `lab up` in another terminal) comes or goes: a directory listed a moment ago is gone
when we open it, a process exits between its PID and its cmdline. Such a read must describe
what was there, never fail. These helpers are the one place that decides what "vanished" means,
so callers read live trees without sprinkling try/except around every step.

An entry that appears or vanishes during a walk may or may not be reported; everything that
existed for the whole walk is.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

# What the kernel answers for a path or process that went away: the file or directory is gone
# (ENOENT), a parent became something else (ENOTDIR), a /proc entry's process exited (ESRCH),
# or a cgroup was removed while we held it open (ENODEV).
VANISHED_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ESRCH, errno.ENODEV})


def vanished(exc: OSError) -> bool:
    """Whether `exc` only says that the thing we read no longer exists."""
    return exc.errno in VANISHED_ERRNOS


def entries(directory: Path) -> list[os.DirEntry[str]]:
    """The directory's entries now, sorted by name; [] if it does not exist (any more)."""
    try:
        with os.scandir(directory) as it:
            found = list(it)
    except OSError as exc:
        if vanished(exc):
            return []
        raise
    return sorted(found, key=lambda e: e.name)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False  # it vanished before we could ask


def children(directory: Path) -> list[Path]:
    """Every entry of `directory`, sorted; [] if it does not exist."""
    return [Path(e.path) for e in entries(directory)]


def subdirs(directory: Path) -> list[Path]:
    """The directories directly below `directory` (symlinks not followed), sorted."""
    return [Path(e.path) for e in entries(directory) if _is_dir(e)]


def walk(root: Path, dirs_only: bool = False) -> Iterator[Path]:
    """Every path below `root` (not `root` itself), parents before their children, depth first.

    A directory that vanishes between being listed and being opened is reported (it existed)
    but has nothing below it; a file that vanishes is still reported. Symlinks are not
    followed, so a walk never leaves the tree it was asked about.
    """
    for entry in entries(root):
        is_dir = _is_dir(entry)
        if dirs_only and not is_dir:
            continue
        yield Path(entry.path)
        if is_dir:
            yield from walk(Path(entry.path), dirs_only)


def read_text(path: Path) -> str | None:
    """The file's text, or None if it (or the process or cgroup it belongs to) vanished."""
    try:
        return path.read_text()
    except OSError as exc:
        if vanished(exc):
            return None
        raise


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None if it vanished."""
    try:
        return path.read_bytes()
    except OSError as exc:
        if vanished(exc):
            return None
        raise
