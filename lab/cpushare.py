"""A lab in waiting yields the CPU to the labs being measured.

Why a CPU cgroup and not `nice`: with the kernel's autogroups (on here), each session is its own
scheduling group and `nice` orders processes only inside their session; every node, heartbeat
and dnsmasq starts a session of its own, so a niced lab still competed at full weight (measured:
no difference in the takeover ratio). A cgroup of the CPU controller is one scheduling group
for all of a lab's processes, whatever their sessions: while a warm lab boots it holds
`WARM_SHARES` against the default 1024 of every other group, so it runs on what the measured
labs leave idle. At hand-over its processes move back to the CPU group of the process that
takes it (where every lab booted in the foreground runs), and the group is removed.

Only cgroup v1's CPU hierarchy is used (what this machine mounts); where it is absent the
labs in waiting run at normal weight and `available()` says so.
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from lab import cgroup, walk
from lab.wait import WaitTimeout, wait_for

CPU_V1_ROOT = Path("/sys/fs/cgroup/cpu")
WARM_SHARES = 2  # the kernel's minimum; every other group has 1024
PREFIX = "warm-"
# Realtime budget (µs of each 1 s period). heartbeat makes its own processes SCHED_RR, which a
# CPU group refuses unless it has a budget: without one a warm lab's heartbeat would run as an
# ordinary process, unlike a lab booted in the foreground. heartbeat needs microseconds a
# tick; each warm group gets 1 %, the lab root's directory 10 % (ten warm labs at once).
RT_RUNTIME_TOP_US = 100_000
RT_RUNTIME_WARM_US = 10_000


def available() -> bool:
    """Whether this machine mounts cgroup v1's CPU controller (its own hierarchy)."""
    return (CPU_V1_ROOT / "cpu.shares").exists()


def _top() -> Path:
    """The lab's directory in the CPU hierarchy: named as its freezer hierarchy's top, so a
    private lab root ($HAPAIR_LAB_ROOT) has groups of its own here too."""
    return CPU_V1_ROOT / cgroup.hierarchy_root().name


def warm_group(lab: str) -> Path:
    return _top() / f"{PREFIX}{lab}"


def enter_warm(lab: str) -> bool:
    """Move the calling process into lab `lab`'s low-weight group (made here, with a realtime
    budget for heartbeat); everything it starts from now on is born there. False, and the
    process stays where it is, where the controller is not available or no realtime budget is
    left (the lab then boots at normal weight rather than differently)."""
    if not available():
        return False
    group = warm_group(lab)
    cgroup.Cgroup(group).create()
    try:
        (_top() / "cpu.rt_runtime_us").write_text(str(RT_RUNTIME_TOP_US))
        (group / "cpu.rt_runtime_us").write_text(str(RT_RUNTIME_WARM_US))
    except OSError:  # the top's budget is taken (EINVAL/EBUSY): no warm group then
        remove(lab)
        return False
    (group / "cpu.shares").write_text(str(WARM_SHARES))
    (group / "cgroup.procs").write_text("0")
    return True


def group_of(pid: int | str = "self") -> Path:
    """The CPU group of a process (from /proc/PID/cgroup; the hierarchy's root if none)."""
    return cpu_group_in(walk.read_text(Path(f"/proc/{pid}/cgroup")) or "")


def cpu_group_in(proc_cgroup: str) -> Path:
    """The CPU controller's group named in a /proc/PID/cgroup text (pure)."""
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return CPU_V1_ROOT / path.lstrip("/")
    return CPU_V1_ROOT


def release(lab: str, timeout: float = 10.0) -> None:
    """Give lab `lab`'s processes the weight of the caller's own (move them into its CPU
    group) and remove the warm group. A process forked during the move can land in the old
    group, so moving repeats until the group is empty."""
    group = warm_group(lab)
    if not group.is_dir():
        return
    target = group_of() / "cgroup.procs"

    def move_all() -> list[str]:
        left = (walk.read_text(group / "cgroup.procs") or "").split()
        for pid in left:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                target.write_text(pid)
        return left
    with contextlib.suppress(WaitTimeout):  # what cannot move is removed with the lab
        wait_for(move_all, until=lambda left: not left, timeout=timeout, interval=0.005,
                 max_interval=0.05, what=f"lab {lab}'s processes to leave its warm CPU group")
    remove(lab)


def remove(lab: str) -> None:
    """Remove lab `lab`'s warm group once empty (its lab removed, or released), and the
    lab root's directory in the CPU hierarchy if no other lab has a group there; nothing if it
    is gone or still holds a process."""
    if _rmdir_if_empty(warm_group(lab)):
        _rmdir_if_empty(_top())


def sweep() -> list[str]:
    """Remove every empty warm group of this lab root (left by a pool whose process was
    killed); returns the labs whose groups were removed."""
    top = _top()
    removed = []
    for group in walk.subdirs(top) if top.is_dir() else []:
        if group.name.startswith(PREFIX) and _rmdir_if_empty(group):
            removed.append(group.name[len(PREFIX):])
    _rmdir_if_empty(top)
    return removed


def _rmdir_if_empty(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True
