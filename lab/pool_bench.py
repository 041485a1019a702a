"""`make bench`'s warm-lab section: the same scenarios run with the lab pool on and off.

Why both in one run: the pool's promise is that a scenario's setup becomes a hand-over instead
of a boot *without* changing what the scenario measures (the next lab boots beside the running
one, on the same two cores). So the section reports, from the same machine minutes apart: each
run's wall time, the setup a scenario saw (the `hapair.setup_s` JUnit property), and the
takeover and outage one scenario measured, with the pool on and off and their ratios; and the
same for a pool of one lab per worker.

The parsing and the summary are pure (unit-tested on a recorded JUnit file); `run_all` runs
pytest twice as a user would (`-n 2`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("scenarios/test_failover.py",)
# a crash and an orderly handover, 10 times each: on 5 crashes a run's takeover median moved
# by 5-10 % from run to run here, as much as the effect the comparison looks for
SELECT = "kill_primary or graceful_shutdown_primary"
REPEAT = 10
# the pool compared against no pool: two labs booting ahead per worker (with one, a boot under
# a neighbour's load outlasts a short scenario and the next setup waits for its end)
POOL_ON = 2
MEASURED = "test_kill_primary"  # the scenario whose figures are compared
WORKERS = 2


@dataclass(frozen=True)
class Case:
    name: str
    outcome: str  # passed, failed, error, skipped
    properties: dict[str, str] = field(default_factory=dict)

    def number(self, key: str) -> float | None:
        try:
            return float(self.properties[key])
        except (KeyError, ValueError):
            return None


def parse_junit(text: str) -> list[Case]:
    """Every testcase of a JUnit XML file with its outcome and properties."""
    cases = []
    for tc in ET.fromstring(text).iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if tc.find(tag) is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                break
        props = {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
        cases.append(Case(tc.get("name", ""), outcome, props))
    return cases


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(cases: list[Case], wall_s: float, workers: int = WORKERS) -> dict[str, Any]:
    """One run's figures. Setup "after the first" leaves out the longest `workers` setups:
    each worker's first scenario waits for a boot whatever the pool does."""
    setups = sorted(s for c in cases if (s := c.number("hapair.setup_s")) is not None)
    measured = [c for c in cases if c.name.startswith(MEASURED) and c.outcome == "passed"]
    takeovers = [t for c in measured if (t := c.number("hapair.takeover_s")) is not None]
    outages = [o for c in measured if (o := c.number("hapair.outage_s")) is not None]
    return {
        "wall_s": round(wall_s, 1),
        "tests": len(cases),
        "failed": sum(1 for c in cases if c.outcome in ("failed", "error")),
        "setup_s_all": setups,
        "setup_s_median": _median(setups),
        "setup_s_median_after_first": _median(setups[:-workers] if len(setups) > workers
                                              else []),
        f"{MEASURED[5:]}_takeover_s_all": takeovers,
        f"{MEASURED[5:]}_takeover_s_median": _median(takeovers),
        f"{MEASURED[5:]}_outage_s_median": _median(outages),
    }


def compare(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    """Pool on against off: each ratio is on / off (below 1: the pool is faster or lower)."""
    def ratio(key: str) -> float | None:
        a, b = on.get(key), off.get(key)
        return round(a / b, 3) if isinstance(a, float | int) and isinstance(b, float | int) \
            and b else None
    name = MEASURED[5:]
    return {"wall_ratio": ratio("wall_s"), "setup_ratio": ratio("setup_s_median"),
            f"{name}_takeover_ratio": ratio(f"{name}_takeover_s_median"),
            f"{name}_outage_ratio": ratio(f"{name}_outage_s_median")}


def run_suite(pool: int, outdir: Path) -> dict[str, Any]:
    """Run the selected scenarios once with `--lab-pool pool`; its summary."""
    junit = outdir / f"pool-{pool}.xml"
    cmd = [sys.executable, "-m", "pytest", "-n", str(WORKERS), "-p", "no:cacheprovider",
           "-q", f"--lab-pool={pool}", "--repeat", str(REPEAT), "-k", SELECT,
           f"--junitxml={junit}", "--history", str(outdir / f"history-{pool}.jsonl"),
           *SCENARIOS]
    env = {**os.environ, "HAPAIR_RUN_ID": f"bench-pool{pool}-{time.strftime('%H%M%S')}"}
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    cases = parse_junit(junit.read_text()) if junit.exists() else []
    return summarize(cases, wall)


def run_all() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hapair-pool-bench-") as tmp:
        off = run_suite(0, Path(tmp))
        on = run_suite(POOL_ON, Path(tmp))
        one = run_suite(1, Path(tmp))
    return {"scenarios": f"{' '.join(SCENARIOS)} -k '{SELECT}' --repeat {REPEAT} -n {WORKERS}",
            "pool_on_size": POOL_ON, "pool_off": off, "pool_on": on, "pool_1": one,
            **compare(on, off), "pool_1_ratios": compare(one, off)}
