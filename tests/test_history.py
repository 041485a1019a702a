"""The run history: what a record holds, appends that stay whole across processes, merged
histories, and one record per scenario run written by the pytest plugin."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from lab import history
from lab.checks import Metrics
from lab.verdict import Verdict, parse_bound
from tests.test_sla import fake_suite

pytest_plugins = ["pytester"]

ENVIRONMENT = {"git_revision": "abc", "git_dirty": False, "host": "h1", "kernel": "6.18",
               "versions": {"dnsmasq": "2.90", "hapair-lab": "0.1.0"}}


def test_a_record_keeps_scalar_metrics_dotted_and_drops_detail() -> None:
    m = Metrics(takeover_s=16.7, registrar_updates={"ok": 2, "failed": 0},
                latency_s={"p50": 0.001, "p99": None, "max": 0.2},
                outages=[{"start": 1.0}], duplicate_ip_detail=[{"ip": "x"}],
                answered_by={"192.168.1.4": {"lsvm1": 10}})
    flat = history.flat_metrics(m.to_dict())
    assert flat["takeover_s"] == 16.7
    assert flat["registrar_updates.ok"] == 2 and flat["latency_s.p99"] is None
    assert not any(k.startswith(("outages", "duplicate_ip_detail", "answered_by",
                                 "lease_survival_detail", "resolver_paths")) for k in flat)


def test_a_complete_record_says_how_the_test_ended_and_where_its_plot_is(
        tmp_path: Path) -> None:
    bound = parse_bound("takeover_s", "<= 17", "slas.toml:5")
    part = history.make_record(run_id="r1", test_id="s.py::test_kill_primary[r2]",
                               scenario="kill_primary", profile="fast",
                               metrics=Metrics(takeover_s=18.4).to_dict(),
                               verdicts=[Verdict(bound, 18.4, False, "kill_primary[fast]")],
                               repetition=2,
                               timeline=str(tmp_path / "r1" / "t" / "probes" / "timeline.png"))
    record = history.complete(part, ENVIRONMENT, "failed", "2026-11-30T01:00:00+00:00", 71.23456,
                              tmp_path)
    assert record["timeline"] == "r1/t/probes/timeline.png"
    assert record["passed"] is False and record["duration_s"] == 71.235
    assert record["sla"]["takeover_s"] == {
        "bound": "<= 17", "source": "slas.toml:5", "ok": False,
        "text": "kill_primary[fast]: takeover_s 18.4 > 17 (slas.toml:5)"}
    assert history.breaches(record) == ["kill_primary[fast]: takeover_s 18.4 > 17 (slas.toml:5)"]
    assert record["versions"]["dnsmasq"] == "2.90" and record["repetition"] == 2
    elsewhere = history.complete(part, ENVIRONMENT, "passed", "t", 1.0, tmp_path / "other")
    assert elsewhere["timeline"] == part["timeline"]  # not under the history: kept whole


@pytest.mark.parametrize(("spec", "text"), [("5..8", "5..8"), ("null", "null"),
                                           ("<= 21.5", "<= 21.5"), (0, "== 0")])
def test_a_verdict_keeps_its_bound_as_the_sla_file_reads_it(spec: object, text: str) -> None:
    bound = parse_bound("dhcp_outage_s", spec, "slas.toml:51")
    entry = history.verdict_entry(Verdict(bound, 6.05, bound.holds(6.05), "kill_primary[fast]"))
    assert entry["bound"] == text
    assert parse_bound("dhcp_outage_s", entry["bound"]) == parse_bound("dhcp_outage_s", spec)


def _append_many(args: tuple[str, int]) -> None:
    path, worker = args
    for i in range(200):
        history.append(Path(path), {"run_id": "r", "scenario": f"w{worker}", "profile": "fast",
                                    "i": i, "pad": "x" * 3000})


def test_appends_from_several_processes_stay_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "results" / "history.jsonl"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_append_many, [(str(path), w) for w in range(4)])
    records = history.parse(path.read_text(), str(path))
    assert len(records) == 800
    assert sorted((r["scenario"], r["i"]) for r in records) == sorted(
        (f"w{w}", i) for w in range(4) for i in range(200))


def test_histories_merge_by_concatenation_and_resolve_their_own_plots(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "history.jsonl", tmp_path / "b" / "history.jsonl"
    for path, run in ((a, "r1"), (b, "r2")):
        history.append(path, {"run_id": run, "scenario": "kill_primary", "profile": "fast",
                              "timeline": f"{run}/timeline.png"})
    records = history.load([a, b])
    assert [r["run_id"] for r in records] == ["r1", "r2"]
    assert history.timeline_path(records[1]) == tmp_path / "b" / "r2" / "timeline.png"
    (tmp_path / "both.jsonl").write_text(a.read_text() + b.read_text())
    assert [r["run_id"] for r in history.load([tmp_path / "both.jsonl"])] == ["r1", "r2"]


@pytest.mark.parametrize(("text", "problem"), [
    ('{"run_id": "r", "scenario": "s", "profile": "fast"}\n{oops\n',
     "h.jsonl:2: not a JSON record"),
    ('\n\n{"run_id": "r", "profile": "fast"}\n', "h.jsonl:3: not a history record"),
])
def test_a_bad_line_is_named(text: str, problem: str) -> None:
    with pytest.raises(history.HistoryError, match=problem):
        history.parse(text, "h.jsonl")


def test_the_environment_names_the_versions_under_test() -> None:
    env = history.environment()
    assert set(env["versions"]) == {"dnsmasq", "heartbeat", "drbd-utils", "ddclient",
                                    "hapair-lab"}
    assert env["versions"]["hapair-lab"] == history.lab_version()
    assert env["host"] and env["kernel"]


def test_two_runs_give_two_records_per_scenario(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake_suite(pytester)
    results = pytester.path / "results"
    for run_id, workers in (("run-1", ["-n", "2"]), ("run-2", [])):
        monkeypatch.setenv("HAPAIR_RUN_ID", run_id)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sla", "slas.toml",
                                               "--history", str(results / "history.jsonl"),
                                               *workers, "test_fake.py")
        result.assert_outcomes(passed=1, failed=2)
        result.stdout.fnmatch_lines(["*3 scenario record(s) appended to*history.jsonl"])
    records = [json.loads(line) for line in (results / "history.jsonl").read_text().splitlines()]
    by = {(r["scenario"], r["run_id"]): r for r in records}
    assert len(records) == 6 and len(by) == 6
    for scenario in ("fake_failover", "fake_quiet", "fake_own_failure"):
        assert [by[(scenario, run)]["run_id"] for run in ("run-1", "run-2")] == ["run-1",
                                                                                 "run-2"]
    failover = by[("fake_failover", "run-1")]
    assert failover["outcome"] == "failed" and failover["profile"] == "fast"
    assert failover["metrics"]["takeover_s"] == 18.4
    assert failover["sla"]["takeover_s"]["ok"] is False
    assert failover["sla"]["lease_survival"]["ok"] is True
    assert by[("fake_quiet", "run-2")]["passed"] is True
    assert by[("fake_quiet", "run-2")]["versions"]["hapair-lab"] == history.lab_version()


def test_a_docker_nodes_record_names_its_image_and_the_images_versions() -> None:
    part = history.make_record(run_id="r1", test_id="s.py::test_kill_primary",
                               scenario="kill_primary",
                               profile="fast", metrics={}, verdicts=None, backend="docker",
                               image="hapair-node:trixie",
                               node_versions={"dnsmasq": "2.91-1+deb13u2"})
    record = history.complete(part, ENVIRONMENT, "passed", "t", 1.0)
    assert record["versions"] == {"dnsmasq": "2.91-1+deb13u2", "hapair-lab": "0.1.0"}
    assert (record["backend"], record["image"]) == ("docker", "hapair-node:trixie")
    assert history.series(record) == "fast/docker"
    host = history.complete(history.make_record(
        run_id="r1", test_id="t", scenario="kill_primary", profile="fast", metrics={},
        verdicts=None), ENVIRONMENT, "passed", "t", 1.0)
    assert host["versions"] == ENVIRONMENT["versions"] and history.series(host) == "fast"
    assert history.series({"profile": "seed"}) == "seed"  # records from before backends
