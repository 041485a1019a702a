"""Regressions on hand-made histories: worse than the recent median beyond tolerance, even
inside the SLA; noise, too little history and new versions are not regressions."""

from __future__ import annotations

from typing import Any

from lab.regression import (
    compare,
    regressions,
    runs_by_scenario,
    tolerance,
    version_changes,
)

VERSIONS = {"dnsmasq": "2.90-4", "heartbeat": "1:3.0.6-13", "hapair-lab": "0.1.0"}


def record(run: int, scenario: str = "kill_primary", rep: int | None = None,
           versions: dict[str, str] | None = None, sla_ok: bool = True,
           **metrics: Any) -> dict[str, Any]:
    return {"run_id": f"night-{run:02d}", "scenario": scenario, "profile": "seed",
            "repetition": rep, "wall_time": f"2026-11-{run:02d}T02:00:{rep or 0:02d}+00:00",
            "versions": versions or VERSIONS, "metrics": metrics,
            "sla": {"takeover_s": {"bound": "<= 30", "source": "slas.toml:12", "ok": sla_ok,
                                   "text": ""}}}


def steady(nights: int = 6) -> list[dict[str, Any]]:
    """Takeovers of a steady design: 23.6-24.4 s, leases all kept."""
    return [record(n, rep=r, takeover_s=24.0 + 0.4 * ((n + r) % 3 - 1), lease_survival=1.0,
                   outage_s=0.2)
            for n in range(1, nights + 1) for r in (1, 2, 3)]


def test_an_injected_slower_run_is_a_regression_while_still_inside_its_sla() -> None:
    history = [*steady(), *(record(7, rep=r, takeover_s=29.5, lease_survival=1.0,
                                   outage_s=0.2) for r in (1, 2, 3))]
    assert all(r["sla"]["takeover_s"]["ok"] for r in history)  # 29.5 <= 30: the SLA is quiet
    found = regressions(history)
    assert [(c.scenario, c.metric, c.run_id) for c in found] == [
        ("kill_primary", "takeover_s", "night-07")]
    c = found[0]
    assert c.value == 29.5 and c.baseline == 24.0 and c.baseline_runs == 5
    assert c.allowed is not None and abs(c.allowed - 4.8) < 1e-9  # 20 % of 24 s
    assert c.arrow == "↑"
    assert str(c) == ("kill_primary[seed]: takeover_s 29.5 vs median 24 of 5 runs (worse by "
                      "5.5, tolerance 4.8)")


def test_noise_within_tolerance_is_not_a_regression() -> None:
    history = [*steady(), record(7, takeover_s=28.5, lease_survival=1.0, outage_s=0.6)]
    statuses = {c.metric: c.status for c in compare(history)}
    assert statuses["takeover_s"] == "same"  # +4.5 s < 4.8 s
    assert statuses["outage_s"] == "same"  # +0.4 s: under the 0.5 s floor
    assert not regressions(history)


def test_the_absolute_floor_and_the_direction_of_worse() -> None:
    history = [*steady(), record(7, takeover_s=24.0, lease_survival=0.9, outage_s=0.8)]
    found = {c.metric: c for c in regressions(history)}
    assert set(found) == {"lease_survival", "outage_s"}  # survival fell; 0.6 s > 0.5 s floor
    assert found["lease_survival"].arrow == "↓"
    assert not tolerance("lease_survival").higher_is_worse


def test_one_slow_repetition_is_not_a_slow_run() -> None:
    history = [*steady(), *(record(7, rep=r, takeover_s=t, lease_survival=1.0, outage_s=0.2)
                            for r, t in ((1, 24.1), (2, 35.0), (3, 23.9)))]
    assert not regressions(history)
    better = [*steady(), record(7, takeover_s=15.0, lease_survival=1.0, outage_s=0.2)]
    assert {c.metric: c.status for c in compare(better)}["takeover_s"] == "better"


def test_new_versions_start_a_new_baseline_and_mark_the_trend() -> None:
    newer = {**VERSIONS, "dnsmasq": "2.91-1"}
    history = [*steady(), record(7, versions=newer, takeover_s=29.5, lease_survival=1.0,
                                 outage_s=0.2)]
    assert not regressions(history)
    status = {c.metric: c for c in compare(history)}["takeover_s"]
    assert (status.status, status.baseline, status.arrow) == ("no-baseline", None, "·")
    runs = runs_by_scenario(history)[("kill_primary", "seed")]
    changes = version_changes(runs)
    assert [(c.index, c.run_id, str(c)) for c in changes] == [
        (6, "night-07", "dnsmasq 2.90-4 → 2.91-1")]


def test_too_little_history_judges_nothing() -> None:
    history = [record(1, takeover_s=24.0), record(2, takeover_s=24.0),
               record(3, takeover_s=40.0)]
    (c,) = [c for c in compare(history) if c.metric == "takeover_s"]
    assert (c.status, c.baseline_runs) == ("no-baseline", 2)


def test_only_the_same_scenario_and_profile_make_a_baseline() -> None:
    history = [*steady(), *(record(n, scenario="cable_pull_primary", takeover_s=15.0)
                            for n in range(1, 7)),
               record(7, scenario="cable_pull_primary", takeover_s=24.0)]
    found = regressions(history)
    assert [(c.scenario, c.value, c.baseline) for c in found] == [
        ("cable_pull_primary", 24.0, 15.0)]


def test_a_metric_no_longer_measured_is_reported_as_such() -> None:
    history = [*steady(), record(7, takeover_s=None, lease_survival=1.0, outage_s=0.2)]
    (c,) = [c for c in compare(history) if c.metric == "takeover_s"]
    assert (c.status, c.value, c.baseline) == ("unmeasured", None, 24.0)
    assert not regressions(history)


def test_docker_nodes_are_a_series_of_their_own() -> None:
    slower_in_containers = [{**record(n, rep=1, takeover_s=40.0), "backend": "docker"}
                            for n in range(1, 8)]
    history = [*steady(), *slower_in_containers]
    groups = runs_by_scenario(history)
    assert set(groups) == {("kill_primary", "seed"), ("kill_primary", "seed/docker")}
    assert not regressions(history)  # neither series is the other's baseline
