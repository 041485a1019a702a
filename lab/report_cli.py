"""``lab report [HISTORY...] [--out results/report.html] [--check]``: the nightly's page.

Histories of several machines are read together (they merge by concatenation). ``--check``
ends with exit status 1 when a scenario's latest run broke its SLA or regressed, so a
nightly job fails on either; bad input (an unreadable history) is exit 2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from lab import history
from lab.regression import MIN_RUNS, WINDOW

DEFAULT_HISTORY = Path("results") / "history.jsonl"
DEFAULT_OUT = Path("results") / "report.html"


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="the run history as one HTML page: SLAs, trends, plots")
    p.add_argument("histories", nargs="*", type=Path, metavar="HISTORY",
                   help=f"history files to merge (default: {DEFAULT_HISTORY})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if any scenario's latest run broke its SLA or regressed")
    p.add_argument("--window", type=int, default=WINDOW,
                   help=f"runs a regression baseline is the median of (default {WINDOW})")
    p.add_argument("--min-runs", type=int, default=MIN_RUNS,
                   help=f"earlier runs a baseline needs (default {MIN_RUNS})")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from lab.report_html import write_report

    paths = args.histories or [DEFAULT_HISTORY]
    records = history.load(paths)
    if not records:
        raise ValueError(f"no records in {', '.join(map(str, paths))}")
    summary = write_report(records, [str(p) for p in paths], args.out,
                           time.strftime("%Y-%m-%d %H:%M:%S %Z"), args.window, args.min_runs)
    for line in summary.breaches:
        print(f"SLA breach: {line}")
    for comparison in summary.regressions:
        print(f"regression: {comparison}")
    runs = len({r["run_id"] for r in records})
    print(f"{args.out}: {len(records)} records, {runs} runs; {len(summary.breaches)} SLA "
          f"breach(es), {len(summary.regressions)} regression(s) in the latest runs")
    return 1 if args.check and summary.failed else 0
