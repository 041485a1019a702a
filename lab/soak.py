"""`make soak N=10`: the whole suite N times in a row, to find the tests that fail only sometimes.

Each run is `pytest -n 2 --junitxml=results/soak-<id>/run-K.xml` from the same checkout, its
artifacts in ``results/soak-<id>/run-K/``. Between runs, every lab left behind is removed
(`lab down --all`, by records and cgroups). The runs use a lab root of their own
(``/var/lib/hapair-lab-soak/<id>``, cgroups included), so that cleanup can only ever reach the
soak's own labs -- never a `make lab-up` lab or another pytest run on the same machine.

Afterwards the JUnit files are read back and summed up per test (passes, failures, each
failure's first line) and per run (wall time, counts) into ``results/soak.json``, and two
tables are printed: tests that failed even once come first. The exit status is non-zero if
anything failed in any run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lab.cgroup import DEFAULT_STATE_ROOT

OUTCOME_ORDER = {"passed": 0, "skipped": 1, "failed": 2}


@dataclass(frozen=True)
class Case:
    """One test's outcome in one run; `kind` and `message` only for a failure."""

    test: str
    outcome: str  # passed, failed or skipped
    kind: str = ""  # failure (the test's own assertion) or error (setup/teardown, collection)
    message: str = ""  # the failure's first line


@dataclass
class Run:
    run: int
    wall_s: float
    exit_code: int
    cases: list[Case] = field(default_factory=list)
    xml: str = ""
    problem: str = ""  # why this run has no results (pytest died, no JUnit file)
    cleaned: list[str] = field(default_factory=list)  # labs it left behind

    def counts(self) -> dict[str, int]:
        found = {"tests": len(self.cases), "passed": 0, "failed": 0, "skipped": 0}
        for case in self.cases:
            found[case.outcome] += 1
        return found


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_junit(text: str) -> list[Case]:
    """The outcome of every test in one pytest JUnit XML file, one Case per test.

    pytest reports a test twice when its call failed and its teardown errored (one
    <testcase> each): such a test counts once, as failed, with the first failure's line."""
    root = ET.fromstring(text)
    merged: dict[str, Case] = {}
    for element in root.iter("testcase"):
        classname, name = element.get("classname", ""), element.get("name", "")
        test = f"{classname}::{name}" if classname else name
        case = Case(test, "passed")
        for kind in ("failure", "error"):
            bad = element.find(kind)
            if bad is not None:
                message = first_line(bad.get("message")) or first_line(bad.text)
                case = Case(test, "failed", kind, message)
                break
        else:
            if element.find("skipped") is not None:
                case = Case(test, "skipped")
        old = merged.get(test)
        if old is None or OUTCOME_ORDER[case.outcome] > OUTCOME_ORDER[old.outcome]:
            merged[test] = case
    return list(merged.values())


def summarize(runs: Iterable[Run]) -> dict[str, Any]:
    """Per test and per run, JSON-ready; tests that failed even once first (most failures
    first), then the rest by name."""
    runs = list(runs)
    tests: dict[str, dict[str, Any]] = {}
    for run in runs:
        for case in run.cases:
            entry = tests.setdefault(case.test, {"runs": 0, "passed": 0, "failed": 0,
                                                 "skipped": 0, "failures": []})
            entry["runs"] += 1
            entry[case.outcome] += 1
            if case.outcome == "failed":
                entry["failures"].append({"run": run.run, "kind": case.kind,
                                          "message": case.message})
    ordered = dict(sorted(tests.items(), key=lambda kv: (-kv[1]["failed"], kv[0])))
    per_run = [{"run": r.run, "wall_s": round(r.wall_s, 1), "exit_code": r.exit_code,
                **r.counts(), "xml": r.xml, "problem": r.problem, "labs_left": r.cleaned}
               for r in runs]
    failed_tests = [name for name, t in ordered.items() if t["failed"]]
    return {
        "runs": per_run,
        "tests": ordered,
        "failed_tests": failed_tests,
        "runs_with_problems": [r.run for r in runs if r.problem],
        "ok": not failed_tests and not any(r.problem for r in runs),
    }


def run_pytest(run: int, soak_dir: Path, workers: int, pytest_args: list[str],
               env: dict[str, str]) -> Run:
    """One whole suite run; its JUnit file is read back here."""
    xml = soak_dir / f"run-{run}.xml"
    argv = [sys.executable, "-m", "pytest", f"--junitxml={xml}",
            *(["-n", str(workers)] if workers else []), *pytest_args]
    started = time.monotonic()
    code = subprocess.call(argv, env={**env, "HAPAIR_RUN_ID": f"{soak_dir.name}/run-{run}"})
    result = Run(run, time.monotonic() - started, code, xml=str(xml))
    try:
        result.cases = parse_junit(xml.read_text())
    except (OSError, ET.ParseError) as exc:
        result.problem = f"no JUnit results ({exc}); pytest exit code {code}"
    if code not in (0, 1) and not result.problem:
        result.problem = f"pytest exit code {code}"
    return result


def remove_leftover_labs(lab_root: Path) -> list[str]:
    """`lab down --all` inside the soak's own lab root: every lab there, by its records."""
    from lab import state

    saved = os.environ.get("HAPAIR_LAB_ROOT")
    os.environ["HAPAIR_LAB_ROOT"] = str(lab_root)
    try:
        names = state.known_labs()
        for name in names:
            state.teardown(name)
        return names
    finally:
        if saved is None:
            del os.environ["HAPAIR_LAB_ROOT"]
        else:
            os.environ["HAPAIR_LAB_ROOT"] = saved


def print_tables(summary: dict[str, Any], console: Console) -> None:
    tests = Table(title="soak: tests (failed at least once first)")
    for column in ("test", "passed", "failed", "skipped", "first failure"):
        tests.add_column(column, justify="right" if column in ("passed", "failed", "skipped")
                         else "left", overflow="fold")
    for name, t in summary["tests"].items():
        first = t["failures"][0] if t["failures"] else None
        tests.add_row(name, str(t["passed"]), f"[red]{t['failed']}[/]" if t["failed"] else "0",
                      str(t["skipped"]),
                      f"run {first['run']}: {first['message'][:160]}" if first else "")
    console.print(tests)
    runs = Table(title="soak: runs")
    for column in ("run", "wall s", "tests", "passed", "failed", "skipped", "exit", "labs left"):
        runs.add_column(column, justify="right")
    for r in summary["runs"]:
        runs.add_row(str(r["run"]), f"{r['wall_s']:.1f}", str(r["tests"]), str(r["passed"]),
                     str(r["failed"]), str(r["skipped"]), str(r["exit_code"]),
                     str(len(r["labs_left"])))
    console.print(runs)
    for r in summary["runs"]:
        if r["problem"]:
            console.print(f"[red]run {r['run']}: {r['problem']}[/]")
    failed = summary["failed_tests"]
    if failed:  # again at the bottom, where a long table leaves the eye
        console.print(f"[red]{len(failed)} tests failed at least once:[/] " + ", ".join(failed))
    elif summary["ok"]:
        console.print(f"[green]every test passed in all {len(summary['runs'])} runs[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.soak",
        description="run the suite N times in a row; everything after -- goes to pytest")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="pytest -n (0: no xdist)")
    parser.add_argument("--results", type=Path,
                        default=Path(os.environ.get("HAPAIR_RESULTS", "results")))
    parser.add_argument("--lab-root", type=Path, default=None,
                        help=f"the runs' lab root (default {DEFAULT_STATE_ROOT}-soak/<id>)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    soak_id = time.strftime("%Y%m%d-%H%M%S")
    soak_dir = args.results / f"soak-{soak_id}"
    soak_dir.mkdir(parents=True, exist_ok=True)
    lab_root = args.lab_root or Path(f"{DEFAULT_STATE_ROOT}-soak") / soak_id
    env = {**os.environ, "HAPAIR_LAB_ROOT": str(lab_root),
           "HAPAIR_RESULTS": str(args.results)}
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # make's output piped to a log: keep test ids whole
    runs: list[Run] = []
    try:
        for k in range(1, args.runs + 1):
            console.print(f"[bold]soak run {k}/{args.runs}[/] -> {soak_dir}/run-{k}.xml")
            run = run_pytest(k, soak_dir, args.workers, pytest_args, env)
            run.cleaned = remove_leftover_labs(lab_root)
            runs.append(run)
            counts = run.counts()
            console.print(f"run {k}: {counts['passed']} passed, {counts['failed']} failed, "
                          f"{counts['skipped']} skipped in {run.wall_s:.0f} s" +
                          (f"; removed leftover labs {', '.join(run.cleaned)}" if run.cleaned
                           else ""))
    finally:
        remove_leftover_labs(lab_root)  # an interrupted run leaves its labs too
    if args.lab_root is None:
        # the soak's own root only: its shared parent may be another soak's in the making
        for empty in (lab_root / "labs", lab_root):
            try:
                empty.rmdir()
            except OSError:
                break
    summary = {"soak_id": soak_id, "results": str(soak_dir), "lab_root": str(lab_root),
               "pytest_args": pytest_args, "workers": args.workers,
               **summarize(runs)}
    out = args.results / "soak.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print_tables(summary, console)
    console.print(f"written to {out}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
