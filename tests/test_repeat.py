"""The repeat summary: scenarios grouped across their repetitions, metrics' spread."""

from __future__ import annotations

from lab.pytest_plugin import scenario_of
from lab.repeat import summarize


def test_scenario_of_strips_only_the_repetition() -> None:
    assert scenario_of("s/test_f.py::test_kill_primary[r3]") == "s/test_f.py::test_kill_primary"
    assert scenario_of("s/t.py::test_x[F14-kept-r2]") == "s/t.py::test_x[F14-kept]"
    assert scenario_of("s/t.py::test_x[udp]") == "s/t.py::test_x[udp]"


def test_summary_counts_passes_and_spreads_metrics() -> None:
    lines = summarize([
        ("k", True, {"hapair.takeover_s": 2.0, "hapair.leases_lost": 0}),
        ("k", False, {"hapair.takeover_s": 4.0}),
        ("k", True, {"hapair.takeover_s": 3.0, "hapair.lease_survival": None}),
        ("s", True, {}),
    ], ("takeover_s", "leases_lost", "lease_survival"))
    assert lines == ["k: 2/3 passed; takeover_s 2 / 3 / 4; leases_lost 0 / 0 / 0",
                     "s: 1/1 passed"]
