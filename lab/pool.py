"""Warm labs: the next scenario's lab boots while the current scenario runs.

A seed lab takes ~40 s to be ready, most of it heartbeat's own waits (its 10 s start-up delay,
the stock IPv6addr agents) during which the machine is idle. The pool uses that: when a test
takes its lab, the pool starts booting a lab like the one the *next* test will ask for (pytest
says which test comes next on this worker), so that test's setup is a hand-over instead of a
boot. A pooled lab is brand new: it is handed to one test and removed after it, never reused.

Each lab boots in a child process (``python -m lab.pool NAME SPEC``), like a `lab up` in another
terminal: the test process runs no extra threads beside its probes, and a lab a child made is
the same records-backed lab `Lab.attach` reopens. A lab that nobody takes is removed at the end
of the session; one whose child was killed (Ctrl-C, a crashed worker) is removed by its records
(`teardown`), exactly as `lab down` removes a SIGKILLed `lab up`.

A booting lab must not disturb the scenario measuring beside it on the same cores, so it boots
at a lower CPU priority (nice 10, inherited by everything it starts; heartbeat's own real-time
scheduling is untouched), and at the hand-over every thread of it is set back to normal: the
test gets a lab like one it booted itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import walk
from lab.lab import Lab
from lab.state import lab_cgroups, teardown
from lab.wait import wait_for

Key = tuple[str, str, str]  # (profile, stack, options as sorted JSON)
BOOT_TIMEOUT_S = 300.0
BOOT_NICE = 10


def key_of(profile: str, stack: str, options: dict[str, Any]) -> Key:
    return profile, stack, json.dumps(options, sort_keys=True, default=sorted)


@dataclass
class _Booting:
    name: str
    key: Key
    process: subprocess.Popen[bytes]


@dataclass
class LabPool:
    """Up to `size` labs booting ahead, for the key the next test is predicted to want."""

    size: int
    log_dir: Path
    new_name: Callable[[], str]
    booting: list[_Booting] = field(default_factory=list)
    handed: int = 0
    missed: int = 0

    def take(self, key: Key) -> Lab | None:
        """A ready lab for `key` (waiting for its boot to finish), or None when none was
        booting for it or its boot failed (the caller then boots one itself)."""
        entry = next((b for b in self.booting if b.key == key), None)
        if entry is None:
            self.missed += 1
            return None
        self.booting.remove(entry)
        try:
            rc = entry.process.wait(timeout=BOOT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            self._discard(entry)
            self.missed += 1
            return None
        self.handed += 1
        lab = Lab.attach(entry.name)
        normal_priority(lab)
        return lab

    def prepare(self, key: Key | None) -> None:
        """Keep `size` labs for `key` booting (drop ones booting for another key: the next
        test wants something else)."""
        if self.size <= 0 or key is None or key[1] == "none":
            return  # a bare lab is up in a few seconds: not worth a lab in waiting
        for entry in [b for b in self.booting if b.key != key]:
            self.booting.remove(entry)
            self._discard(entry)
        while sum(1 for b in self.booting if b.key == key) < self.size:
            self.booting.append(self._boot(key))

    def close(self) -> None:
        """Remove every lab nobody took (called at the end of the session, also on ^C)."""
        while self.booting:
            self._discard(self.booting.pop())

    def _boot(self, key: Key) -> _Booting:
        name = self.new_name()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "lab.pool", name, json.dumps(list(key))],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return _Booting(name, key, process)

    @staticmethod
    def _discard(entry: _Booting) -> None:
        if entry.process.poll() is None:
            entry.process.kill()  # our own child, by its PID
            entry.process.wait()
        teardown(entry.name)  # by the lab's records, whatever the child had made


def lab_threads(lab: Lab) -> set[int]:
    """Every thread the lab runs now: its nodes', its switch's, its own helper processes'."""
    cgroups = [node.cgroup for node in lab if node.state == "running"]
    cgroups += lab_cgroups(lab.name)
    tids = {tid for cg in cgroups for tid in cg.threads()}
    for entry in lab.records.entries("process"):
        tasks = walk.subdirs(Path(f"/proc/{int(entry['pid'])}/task"))
        tids.update(int(t.name) for t in tasks if t.name.isdigit())
    return tids


def normal_priority(lab: Lab, timeout: float = 5.0) -> None:
    """Set every thread of a lab booted at BOOT_NICE back to nice 0, pass after pass until a
    pass finds none left (a process forking meanwhile may have given its child the old value).
    A thread gone meanwhile is skipped."""
    def raise_all() -> int:
        left = 0
        for tid in lab_threads(lab):
            with contextlib.suppress(ProcessLookupError):
                if os.getpriority(os.PRIO_PROCESS, tid) > 0:
                    os.setpriority(os.PRIO_PROCESS, tid, 0)
                    left += 1
        return left
    wait_for(raise_all, until=lambda left: left == 0, timeout=timeout, interval=0.0,
             max_interval=0.01, what=f"lab {lab.name}'s threads back at normal priority")


def boot(name: str, key: Key) -> None:
    """The child's work: create the lab and bring it up until ready (removed on failure), at
    BOOT_NICE."""
    os.nice(BOOT_NICE)
    profile, stack, options = key
    Lab.create(name, profile=profile, stack=stack, **json.loads(options)).up()


if __name__ == "__main__":
    profile, stack, options = json.loads(sys.argv[2])
    boot(sys.argv[1], (profile, stack, options))
