"""Every read of machine-wide state holds while other labs come and go, and a lab's checks judge
only what is its own.

Parallel pytest workers share one machine: while one test reads the cgroup tree, /proc, the
loop devices or the state directory, another test's lab is being made or removed. These tests
make that happen on purpose and as often as the machine allows, so a read that trips over a
vanishing entry fails here, every run, rather than once in a few hundred tests elsewhere.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from pathlib import Path

import pytest

from lab import doctor, rootns
from lab.cgroup import Cgroup
from lab.lab import Lab, running_labs
from lab.state import known_labs, lab_cgroups, teardown
from lab.topology import load_topology

pytestmark = pytest.mark.lab

DURATION_S = 35.0  # the whole read loop, however many labs the churn got through
MAX_CYCLES = 15  # bare labs brought up and down by the churn, at most
DOCTOR_EVERY_S = 5.0  # doctor's reads run dpkg-query nine times: now and then is enough


class Churn(threading.Thread):
    """Brings bare labs up and down, one after the other, until stopped or `cycles` are done.

    `changing` is set while a lab is being made or removed (its directory, cgroups, processes
    appear or vanish), so the reader can spend those moments on the reads that race."""

    def __init__(self, prefix: str, cycles: int) -> None:
        super().__init__(name="lab-churn", daemon=True)
        self.prefix = prefix
        self.cycles = cycles
        self.done = 0
        self.stop = threading.Event()
        self.changing = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        for i in range(self.cycles):
            if self.stop.is_set():
                return
            try:
                self.changing.set()
                made = Lab.create(f"{self.prefix}{i}", stack="none")
                made.up()
                self.changing.clear()
                time.sleep(0.2)  # a moment with the lab up: the reader sees it whole
                self.changing.set()
                made.down()
                self.done += 1
            except Exception:
                self.errors.append(traceback.format_exc())
                return
            finally:
                self.changing.clear()

    def cleanup(self) -> None:
        """Stop, wait, and remove whatever lab of ours is left (only ours, by name)."""
        self.stop.set()
        self.join(timeout=120)
        for name in known_labs():
            if name.startswith(self.prefix):
                teardown(name)


def read_everything_machine_wide(lab: Lab, before: rootns.Snapshot) -> None:
    """The reads that race: the root namespace picture judged for `lab`, the lab list, and
    every lab's cgroups and processes."""
    problems = rootns.differences(before, rootns.snapshot(), lab.dir, lab.name)
    assert problems == [], f"lab {lab.name} judged by others' changes:\n" + "\n".join(problems)
    names = known_labs()
    assert lab.name in names
    for name in names:
        for cgroup in lab_cgroups(name):
            cgroup.pids()
            cgroup.frozen()


def read_own_lab(lab: Lab) -> None:
    """The lab's own view while others come and go: all its machines still run, as listed."""
    status = lab.status()
    assert {n: v["state"] for n, v in status["nodes"].items()} == dict.fromkeys(
        lab.nodes, "running")
    assert lab.name in running_labs()


@pytest.mark.slow
def test_reads_hold_while_labs_come_and_go(lab: Lab) -> None:
    churn = Churn(prefix=f"s{os.getpid()}-", cycles=MAX_CYCLES)
    before = rootns.snapshot()
    reads = 0
    last_doctor = 0.0
    deadline = time.monotonic() + DURATION_S
    churn.start()
    try:
        while churn.is_alive() and time.monotonic() < deadline:
            read_everything_machine_wide(lab, before)
            reads += 1
            if churn.changing.is_set():
                continue  # others' cgroups and directories are appearing or vanishing now
            read_own_lab(lab)
            if time.monotonic() - last_doctor > DOCTOR_EVERY_S:
                assert all(c.ok for c in doctor.run_checks() if c.name in (
                    "freezer cgroup", "namespaces", "loop devices"))
                last_doctor = time.monotonic()
    finally:
        churn.cleanup()
    assert not churn.errors, "the churning labs failed:\n" + "\n".join(churn.errors)
    assert churn.done >= 2, f"only {churn.done} labs came and went: nothing was tested"
    print(f"{reads} machine-wide reads while {churn.done} labs came and went")
    assert not [n for n in known_labs() if n.startswith(churn.prefix)]


def test_parallel_create_and_teardown_share_parents(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two labs made and removed over and over at once, in a private lab root (so nobody else's
    labs are near): the last lab's teardown must never take the state directory or the cgroup
    hierarchy's top away from under the other's creation."""
    monkeypatch.setenv("HAPAIR_LAB_ROOT", str(tmp_path / "root"))
    topology = load_topology(Path(__file__).resolve().parent.parent / "fixtures/topology.toml")
    errors: list[str] = []
    rounds = [0, 0]
    deadline = time.monotonic() + 4.0

    def cycle(who: int) -> None:
        name = f"p{who}"
        try:
            while time.monotonic() < deadline and rounds[who] < 1000 and not errors:
                Lab.create(name, topology, stack="none")
                Cgroup.for_node(name, "n").create()
                teardown(name)
                rounds[who] += 1
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=cycle, args=(i,)) for i in (0, 1)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for name in known_labs():
            teardown(name)
    assert not errors, errors[0]
    print(f"{rounds} creations and teardowns side by side")
    assert min(rounds) > 10, rounds
    assert known_labs() == []
