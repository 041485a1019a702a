"""The warm-lab pool with a real lab: it boots in a child process beside the test, is handed
over ready, and a lab nobody takes is removed by its records."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from lab.pool import LabPool, key_of
from lab.services.health import readiness
from lab.state import known_labs

pytestmark = [pytest.mark.lab, pytest.mark.seed]
KEY = key_of("fast", "seed", {})


def test_a_warm_lab_is_handed_over_ready_and_one_never_taken_is_removed(tmp_path: Path) -> None:
    numbers = itertools.count()
    pool = LabPool(1, tmp_path, lambda: f"wp{os.getpid() % 100000}x{next(numbers)}")
    lab = None
    try:
        pool.prepare(KEY)
        booting = pool.booting[0]
        assert booting.process.poll() is None  # booting in its own process, beside this test
        lab = pool.take(KEY)
        assert lab is not None and lab.name == booting.name, (
            tmp_path / f"{booting.name}.log").read_text()
        assert pool.handed == 1 and pool.missed == 0
        # ready as a lab the test booted itself would be: every readiness check holds
        checks = readiness(lab)
        assert checks and all(checks.values()), checks
        # heartbeat made itself realtime, as in a lab booted in the foreground
        heartbeats = [pid for node in lab for pid, cmd in node.processes()
                      if cmd.startswith("heartbeat:")]
        assert heartbeats and all(os.sched_getscheduler(pid) == os.SCHED_RR
                                  for pid in heartbeats)
        assert pool.take(KEY) is None and pool.missed == 1  # nothing booting for it any more
        pool.prepare(KEY)  # the next one, never taken
        left = pool.booting[0].name
    finally:
        if lab is not None:
            lab.down()
        pool.close()
    assert left not in known_labs()
