"""What a lab created, written down before it is created, so any lab can always be removed.

Each lab owns one directory, ``$HAPAIR_LAB_ROOT/labs/<name>`` (default root
``/var/lib/hapair-lab``). Its ``records.jsonl`` is an append-only journal: a record is written
*before* the thing it names is made, so a `lab up` killed with SIGKILL at any instant leaves a
journal that covers everything it made. (Written, not fsync'ed: a write is in the kernel the
moment it returns and survives its writer's SIGKILL; only a crash of the host itself could lose
it, and that takes every process, namespace, cgroup and loop device of the lab with it.)
Teardown trusts only these records and the lab's own cgroup subtree -- never process names --
so it cannot touch another lab or anything else on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import walk
from lab.cgroup import DEFAULT_STATE_ROOT, Cgroup, hierarchy_root, kill_all
from lab.wait import WaitTimeout, wait_for

LAB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")


class LabStateError(RuntimeError):
    pass


def lab_root() -> Path:
    return Path(os.environ.get("HAPAIR_LAB_ROOT", DEFAULT_STATE_ROOT))


def labs_dir() -> Path:
    return lab_root() / "labs"


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602  # linux/fs.h, on a 64-bit long
FS_TOPDIR_FL = 0x00020000


def make_labs_dir() -> Path:
    """`labs_dir()`, made if missing and marked as the top of directory hierarchies (ext4's
    `chattr +T`): the filesystem then places each lab's directory in a block group of its
    own instead of the labs directory's. Why: every lab creates and deletes hundreds of files
    there, and on ext4 without a journal (this machine's root filesystem) the inode allocator
    skips each inode freed in the last 5-35 s one by one, so in one shared group a new lab's
    files cost ~0.5 ms each instead of ~0.05 ms (measured: a bare lab's files 0.19-0.28 s
    before, 0.04-0.09 s after). Best effort: elsewhere the flag is unsupported and ignored."""
    path = labs_dir()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            flags = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
            if not flags & FS_TOPDIR_FL:
                fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", flags | FS_TOPDIR_FL))
        finally:
            os.close(fd)
    return path


def check_lab_name(name: str) -> None:
    if not LAB_NAME_RE.match(name):
        raise ValueError(f"lab name {name!r}: use 1-16 of a-z, 0-9 and '-', starting with a "
                         "letter or digit")


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the PID, a unique identity."""
    stat = walk.read_text(Path(f"/proc/{pid}/stat"))
    if not stat:
        return None
    # comm may contain spaces and parentheses; the fields after the last ')' are fixed
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        start = process_start_ticks(pid)
        if start is None:
            raise LabStateError(f"process {pid} vanished")
        return cls(pid, start)

    def alive(self) -> bool:
        """The recorded process still exists (a zombie, exited but not yet reaped, included)."""
        return process_start_ticks(self.pid) == self.start

    def exited(self) -> bool:
        """Whether the process has exited: gone, its PID reused, or a zombie (an orphan waits
        for the host's init to reap it, which here takes up to a second or two; it has exited
        all the same, and holds no namespace, mount or cgroup any more)."""
        stat = walk.read_text(Path(f"/proc/{self.pid}/stat"))
        if not stat:
            return True
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[19]) != self.start or fields[0] == "Z"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process only if it is still the one recorded (PIDs get reused)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


class Records:
    """The append-only journal of one lab."""

    def __init__(self, lab_dir: Path) -> None:
        self.path = lab_dir / "records.jsonl"

    def add(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, **fields}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        result = []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a SIGKILL mid-write
            if kind is None or entry.get("kind") == kind:
                result.append(entry)
        return result


def known_labs() -> list[str]:
    """Every lab with a directory or a cgroup on this machine, live or half-dead. Labs that
    come or go meanwhile may or may not be listed; the listing itself never fails."""
    names = {p.name for p in walk.subdirs(labs_dir())}
    names.update(p.name for p in walk.subdirs(hierarchy_root()))
    return sorted(n for n in names if LAB_NAME_RE.match(n))


def lab_cgroups(name: str) -> Iterator[Cgroup]:
    """The lab's node cgroups, then its own top: [] for a lab that has none (any more)."""
    top = hierarchy_root() / name
    below = walk.subdirs(top)
    for child in below:
        yield Cgroup(child)
    if below or top.is_dir():
        yield Cgroup(top)


TEARDOWN_KILL_TIMEOUT_S = 60.0


def teardown(name: str, log: Any = None) -> list[str]:
    """Remove everything lab `name` created. Returns what was done, for the user.

    Order matters: processes first (their death frees the namespaces, mounts and FUSE files,
    which live only inside the lab's own namespaces), then host-side leftovers (loop devices),
    then the cgroups, then the directory.

    The shared state directories (`labs_dir()`, `lab_root()`) stay even when this was the last
    lab: a parallel `Lab.create` makes `labs_dir()` and then its own directory below it, and
    removing the parent between those two steps would make that lab fail to start.
    """
    check_lab_name(name)
    done: list[str] = []
    lab_dir = labs_dir() / name
    records = Records(lab_dir)
    cgroups = list(lab_cgroups(name))
    for cg in cgroups:
        count = len(cg.pids())
        if count:
            done.append(f"killed {count} processes in {cg.path}")
    # patient: a process SIGKILLed in the middle of disk I/O on a loaded machine has been
    # seen to take longer than the 5 s a node's crash allows, and a teardown given up
    # half-way leaves the lab behind
    kill_all(*cgroups, timeout=TEARDOWN_KILL_TIMEOUT_S)
    for entry in records.entries("process"):
        ref = ProcessRef(int(entry["pid"]), int(entry["start"]))
        if not ref.exited():
            ref.kill()
            done.append(f"killed process {ref.pid} ({entry.get('what', '?')})")
            _wait_exited(ref)
    machines, volumes = records.entries("docker_container"), records.entries("docker_volume")
    if machines or volumes:
        # the docker backend's containers and volumes, by the IDs and names this lab recorded
        from lab import docker_backend
        done += docker_backend.remove_recorded(machines, volumes)
    for entry in records.entries("loop"):
        if _detach_loop(entry):
            done.append(f"detached {entry['device']}")
    for cg in lab_cgroups(name):
        cg.remove()
    Cgroup(hierarchy_root() / name).remove()
    if lab_dir.exists():
        shutil.rmtree(lab_dir, ignore_errors=True)
        if lab_dir.exists():  # e.g. a directory still busy: one more try after a breath
            time.sleep(0.2)
            shutil.rmtree(lab_dir)
        done.append(f"removed {lab_dir}")
    return done


def _wait_exited(ref: ProcessRef, timeout: float = 5.0) -> None:
    """Until the process has exited (reaping it if it is our own child); a zombie of someone
    else's counts as exited: waiting for the host's init to reap it would only cost time."""
    def gone() -> bool:
        with suppress(ChildProcessError):
            os.waitpid(ref.pid, os.WNOHANG)
        return ref.exited()
    with suppress(WaitTimeout):
        wait_for(gone, timeout=timeout, interval=0.002, max_interval=0.05,
                 what=f"process {ref.pid} to exit")


def _detach_loop(entry: dict[str, Any]) -> bool:
    """Detach a recorded loop device, but only if it still points at the recorded backing file."""
    device = str(entry["device"])
    name = Path(device).name
    current = walk.read_text(Path(f"/sys/block/{name}/loop/backing_file"))
    if current is None:
        return False  # already detached
    current = current.strip()
    recorded = str(entry.get("backing", ""))
    current = current.removesuffix(" (deleted)")
    # once its mount namespace is gone the kernel shows the backing file by its last component
    if recorded and current not in (recorded, "/" + Path(recorded).name):
        return False  # reused by someone else since
    result = subprocess.run(["losetup", "-d", device], capture_output=True, text=True)
    return result.returncode == 0
