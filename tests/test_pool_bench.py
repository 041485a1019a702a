"""The warm-lab bench section's reading of JUnit files and its summary (recorded shape)."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

from lab import bench, pool_bench

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="scenarios.test_failover" name="test_kill_primary[1]" time="30.1">
 <properties><property name="hapair.setup_s" value="21.5"/>
  <property name="hapair.takeover_s" value="2.2"/><property name="hapair.outage_s" value="2.3"/>
 </properties></testcase>
<testcase classname="scenarios.test_failover" name="test_kill_primary[2]" time="12.0">
 <properties><property name="hapair.setup_s" value="0.02"/>
  <property name="hapair.takeover_s" value="2.6"/><property name="hapair.outage_s" value="2.7"/>
 </properties></testcase>
<testcase classname="scenarios.test_failover" name="test_kill_primary[3]" time="12.0">
 <properties><property name="hapair.setup_s" value="0.04"/>
  <property name="hapair.takeover_s" value="9.9"/></properties>
 <failure message="takeover_s 9.9 &gt; 6.5">...</failure></testcase>
<testcase classname="scenarios.test_failover" name="test_graceful_shutdown_primary[1]" time="40">
 <properties><property name="hapair.setup_s" value="19.0"/></properties></testcase>
</testsuite></testsuites>"""


def test_cases_carry_outcome_and_properties() -> None:
    cases = pool_bench.parse_junit(JUNIT)
    assert [(c.name, c.outcome) for c in cases] == [
        ("test_kill_primary[1]", "passed"), ("test_kill_primary[2]", "passed"),
        ("test_kill_primary[3]", "failed"), ("test_graceful_shutdown_primary[1]", "passed")]
    assert cases[0].number("hapair.takeover_s") == 2.2 and cases[3].number("nope") is None


def test_summary_leaves_each_workers_first_boot_and_failed_runs_out() -> None:
    s = pool_bench.summarize(pool_bench.parse_junit(JUNIT), wall_s=95.04, workers=2)
    assert s["wall_s"] == 95.0 and s["tests"] == 4 and s["failed"] == 1
    assert s["setup_s_median_after_first"] == 0.03      # 21.5 and 19.0 were the boots
    assert s["kill_primary_takeover_s_all"] == [2.2, 2.6]  # the failed run is not a figure
    assert s["kill_primary_outage_s_median"] == 2.5


def test_ratios_are_on_over_off_and_none_when_unmeasured() -> None:
    on = {"wall_s": 60.0, "setup_s_median": 0.5, "kill_primary_takeover_s_median": 2.4,
          "kill_primary_outage_s_median": None}
    off = {"wall_s": 120.0, "setup_s_median": 20.0, "kill_primary_takeover_s_median": 2.4,
           "kill_primary_outage_s_median": 2.5}
    r = pool_bench.compare(on, off)
    assert r == {"wall_ratio": 0.5, "setup_ratio": 0.025, "kill_primary_takeover_ratio": 1.0,
                 "kill_primary_outage_ratio": None}


# -- interleaved runs, pooled crashes, the interval ---------------------------------------------
def _run(takeovers: list[float], outages: list[float], setups: list[float], failed: int = 0
         ) -> str:
    """A recorded-shape JUnit file of one run: one passed crash per takeover, then `failed`
    failed ones (their figures must not count)."""
    cases = [f"""<testcase classname="scenarios.test_failover" name="test_kill_primary[r{i}]">
 <properties><property name="hapair.setup_s" value="{s}"/>
  <property name="hapair.takeover_s" value="{t}"/><property name="hapair.outage_s" value="{o}"/>
 </properties></testcase>""" for i, (t, o, s) in enumerate(zip(takeovers, outages, setups,
                                                                 strict=True), start=1)]
    cases += [f"""<testcase classname="scenarios.test_failover" name="test_kill_primary[f{i}]">
 <properties><property name="hapair.setup_s" value="0.05"/>
  <property name="hapair.takeover_s" value="99"/><property name="hapair.outage_s" value="99"/>
 </properties><failure message="takeover_s 99 &gt; 6.5">...</failure></testcase>"""
              for i in range(failed)]
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
            + "".join(cases) + "</testsuite></testsuites>")


def _summary(takeovers: list[float], outages: list[float], setups: list[float], wall: float,
             failed: int = 0) -> dict[str, Any]:
    """One run's summary, as `run_suite` makes it from the JUnit file pytest wrote."""
    junit = _run(takeovers, outages, setups, failed)
    return pool_bench.summarize(pool_bench.parse_junit(junit), wall, workers=2)


def test_the_plan_is_abba_off_on_on_off() -> None:
    assert pool_bench.plan(rounds=2, pool_on=2) == [(0, 1), (2, 1), (2, 2), (0, 2)]
    assert pool_bench.plan() == [(0, 1), (2, 1), (2, 2), (0, 2)]  # ROUNDS = 2, POOL_ON = 2
    assert pool_bench.plan(rounds=4, pool_on=1) == [
        (0, 1), (1, 1), (1, 2), (0, 2), (0, 3), (1, 3), (1, 4), (0, 4)]
    # each side's mean position is the same: a linear drift weighs on both alike
    for rounds in (2, 4, 6):
        runs = pool_bench.plan(rounds=rounds)
        on = [i for i, (pool, _) in enumerate(runs) if pool]
        off = [i for i, (pool, _) in enumerate(runs) if not pool]
        assert len(on) == len(off) == rounds and sum(on) == sum(off)


def test_the_command_selects_only_the_crash_on_one_worker_unless_told() -> None:
    cmd = pool_bench.command(2, Path("/t/j.xml"), Path("/t/h.jsonl"))
    assert cmd[1:] == ["-m", "pytest", "-n", "1", "-p", "no:cacheprovider", "-q",
                       "--lab-pool=2", "--repeat", "10", "-k", "kill_primary",
                       "--junitxml=/t/j.xml", "--history", "/t/h.jsonl",
                       "scenarios/test_failover.py"]
    suite = pool_bench.command(0, Path("/t/j.xml"), Path("/t/h.jsonl"), workers=2, repeat=12)
    assert suite[3:5] == ["-n", "2"] and suite[9:11] == ["--repeat", "12"]


def test_the_suite_comparison_is_one_run_a_side_at_two_workers() -> None:
    off = _summary([2.0, 2.2], [2.0, 2.2], [12.0, 12.5], wall=150.0)
    on = _summary([2.2, 2.4], [2.2, 2.4], [12.0, 0.04], wall=100.0)
    suite = pool_bench.suite_section(off, on)
    assert suite["scenarios"] == "scenarios/test_failover.py -k kill_primary --repeat 12 -n 2"
    assert suite["wall_ratio"] == 0.667 and suite["kill_primary_takeover_ratio"] == 1.095
    assert suite["pool_off"] is off and suite["pool_on"] is on


def test_a_side_pools_its_runs_crashes_and_setups_after_each_runs_first_boots() -> None:
    first = _summary([2.0, 2.2, 2.4], [2.1, 2.3, 2.5], [14.0, 13.0, 0.05], wall=60.04)
    second = _summary([3.0, 3.2, 3.4], [3.1, 3.3, 3.5], [15.0, 0.2, 14.5], wall=70.0, failed=1)
    side = pool_bench.pool_runs([first, second], workers=2)
    assert side["wall_s"] == 130.0 and side["tests"] == 7 and side["failed"] == 1
    # every passed crash of both runs, the failed one left out
    assert side["kill_primary_takeover_s_all"] == [2.0, 2.2, 2.4, 3.0, 3.2, 3.4]
    assert side["kill_primary_takeover_s_median"] == 2.7      # not a median of run medians
    assert side["kill_primary_outage_s_median"] == 2.8
    # run 1 keeps 0.05 (14.0, 13.0 were its boots), run 2 keeps 0.05 (failed) and 0.2
    assert side["setup_s_median_after_first"] == 0.05
    assert side["setup_s_median"] == 13.0                     # all 7 setups, boots too: the 4th
    assert side["runs"] == [first, second]


def test_pooled_medians_differ_from_a_mean_of_run_medians() -> None:
    # a fast run of 3 crashes and a slow one of 5: the pooled median sits in the slow run
    fast = _summary([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [9.0, 9.0, 0.1], wall=10.0)
    slow = _summary([2.0] * 5, [2.0] * 5, [9.0, 9.0, 0.1, 0.1, 0.1], wall=10.0)
    assert pool_bench.pool_runs([fast, slow])["kill_primary_takeover_s_median"] == 2.0


def test_the_section_pools_each_side_keeps_its_runs_in_order_and_judges_5pct() -> None:
    off = [2.0, 2.1, 2.2, 2.3]
    on = [2.05, 2.15, 2.25, 2.35]
    boot = [13.0, 13.5, 0.1, 0.1]
    runs = [(0, 1, _summary(off, off, boot, wall=120.0)),
            (2, 1, _summary(on, [x * 1.2 for x in on], [14.0, 14.0, 0.05, 0.06], wall=80.0)),
            (2, 2, _summary(on, [x * 1.2 for x in on], [14.0, 14.0, 0.04, 0.07], wall=82.0)),
            (0, 2, _summary(off, off, boot, wall=118.0))]
    result = pool_bench.section(runs, pool_on=2, workers=2, repeat=12)
    assert result["order"] == [0, 2, 2, 0]
    assert result["scenarios"] == "scenarios/test_failover.py -k kill_primary --repeat 12 -n 2"
    assert [(r["position"], r["round"]) for r in result["pool_off"]["runs"]] == [(1, 1), (4, 2)]
    assert [(r["position"], r["round"]) for r in result["pool_on"]["runs"]] == [(2, 1), (3, 2)]
    assert result["pool_off"]["wall_s"] == 238.0 and result["pool_on"]["wall_s"] == 162.0
    assert result["pool_on"]["setup_s_median_after_first"] == 0.055
    assert result["wall_ratio"] == 0.681
    assert result["kill_primary_takeover_ratio"] == 1.023       # 2.2 / 2.15
    assert result["kill_primary_outage_ratio"] == 1.228         # 2.64 / 2.15
    assert result["kill_primary_takeover_within_5pct"] is True
    assert result["kill_primary_outage_within_5pct"] is False
    low, high = result["kill_primary_takeover_ratio_ci95"]
    assert low <= 1.023 <= high
    assert result["kill_primary_outage_ratio_ci95"][0] > 1.05   # clearly not within 5 %
    # the bench's table prints scalars: the README's figures are there, by dotted name
    json.dumps(result, allow_nan=False)
    names = dict(bench.flatten({"lab.pool": result}))
    for key in ("wall_ratio", "setup_ratio", "kill_primary_takeover_ratio",
                "kill_primary_outage_ratio", "kill_primary_takeover_within_5pct",
                "pool_on.setup_s_median_after_first", "pool_off.kill_primary_takeover_s_median",
                "pool_off.kill_primary_outage_s_median", "pool_on.wall_s"):
        assert f"lab.pool.{key}" in names, key


def test_the_interval_is_reproducible_with_a_seed_and_holds_the_point_ratio() -> None:
    rng = random.Random(7)
    off = [rng.gauss(2.4, 0.25) for _ in range(16)]
    on = [rng.gauss(2.5, 0.25) for _ in range(16)]
    ci = pool_bench.ratio_ci95(on, off, seed=1)
    assert ci is not None and ci == pool_bench.ratio_ci95(on, off, seed=1)
    assert ci != pool_bench.ratio_ci95(on, off, seed=2)       # the seed is what fixes it
    low, high = ci
    assert low < statistics.median(on) / statistics.median(off) < high
    assert round(low, 3) == low and round(high, 3) == high
    assert 0.8 < low < high < 1.25


def test_the_interval_needs_three_values_a_side() -> None:
    assert pool_bench.ratio_ci95([2.0, 2.1], [2.0, 2.1, 2.2]) is None
    assert pool_bench.ratio_ci95([2.0, 2.1, 2.2], [2.0, 2.1]) is None
    assert pool_bench.ratio_ci95([], []) is None
    assert pool_bench.ratio_ci95([2.0, 2.1, 2.2], [2.0, 2.1, 2.2]) is not None
    assert pool_bench.ratio_ci95([2.0, 2.1, 2.2], [0.0, 0.0, 0.0]) is None  # no finite ratio


def test_the_interval_narrows_with_more_data_of_the_same_distribution() -> None:
    def width(n: int) -> float:
        rng = random.Random(n)
        on = [rng.gauss(2.5, 0.3) for _ in range(n)]
        off = [rng.gauss(2.5, 0.3) for _ in range(n)]
        ci = pool_bench.ratio_ci95(on, off)
        assert ci is not None
        return ci[1] - ci[0]
    assert width(160) < width(16) / 2 < width(4)
    # and it is a 95 % one: the ratio's standard error is about sqrt(2) x 1.25 x 0.3 / sqrt(n)
    # / 2.5 (a median's, relative, on both sides), 0.0168 for n = 160; 2 x 1.96 of it is 0.066
    # (a 90 % interval would be 0.055, a 99 % one 0.087)
    assert 0.06 < width(160) < 0.08


def test_within_5pct_is_inclusive_and_false_without_a_ratio() -> None:
    assert pool_bench.within(1.0) and pool_bench.within(0.95) and pool_bench.within(1.05)
    assert not pool_bench.within(1.051) and not pool_bench.within(0.949)
    assert not pool_bench.within(None)
