"""`make bench`'s warm-lab section: the crash scenario with the lab pool on and off.

What it shows: the pool's promise is that a scenario's setup becomes a hand-over instead of a
boot *without* changing what the scenario measures, although the next labs boot beside the
running one on the same two cores. Two comparisons, both of `test_kill_primary` only (every
scenario run is a measured crash: `hapair.setup_s`, `hapair.takeover_s`, `hapair.outage_s`):

- **One worker** (`-n 1`), the pool's own effect: the only difference between the sides is the
  labs booting ahead. ROUNDS rounds in ABBA order (off, on, on, off, ...), REPEAT crashes a run.
  This machine drifts by ~15 % in speed over minutes; with one run per side, one after the
  other, that drift became a difference between the sides. In ABBA order a drift that is linear
  over the section weighs on both sides alike and cancels. Each side's medians are taken over
  every passed crash of all its runs, and a seeded bootstrap (both sides resampled with
  replacement, B = 2000) gives a 95 % interval for each ratio of medians, so a reader can tell
  "within 5 %" from "could not tell". Each run's own summary stays in the output (`runs`, with
  its position in the order they ran) so the drift can be read there.
- **The suite** (`-n 2`, as `make test` runs): the wall time and the setups with the pool on and
  off. Its takeover ratio is reported too, but it measures something else as well: with the pool
  the two workers' scenarios follow each other without the boots' idle 10 s between them, so a
  crash more often meets the other worker's scenario at work.

The parsing, the summaries, the plan of runs and the interval are pure (unit-tested on recorded
JUnit text); `run_all` runs pytest as a user would, once per planned run.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("scenarios/test_failover.py",)
# only the crash: in test_failover.py no other test's name, module or marker contains it
SELECT = "kill_primary"
# crashes per run of the one-worker comparison; each side gets ROUNDS * REPEAT of them
REPEAT = 10
# scenarios per run of the suite's comparison (one run a side)
SUITE_REPEAT = 12
# rounds of two runs, alternately off-on and on-off (ABBA): an even number cancels linear drift
ROUNDS = 2
# the pool compared against no pool: two labs booting ahead per worker (with one, a boot under
# a neighbour's load outlasts a short scenario and the next setup waits for its end)
POOL_ON = 2
POOL_OFF = 0
MEASURED = "test_kill_primary"  # the scenario whose figures are compared
NAME = MEASURED[5:]             # its figures' key prefix: kill_primary_...
WORKERS = 1        # the pool's own effect: nothing else differs between the sides
SUITE_WORKERS = 2  # the suite's wall time, as make test runs it
# the bootstrap: resamples per interval, and the seed that makes an interval reproducible
BOOTSTRAP_B = 2000
BOOTSTRAP_SEED = 0
WITHIN = 0.05  # the goal: on / off within 5 %


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


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _after_first(setups: Sequence[float], workers: int) -> list[float]:
    """A run's setups without its longest `workers`: each worker's first scenario waits for a
    boot whatever the pool does."""
    ordered = sorted(setups)
    return ordered[:-workers] if len(ordered) > workers else []


def summarize(cases: list[Case], wall_s: float, workers: int = WORKERS) -> dict[str, Any]:
    """One run's figures. Setup "after the first" leaves out the longest `workers` setups:
    each worker's first scenario waits for a boot whatever the pool does. Only passed runs of
    the measured scenario give a takeover or an outage."""
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
        "setup_s_median_after_first": _median(_after_first(setups, workers)),
        f"{NAME}_takeover_s_all": takeovers,
        f"{NAME}_takeover_s_median": _median(takeovers),
        f"{NAME}_outage_s_all": outages,
        f"{NAME}_outage_s_median": _median(outages),
    }


def pool_runs(runs: list[dict[str, Any]], workers: int = WORKERS) -> dict[str, Any]:
    """One side's figures over all its runs (each a `summarize` result): the crashes pooled,
    setups after each run's own first boots pooled, wall time and counts summed; the runs'
    own summaries kept under `runs`, in the order given."""
    setups = sorted(s for r in runs for s in r["setup_s_all"])
    after_first = sorted(s for r in runs for s in _after_first(r["setup_s_all"], workers))
    takeovers = [t for r in runs for t in r[f"{NAME}_takeover_s_all"]]
    outages = [o for r in runs for o in r[f"{NAME}_outage_s_all"]]
    return {
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
        "tests": sum(r["tests"] for r in runs),
        "failed": sum(r["failed"] for r in runs),
        "setup_s_median": _median(setups),
        "setup_s_median_after_first": _median(after_first),
        f"{NAME}_takeover_s_all": takeovers,
        f"{NAME}_takeover_s_median": _median(takeovers),
        f"{NAME}_outage_s_all": outages,
        f"{NAME}_outage_s_median": _median(outages),
        "runs": runs,
    }


def compare(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    """Pool on against off: each ratio is on / off (below 1: the pool is faster or lower)."""
    def ratio(key: str) -> float | None:
        a, b = on.get(key), off.get(key)
        return round(a / b, 3) if isinstance(a, float | int) and isinstance(b, float | int) \
            and b else None
    return {"wall_ratio": ratio("wall_s"), "setup_ratio": ratio("setup_s_median"),
            f"{NAME}_takeover_ratio": ratio(f"{NAME}_takeover_s_median"),
            f"{NAME}_outage_ratio": ratio(f"{NAME}_outage_s_median")}


def ratio_ci95(on: Sequence[float], off: Sequence[float], resamples: int = BOOTSTRAP_B,
               seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """A 95 % percentile-bootstrap interval for median(on) / median(off): each side resampled
    with replacement `resamples` times from `random.Random(seed)`, so the same samples always
    give the same interval. (low, high) to 3 decimals; None when either side has fewer than 3
    values, or when a bound is not finite (resamples of `off` with a median of 0)."""
    if len(on) < 3 or len(off) < 3 or resamples < 1:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        a = statistics.median(rng.choices(on, k=len(on)))
        b = statistics.median(rng.choices(off, k=len(off)))
        ratios.append(a / b if b else math.inf)
    ratios.sort()
    cut = int(resamples * 0.025)  # as many resamples left out below the interval as above it
    low, high = ratios[cut], ratios[resamples - 1 - cut]
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return round(low, 3), round(high, 3)


def within(ratio: float | None, tolerance: float = WITHIN) -> bool:
    """Whether on / off is within `tolerance` of 1 (False when there is no ratio)."""
    return ratio is not None and 1 - tolerance <= ratio <= 1 + tolerance


def plan(rounds: int = ROUNDS, pool_on: int = POOL_ON) -> list[tuple[int, int]]:
    """The runs in the order they run, as (pool size, round from 1): ABBA, i.e. off then on in
    odd rounds, on then off in even ones, so that a linear drift weighs on both sides alike."""
    runs: list[tuple[int, int]] = []
    for r in range(1, rounds + 1):
        order = (POOL_OFF, pool_on) if r % 2 else (pool_on, POOL_OFF)
        runs += [(pool, r) for pool in order]
    return runs


def command(pool: int, junit: Path, history: Path, workers: int = WORKERS,
            repeat: int = REPEAT) -> list[str]:
    """The pytest command line of one run with `--lab-pool pool`."""
    return [sys.executable, "-m", "pytest", "-n", str(workers), "-p", "no:cacheprovider",
            "-q", f"--lab-pool={pool}", "--repeat", str(repeat), "-k", SELECT,
            f"--junitxml={junit}", "--history", str(history), *SCENARIOS]


def scenarios(workers: int, repeat: int) -> str:
    """What a run runs, as a reader would type it."""
    return f"{' '.join(SCENARIOS)} -k {SELECT} --repeat {repeat} -n {workers}"


def run_suite(pool: int, outdir: Path, round_: int = 1, workers: int = WORKERS,
              repeat: int = REPEAT) -> dict[str, Any]:
    """Run the selected scenario once with `--lab-pool pool`; its summary."""
    tag = f"n{workers}-pool{pool}-r{round_}"
    junit = outdir / f"{tag}.xml"
    cmd = command(pool, junit, outdir / f"history-{tag}.jsonl", workers, repeat)
    env = {**os.environ, "HAPAIR_RUN_ID": f"bench-{tag}-{time.strftime('%H%M%S')}"}
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    cases = parse_junit(junit.read_text()) if junit.exists() else []
    return summarize(cases, wall, workers)


def section(runs: list[tuple[int, int, dict[str, Any]]], pool_on: int = POOL_ON,
            workers: int = WORKERS, repeat: int = REPEAT) -> dict[str, Any]:
    """The one-worker comparison from the runs made, as (pool size, round, summary) in the
    order they ran: both sides pooled, their ratios with 95 % intervals and the 5 % verdicts."""
    sides: dict[int, list[dict[str, Any]]] = {POOL_OFF: [], pool_on: []}
    for position, (pool, round_, summary) in enumerate(runs, start=1):
        sides[pool].append({"position": position, "round": round_, **summary})
    off, on = pool_runs(sides[POOL_OFF], workers), pool_runs(sides[pool_on], workers)
    ratios = compare(on, off)
    result: dict[str, Any] = {
        "scenarios": scenarios(workers, repeat),
        "pool_on_size": pool_on,
        "order": [pool for pool, _, _ in runs],  # pool size of each run, in the order they ran
        "pool_off": off, "pool_on": on, **ratios,
    }
    for metric in ("takeover", "outage"):
        key = f"{NAME}_{metric}"
        ci = ratio_ci95(on[f"{key}_s_all"], off[f"{key}_s_all"])
        result[f"{key}_ratio_ci95"] = list(ci) if ci is not None else None
        result[f"{key}_within_5pct"] = within(ratios[f"{key}_ratio"])
    return result


def suite_section(off: dict[str, Any], on: dict[str, Any]) -> dict[str, Any]:
    """The suite's comparison (one run a side, `summarize` results): wall time, setups and,
    for what it is worth (see the module doc), the takeover and outage ratios."""
    return {"scenarios": scenarios(SUITE_WORKERS, SUITE_REPEAT), "pool_on_size": POOL_ON,
            "pool_off": off, "pool_on": on, **compare(on, off)}


def run_all() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hapair-pool-bench-") as tmp:
        out = Path(tmp)
        suite = [run_suite(pool, out, 1, SUITE_WORKERS, SUITE_REPEAT)
                 for pool in (POOL_OFF, POOL_ON)]
        runs = [(pool, round_, run_suite(pool, out, round_)) for pool, round_ in plan()]
    return {**section(runs), "suite": suite_section(*suite)}
