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
from collections.abc import Callable, Sequence
from pathlib import Path

from lab import walk
from lab.wait import WaitTimeout, wait_for

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

    def create(self, timeout: float = 5.0) -> None:
        """Make this cgroup and any missing parents.

        The hierarchy's top is shared by every lab and removed by whichever lab's teardown
        leaves it empty (so a private lab root leaves no cgroup behind), which can happen
        between our mkdir of the top and our mkdir below it: then we simply make it again.
        Once our own directory exists below the top, nobody can remove the top (not empty).
        pathlib reports the race either way: FileNotFoundError (the parent went before our
        mkdir) or FileExistsError (it existed at our mkdir and was gone when it checked)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                return
            except (FileNotFoundError, FileExistsError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)

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

    def entered(self, argv: Sequence[str]) -> list[str]:
        """`argv` behind a small shell that first moves itself into this cgroup, then execs
        it: the same guarantee as `joiner` (nothing the command starts can escape freeze,
        crash or teardown; if the cgroup cannot be joined the command never runs, status
        126), without a `preexec_fn`, which makes Python fork the whole (large) lab process
        instead of vfork-ing -- ~5 ms a command here, more under load."""
        return ["/bin/sh", "-c", 'echo 0 > "$0" || exit 126; exec "$@"',
                str(self.procs_file), *argv]

    def pids(self) -> list[int]:
        """The cgroup's processes now; [] once the cgroup is gone."""
        text = walk.read_text(self.procs_file)
        return [int(p) for p in text.split()] if text is not None else []

    def freeze(self, wait: bool = True, timeout: float = 5.0) -> None:
        """Stop every process; with `wait`, until the kernel says all are frozen (a task in
        uninterruptible sleep can hold that up: TimeoutError after `timeout`)."""
        self._set_frozen(True, wait, timeout)

    def thaw(self) -> None:
        self._set_frozen(False)

    def frozen(self) -> bool:
        if self.v1:
            state = walk.read_text(self.path / "freezer.state")
            return state is not None and state.strip() != "THAWED"
        state = walk.read_text(self.path / "cgroup.freeze")
        return state is not None and state.strip() == "1"

    def _set_frozen(self, frozen: bool, wait: bool = True, timeout: float = 5.0) -> None:
        """Ask the freezer for a state; with `wait` (v1), until it is reached. A cgroup that
        vanishes after the request counts as reached: its last process died (a thaw after
        SIGKILL ends a container, and its runtime removes the cgroup at once)."""
        if not self.v1:
            (self.path / "cgroup.freeze").write_text("1" if frozen else "0")
            return
        want = "FROZEN" if frozen else "THAWED"
        (self.path / "freezer.state").write_text(want)
        if not wait:
            return

        def reached() -> bool:
            state = walk.read_text(self.path / "freezer.state")
            return state is None or state.strip() == want
        try:
            wait_for(reached, timeout=timeout, interval=0.005, max_interval=0.02,
                     what=f"{self.path}: freezer to reach {want}")
        except WaitTimeout as exc:
            raise TimeoutError(str(exc)) from None

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
        kill_all(self, timeout=timeout, fuse_ids=fuse_ids)

    def remove(self) -> None:
        """Remove this cgroup (after kill_all) and its parents up to the hierarchy's top, each
        only if nothing else lives below it any more (the top is shared by every lab)."""
        if self.path.is_dir():
            self.kill_all()
            for child in reversed(walk.subdirs(self.path)):
                Cgroup(child).remove()
            _rmdir(self.path)
        for parent in lab_parents(self.path):
            _rmdir(parent)


def kill_all(*cgroups: Cgroup, timeout: float = 5.0, fuse_ids: set[int] | None = None) -> int:
    """Empty every one of `cgroups` at once: SIGKILL each process (again for any that appears
    meanwhile), thaw frozen ones so they can die, and wait until no cgroup has a process left.
    Returns how many processes were found at the start.

    All cgroups of a lab are killed in one sweep and awaited together, so a teardown waits for
    the slowest death once instead of once per node. A process stuck on a dead FUSE daemon of
    these cgroups cannot die; after a second their FUSE connections are aborted (lab.fuse).
    TimeoutError if anything survives `timeout`."""
    from lab import fuse
    from lab.wait import WaitTimeout, wait_for
    first = {cg.path: cg.pids() for cg in cgroups}
    found = sum(len(p) for p in first.values())
    if not found and not any(cg.frozen() for cg in cgroups):
        return 0
    if fuse_ids is None:
        fuse_ids = fuse.connections_of(p for pids in first.values() for p in pids)
    started = time.monotonic()
    aborted = [False]

    def sweep() -> list[int]:
        left: list[int] = []
        for cg in cgroups:
            pids = first.pop(cg.path, None)
            pids = cg.pids() if pids is None else pids
            if pids:
                cg.sigkill(pids)
                left += pids
            if cg.frozen():
                cg.thaw()
        if left and fuse_ids and not aborted[0] and time.monotonic() - started > 1.0:
            fuse.abort(fuse_ids)
            aborted[0] = True
        return left

    try:
        wait_for(sweep, until=lambda left: not left, timeout=timeout, interval=0.002,
                 max_interval=0.05, what="the processes of " +
                 ", ".join(str(cg.path) for cg in cgroups) + " to die after SIGKILL")
    except WaitTimeout as exc:
        left = exc.last if isinstance(exc.last, list) else []
        survivors = "; ".join(describe_process(pid) for pid in left[:5])
        raise TimeoutError(f"{exc} ({survivors})") from None
    return found


def describe_process(pid: int) -> str:
    """What a process is and where it sleeps, for an error about it (it may be gone)."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state = stat[stat.rindex(")") + 2:].split()[0]
        wchan = (proc / "wchan").read_text().strip() or "-"
    except (OSError, ValueError):
        return f"{pid}: gone"
    return f"{pid} {comm}: state {state}, waiting in {wchan}"


def hierarchy_top(path: Path) -> Path | None:
    """The lab hierarchy `path` lies in (``.../hapair-lab`` or a private root's
    ``.../hapair-lab-<hash>``), or None if it lies in none."""
    for candidate in (path, *path.parents):
        if candidate.parent in (V1_ROOT, V2_ROOT) and (
                candidate.name == TOP or candidate.name.startswith(TOP + "-")):
            return candidate
    return None


def lab_parents(path: Path) -> list[Path]:
    """The parents of `path` inside its own lab hierarchy, nearest first, the top included:
    never a directory outside it, nor another lab root's hierarchy."""
    top = hierarchy_top(path)
    if top is None or path == top:
        return []
    return [p for p in path.parents if p == top or top in p.parents]


def _rmdir(path: Path) -> None:
    """Remove an empty cgroup directory; leave it if something lives below it (another lab,
    another node) and say nothing if someone else removed it first."""
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
            if walk.subdirs(path):
                return  # cgroupfs says EBUSY for a parent whose children still exist
            time.sleep(0.01)
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()
