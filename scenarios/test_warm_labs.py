"""The warm-lab pool with a real lab: it boots in a child process beside the test, is handed
over ready, and a lab nobody takes is removed by its records."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from lab import cpushare, walk
from lab.pool import LabPool, key_of
from lab.services.health import readiness
from lab.state import known_labs
from lab.wait import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.seed]
KEY = key_of("fast", "seed", {})


def pids_in(group: Path) -> list[str]:
    return (walk.read_text(group / "cgroup.procs") or "").split()


def test_a_warm_lab_is_handed_over_ready_and_one_never_taken_is_removed(tmp_path: Path) -> None:
    numbers = itertools.count()
    pool = LabPool(1, tmp_path, lambda: f"wp{os.getpid() % 100000}x{next(numbers)}")
    lab = None
    try:
        pool.prepare(KEY)
        booting = pool.booting[0]
        assert booting.process.poll() is None  # booting in its own process, beside this test
        warm = cpushare.warm_group(booting.name)
        if cpushare.available():  # at the lowest CPU weight while it waits
            wait_for(lambda: len(pids_in(warm)) > 1, timeout=30,
                     what=f"{booting.name}'s processes in its warm CPU group")
            assert (warm / "cpu.shares").read_text().strip() == str(cpushare.WARM_SHARES)
        lab = pool.take(KEY)
        assert lab is not None and lab.name == booting.name, (
            tmp_path / f"{booting.name}.log").read_text()
        assert pool.handed == 1 and pool.missed == 0
        # measured from now on: the lab's processes have left the warm group, which is gone
        assert not warm.exists()
        pids = [pid for node in lab for pid, _ in node.processes()]
        assert pids and {cpushare.group_of(pid) for pid in pids} <= {cpushare.group_of()}
        # heartbeat made itself realtime as in a lab booted in the foreground
        heartbeats = [pid for node in lab for pid, cmd in node.processes()
                      if cmd.startswith("heartbeat:")]
        assert heartbeats and all(os.sched_getscheduler(pid) == os.SCHED_RR
                                  for pid in heartbeats)
        ha_log = lab["lsvm2"].path("/var/log/ha-log").read_text()
        assert "Unable to set scheduler parameters" not in ha_log
        # ready as a lab the test booted itself would be: every readiness check holds
        checks = readiness(lab)
        assert checks and all(checks.values()), checks
        assert pool.take(KEY) is None and pool.missed == 1  # nothing booting for it any more
        pool.prepare(KEY)  # the next one, never taken
        left = pool.booting[0].name
    finally:
        if lab is not None:
            lab.down()
        pool.close()
    assert left not in known_labs()
