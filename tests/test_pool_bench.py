"""The warm-lab bench section's reading of JUnit files and its summary (recorded shape)."""

from __future__ import annotations

from lab import pool_bench

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
