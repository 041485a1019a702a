"""The warm-lab pool with a real lab: it boots beside the test at a lower CPU priority, is handed
over at the normal one, and a lab nobody takes is removed."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

import pytest

from lab.lab import Lab
from lab.pool import BOOT_NICE, LabPool, key_of, lab_threads
from lab.state import known_labs

pytestmark = [pytest.mark.lab, pytest.mark.seed]
KEY = key_of("fast", "seed", {})


def niceness(tids: set[int]) -> dict[int, int]:
    out = {}
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
            out[tid] = os.getpriority(os.PRIO_PROCESS, tid)
    return out



def test_a_warm_lab_boots_niced_and_is_handed_over_at_normal_priority(tmp_path: Path) -> None:
    numbers = itertools.count()
    pool = LabPool(1, tmp_path, lambda: f"wp{os.getpid() % 100000}x{next(numbers)}")
    try:
        pool.prepare(KEY)
        booting = pool.booting[0]
        log = tmp_path / f"{booting.name}.log"
        assert booting.process.wait(timeout=300) == 0, log.read_text()
        # the boot is over: the lab idles at the pool's priority until someone takes it
        waiting = niceness(lab_threads(Lab.attach(booting.name)))
        assert waiting and set(waiting.values()) == {BOOT_NICE}, waiting
        lab = pool.take(KEY)
        assert lab is not None and lab.name == booting.name and pool.handed == 1
        handed = niceness(lab_threads(lab))
        assert len(handed) >= len(waiting) // 2 and set(handed.values()) == {0}, handed
        assert lab.active().name == "lsvm2"  # a ready seed pair, as a test expects it
        lab.down()
        pool.prepare(KEY)  # the next one, never taken
        left = pool.booting[0].name
    finally:
        pool.close()
    assert left not in known_labs()
