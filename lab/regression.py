"""Regressions: a run measurably worse than the runs before it, even inside its SLA (pure).

An SLA says what is acceptable; it stays quiet while a takeover creeps from 16 s to 20 s under
a 21.5 s bound. Here the latest run of each scenario and profile is compared, metric by
metric, with the median of the last ``window`` runs of the same scenario, profile and
versions (a new dnsmasq is a new baseline, not a regression: the trend plot marks it). The
latest run's own value is the median of its repetitions (``--repeat``), so one slow
repetition alone does not make a regression; a whole slow run does.

Tolerance, per metric: worse by more than ``max(relative x baseline, absolute)``. The default
is 20 % with a 0.5 s floor. 20 %: the stock IPv6addr agent alone spreads 5-7 s per VIP, about
+-2 s of a 16 s takeover (12 %), and two labs side by side on 2 cores add scheduling noise; a
change must stand out of that. 0.5 s: metrics near zero (a 0.2 s outage on a disk error, a
0.1-0.3 s DHCP wait) would otherwise flag a few lost 20 Hz queries; half a second is ten query
intervals, above the jitter measured there, and any lost lease or duplicate address (counts)
still exceeds it. Shares (lease survival) get an absolute tolerance of their own.
A baseline needs ``min_runs`` earlier runs: the median of fewer is one noisy night.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.history import series, versions_key

WINDOW = 5
MIN_RUNS = 3
# followed in every scenario that measures them, SLA or not
TRACKED = ("takeover_s", "outage_s", "fault_outage_s", "dhcp_outage_s", "split_brain_s",
           "lease_survival", "leases_lost", "duplicate_ips")


@dataclass(frozen=True)
class Tolerance:
    higher_is_worse: bool = True
    relative: float = 0.20
    absolute: float = 0.5

    def allowed(self, baseline: float) -> float:
        return max(self.relative * abs(baseline), self.absolute)


DEFAULT_TOLERANCE = Tolerance()
TOLERANCES: dict[str, Tolerance] = {
    "lease_survival": Tolerance(higher_is_worse=False, relative=0.0, absolute=0.05),
    "success_rate": Tolerance(higher_is_worse=False, relative=0.0, absolute=0.02),
    "dhcp_bound_at_end": Tolerance(higher_is_worse=False, relative=0.0, absolute=0.5),
}


def tolerance(metric: str) -> Tolerance:
    return TOLERANCES.get(metric, DEFAULT_TOLERANCE)


@dataclass(frozen=True)
class Run:
    """One run (run id) of one scenario in one profile: its repetitions' records."""

    run_id: str
    records: tuple[Mapping[str, Any], ...]

    @property
    def wall_time(self) -> str:
        return min(str(r.get("wall_time", "")) for r in self.records)

    @property
    def versions(self) -> tuple[tuple[str, str], ...]:
        return versions_key(self.records[0])

    def values(self, metric: str) -> list[float]:
        return [v for r in self.records if (v := number((r.get("metrics") or {}).get(metric)))
                is not None]

    def value(self, metric: str) -> float | None:
        """The median of the repetitions' values (None: measured in none of them)."""
        values = self.values(metric)
        return statistics.median(values) if values else None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def runs_by_scenario(records: Iterable[Mapping[str, Any]]
                     ) -> dict[tuple[str, str], list[Run]]:
    """(scenario, profile) -> its runs, oldest first; the profile is the record's series
    (``fast/docker`` for docker nodes)."""
    grouped: dict[tuple[str, str], dict[str, list[Mapping[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    for r in records:
        grouped[(str(r["scenario"]), series(r))][str(r["run_id"])].append(r)
    out = {}
    for key, runs in grouped.items():
        made = [Run(run_id, tuple(sorted(rs, key=lambda r: str(r.get("wall_time", "")))))
                for run_id, rs in runs.items()]
        out[key] = sorted(made, key=lambda run: (run.wall_time, run.run_id))
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Comparison:
    scenario: str
    profile: str
    metric: str
    run_id: str
    value: float | None
    baseline: float | None
    baseline_runs: int
    allowed: float | None
    status: str  # regression, better, same, no-baseline, unmeasured

    @property
    def arrow(self) -> str:
        """Where the value went against its baseline: up, down, level, or no history."""
        if self.value is None or self.baseline is None:
            return "·"
        if self.allowed is not None and abs(self.value - self.baseline) <= self.allowed:
            return "→"
        return "↑" if self.value > self.baseline else "↓"

    def __str__(self) -> str:
        label = f"{self.scenario}[{self.profile}]: {self.metric}"
        if self.status == "regression" and self.value is not None and self.baseline is not None:
            return (f"{label} {self.value:.3g} vs median {self.baseline:.3g} of "
                    f"{self.baseline_runs} runs (worse by {abs(self.value - self.baseline):.3g},"
                    f" tolerance {self.allowed:.3g})")
        return f"{label} {self.status}"


def compare_run(runs: Sequence[Run], metric: str, scenario: str, profile: str,
                window: int = WINDOW, min_runs: int = MIN_RUNS) -> Comparison:
    """The last of ``runs`` against the median of the ``window`` runs before it that ran the
    same versions."""
    latest, earlier = runs[-1], runs[:-1]
    same = [r for r in earlier if r.versions == latest.versions][-window:]
    base_values = [v for r in same for v in r.values(metric)]
    value = latest.value(metric)
    baseline = statistics.median(base_values) if base_values else None
    used = sum(1 for r in same if r.values(metric))
    if baseline is None or used < min_runs:
        return Comparison(scenario, profile, metric, latest.run_id, value, None, used, None,
                          "no-baseline")
    tol = tolerance(metric)
    allowed = tol.allowed(baseline)
    if value is None:
        return Comparison(scenario, profile, metric, latest.run_id, None, baseline, used,
                          allowed, "unmeasured")
    worse = value - baseline if tol.higher_is_worse else baseline - value
    status = "regression" if worse > allowed else "better" if -worse > allowed else "same"
    return Comparison(scenario, profile, metric, latest.run_id, value, baseline, used, allowed,
                      status)


def metrics_of(runs: Sequence[Run]) -> list[str]:
    """What to follow for one scenario: the tracked metrics and every metric its SLA bounds,
    those measured as numbers in at least one run."""
    bounded = {m for run in runs for r in run.records for m in (r.get("sla") or {})}
    wanted = [*TRACKED, *sorted(bounded - set(TRACKED))]
    return [m for m in wanted if any(run.values(m) for run in runs)]


def compare(records: Iterable[Mapping[str, Any]], window: int = WINDOW,
            min_runs: int = MIN_RUNS) -> list[Comparison]:
    """Every followed metric of every scenario's latest run against its baseline."""
    out = []
    for (scenario, profile), runs in runs_by_scenario(records).items():
        for metric in metrics_of(runs):
            out.append(compare_run(runs, metric, scenario, profile, window, min_runs))
    return out


def regressions(records: Iterable[Mapping[str, Any]], window: int = WINDOW,
                min_runs: int = MIN_RUNS) -> list[Comparison]:
    return [c for c in compare(records, window, min_runs) if c.status == "regression"]


@dataclass(frozen=True)
class VersionChange:
    index: int  # the first run (in a scenario's run order) with the new versions
    run_id: str
    changed: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def __str__(self) -> str:
        return ", ".join(f"{k} {old or '-'} → {new or '-'}"
                         for k, (old, new) in sorted(self.changed.items()))


def version_changes(runs: Sequence[Run]) -> list[VersionChange]:
    """Where the versions under test changed between consecutive runs, and what changed."""
    out = []
    for i in range(1, len(runs)):
        before, after = dict(runs[i - 1].versions), dict(runs[i].versions)
        changed = {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after))
                   if before.get(k) != after.get(k)}
        if changed:
            out.append(VersionChange(i, runs[i].run_id, changed))
    return out
