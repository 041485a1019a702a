"""Freezer cgroups: the lab's grip on every process of a node.

Every process a lab starts inside a node is placed in that node's cgroup before it execs, so the
cgroup is the authoritative list of the node's processes: `freeze()` stops them all at once (the
kernel's freezer, not SIGSTOP, so nothing inside can notice or refuse), `kill_all()` is a power
cut, and cleanup after a SIGKILLed `lab up` finds every survivor without matching names.
cgroup v1's freezer is used where mounted (the measured default here); cgroup v2's cgroup.freeze
otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/freezer")
V2_ROOT = Path("/sys/fs/cgroup")
TOP = "hapair-lab"
DEFAULT_STATE_ROOT = "/var/lib/hapair-lab"


def hierarchy_root() -> Path:
    """Where the lab's cgroups live on this machine.

    A non-default $HAPAIR_LAB_ROOT gets a cgroup subtree of its own, so a test can exercise
    `lab down --all` in a private universe without touching the labs of parallel workers.
    """
    top = TOP
    state_root = os.environ.get("HAPAIR_LAB_ROOT")
    if state_root and state_root.rstrip("/") != DEFAULT_STATE_ROOT:
        top = f"{TOP}-{hashlib.sha1(state_root.encode()).hexdigest()[:10]}"
    if (V1_ROOT / "freezer.state").exists() or (V1_ROOT / "cgroup.procs").exists():
        return V1_ROOT / top
    return V2_ROOT / top


class Cgroup:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.v1 = str(path).startswith(str(V1_ROOT))

    @classmethod
    def for_node(cls, lab: str, node: str) -> Cgroup:
        return cls(hierarchy_root() / lab / node)

    def create(self) -> None:
        # A concurrent teardown of another lab may rmdir the shared parent between our mkdirs.
        for _ in range(5):
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                return
            except FileNotFoundError:
                time.sleep(0.01)
        self.path.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.path.is_dir()

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def joiner(self) -> Callable[[], None]:
        """A `preexec_fn` that moves the new process into this cgroup before it execs, so
        nothing it starts can escape freeze, crash or teardown."""
        procs = str(self.procs_file)

        def join() -> None:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0" = the writing process itself
            finally:
                os.close(fd)
        return join

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self.procs_file.read_text().split()]
        except FileNotFoundError:
            return []

    def freeze(self, wait: bool = True, timeout: float = 5.0) -> None:
        """Stop every process; with `wait`, until the kernel says all are frozen (a task in
        uninterruptible sleep can hold that up: TimeoutError after `timeout`)."""
        self._set_frozen(True, wait, timeout)

    def thaw(self) -> None:
        self._set_frozen(False)

    def frozen(self) -> bool:
        try:
            if self.v1:
                return (self.path / "freezer.state").read_text().strip() != "THAWED"
            return (self.path / "cgroup.freeze").read_text().strip() == "1"
        except FileNotFoundError:
            return False

    def _set_frozen(self, frozen: bool, wait: bool = True, timeout: float = 5.0) -> None:
        if self.v1:
            (self.path / "freezer.state").write_text("FROZEN" if frozen else "THAWED")
            if not wait:
                return
            want = "FROZEN" if frozen else "THAWED"
            deadline = time.monotonic() + timeout
            while (self.path / "freezer.state").read_text().strip() != want:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.path}: freezer did not reach {want}")
                time.sleep(0.005)
        else:
            (self.path / "cgroup.freeze").write_text("1" if frozen else "0")

    def sigkill(self, pids: list[int] | None = None, spare: int | None = None) -> None:
        """SIGKILL `pids` (default: every process of this cgroup), sparing one if asked. Sent
        to frozen processes, it takes effect on thaw before any of their code runs again."""
        for pid in self.pids() if pids is None else pids:
            if pid != spare:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def kill_all(self, timeout: float = 5.0, fuse_ids: set[int] | None = None) -> None:
        """SIGKILL every process, thaw so frozen ones can die, wait until the cgroup is empty.

        A process stuck on a dead FUSE daemon of this cgroup cannot die; after a second its
        FUSE connections are aborted (see lab.fuse)."""
        from lab import fuse
        if fuse_ids is None:
            fuse_ids = fuse.connections_of(self.pids())
        aborted = False
        started = time.monotonic()
        deadline = started + timeout
        while True:
            pids = self.pids()
            if not pids:
                return
            self.sigkill(pids)
            if self.frozen():
                self.thaw()
            if fuse_ids and not aborted and time.monotonic() - started > 1.0:
                fuse.abort(fuse_ids)
                aborted = True
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path}: processes {pids} survived SIGKILL")
            time.sleep(0.01)

    def remove(self) -> None:
        """Remove this cgroup (after kill_all) and any now-empty lab parents."""
        if self.path.is_dir():
            self.kill_all()
            for child in sorted(self.path.iterdir(), reverse=True):
                if child.is_dir():
                    Cgroup(child).remove()
            _rmdir(self.path)
        for parent in (self.path.parent, self.path.parent.parent):
            if parent.name and parent != V1_ROOT and parent != V2_ROOT and \
                    str(parent).startswith(str(hierarchy_root())):
                _rmdir(parent)


def _rmdir(path: Path) -> None:
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                return  # another lab still lives below it
            if exc.errno != errno.EBUSY:
                raise
            if any(child.is_dir() for child in path.iterdir()):
                return  # cgroupfs says EBUSY for a parent whose children still exist
            time.sleep(0.01)
    path.rmdir()
