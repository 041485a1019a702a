"""lab.soak: JUnit parsing and the per-test / per-run summary (pure: hand-made XML)."""

from __future__ import annotations

import json

from lab.soak import Case, Run, parse_junit, summarize

RUN_1 = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
  <testcase classname="tests.test_a" name="test_ok" time="0.1"/>
  <testcase classname="tests.test_a" name="test_flaky[seed]" time="2.0">
    <properties><property name="outage_s" value="1.2"/></properties>
    <failure message="AssertionError: outage 3.1 s &gt; 2.0 s&#10;assert 3.1 &lt;= 2.0">
      long traceback</failure>
  </testcase>
  <testcase classname="scenarios.test_b" name="test_skipped" time="0">
    <skipped type="pytest.skip" message="needs root">skip</skipped>
  </testcase>
  <testcase classname="scenarios.test_b" name="test_teardown_breaks" time="1.0"/>
  <testcase classname="scenarios.test_b" name="test_teardown_breaks" time="0.5">
    <error message="failed on teardown with &quot;FileNotFoundError: [Errno 2] x&quot;">
      E FileNotFoundError</error>
  </testcase>
</testsuite></testsuites>
"""

RUN_2 = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="0" skipped="1" tests="4">
  <testcase classname="tests.test_a" name="test_ok" time="0.1"/>
  <testcase classname="tests.test_a" name="test_flaky[seed]" time="2.0"/>
  <testcase classname="scenarios.test_b" name="test_skipped" time="0">
    <skipped message="needs root"/>
  </testcase>
  <testcase classname="scenarios.test_b" name="test_teardown_breaks" time="1.0"/>
  <testcase classname="" name="scenarios/test_c.py" time="0">
    <error message="">
ImportError: cannot import name 'gone'
more</error>
  </testcase>
</testsuite></testsuites>
"""


def test_parse_junit_one_case_per_test() -> None:
    cases = {c.test: c for c in parse_junit(RUN_1)}
    assert cases == {
        "tests.test_a::test_ok": Case("tests.test_a::test_ok", "passed"),
        "tests.test_a::test_flaky[seed]": Case(
            "tests.test_a::test_flaky[seed]", "failed", "failure",
            "AssertionError: outage 3.1 s > 2.0 s"),
        "scenarios.test_b::test_skipped": Case("scenarios.test_b::test_skipped", "skipped"),
        # passed call + errored teardown: one test, failed
        "scenarios.test_b::test_teardown_breaks": Case(
            "scenarios.test_b::test_teardown_breaks", "failed", "error",
            'failed on teardown with "FileNotFoundError: [Errno 2] x"'),
    }


def test_failure_without_message_uses_first_line_of_text() -> None:
    cases = {c.test: c for c in parse_junit(RUN_2)}
    assert cases["scenarios/test_c.py"] == Case(
        "scenarios/test_c.py", "failed", "error", "ImportError: cannot import name 'gone'")


def test_a_failure_is_never_hidden_by_a_later_pass_of_the_same_test() -> None:
    xml = """<testsuites><testsuite>
      <testcase classname="m" name="t"><failure message="boom"/></testcase>
      <testcase classname="m" name="t"/>
    </testsuite></testsuites>"""
    assert parse_junit(xml) == [Case("m::t", "failed", "failure", "boom")]


def test_summary_per_test_and_per_run() -> None:
    runs = [Run(1, 612.34, 1, parse_junit(RUN_1), xml="r/run-1.xml", cleaned=["t1-3"]),
            Run(2, 598.0, 1, parse_junit(RUN_2), xml="r/run-2.xml")]
    summary = summarize(runs)
    assert list(summary["tests"])[:3] == [
        "scenarios.test_b::test_teardown_breaks", "scenarios/test_c.py",
        "tests.test_a::test_flaky[seed]"]  # failed at least once first, then by name
    assert summary["failed_tests"] == list(summary["tests"])[:3]
    flaky = summary["tests"]["tests.test_a::test_flaky[seed]"]
    assert flaky == {"runs": 2, "passed": 1, "failed": 1, "skipped": 0, "failures": [
        {"run": 1, "kind": "failure", "message": "AssertionError: outage 3.1 s > 2.0 s"}]}
    assert summary["tests"]["tests.test_a::test_ok"]["passed"] == 2
    assert summary["runs"][0] == {"run": 1, "wall_s": 612.3, "exit_code": 1, "tests": 4,
                                  "passed": 1, "failed": 2, "skipped": 1,
                                  "xml": "r/run-1.xml", "problem": "", "labs_left": ["t1-3"]}
    assert summary["ok"] is False
    json.dumps(summary)  # the file is JSON


def test_all_green_is_ok_but_a_run_without_results_is_not() -> None:
    green = Run(1, 1.0, 0, parse_junit(RUN_2.replace(
        '<error message="">', '<system-out>').replace("more</error>", "more</system-out>")))
    assert summarize([green])["ok"] is True
    dead = Run(2, 1.0, 3, [], problem="no JUnit results; pytest exit code 3")
    summary = summarize([green, dead])
    assert summary["ok"] is False and summary["runs_with_problems"] == [2]
