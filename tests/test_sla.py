"""SLA files: reading them (line numbers, every problem at once), the shipped file against the
scenarios and budgets, and the verdict path through the pytest plugin on a fake scenario."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab import budgets
from lab.checks import Metrics
from lab.services.profiles import load_profiles
from lab.sla import (
    DEFAULT_PATH,
    SCENARIOS_DIR,
    SlaError,
    judge,
    key_lines,
    load_sla,
    metric_problem,
    parse_sla,
    run_label,
    scenario_names,
    scenario_of,
    scenario_sources,
)
from lab.topology import load_topology

pytest_plugins = ["pytester"]

PROFILES = ("fast", "seed")
TEXT = textwrap.dedent("""\
    # a comment
    [kill_primary]
    leases_lost = 0
    registrar_updates.ok = ">= 1"

    [kill_primary.fast]
    takeover_s = "<= 17"    # the fast budget
    leases_lost = "<= 1"
    "latency_s.p99" = "< 0.5"

    [kill_primary.seed.registrar_updates]
    failed = 0

    [dnsmasq_crash_on_primary]
    takeover_s = "null"
    fault_outage_s = "12..16"
    """)


def bounds_of(text: str, scenario: str, profile: str) -> dict[str, str]:
    found = parse_sla(text, "fixtures/slas.toml", PROFILES).bounds(scenario, profile)
    assert found is not None
    return {b.metric: f"{b} @{b.source}" for b in found}


def test_profile_bounds_win_over_shared_ones_and_keep_their_lines() -> None:
    assert bounds_of(TEXT, "kill_primary", "fast") == {
        "registrar_updates.ok": "registrar_updates.ok >= 1 @slas.toml:4",
        "takeover_s": "takeover_s <= 17 @slas.toml:7",
        "leases_lost": "leases_lost <= 1 @slas.toml:8",
        "latency_s.p99": "latency_s.p99 < 0.5 @slas.toml:9",
    }
    assert bounds_of(TEXT, "kill_primary", "seed") == {
        "leases_lost": "leases_lost == 0 @slas.toml:3",
        "registrar_updates.ok": "registrar_updates.ok >= 1 @slas.toml:4",
        "registrar_updates.failed": "registrar_updates.failed == 0 @slas.toml:12",
    }
    assert bounds_of(TEXT, "dnsmasq_crash_on_primary", "seed") == {
        "takeover_s": "takeover_s is null @slas.toml:15",
        "fault_outage_s": "fault_outage_s in 12..16 @slas.toml:16",
    }
    assert parse_sla(TEXT, "x", PROFILES).bounds("switch_reboot", "fast") is None


def test_key_lines_follow_tables_dotted_and_quoted_keys() -> None:
    lines = key_lines(TEXT)
    assert lines[("kill_primary",)] == 2
    assert lines[("kill_primary", "registrar_updates", "ok")] == 4
    assert lines[("kill_primary", "fast", "latency_s.p99")] == 9
    assert lines[("kill_primary", "seed", "registrar_updates")] == 11


def test_every_problem_is_reported_with_its_line() -> None:
    text = textwrap.dedent("""\
        [kill_primary.fast]
        takeover_s = "=< 12"
        takeover_seconds = 3
        outages = 0
        latency_s = 1
        registrar_updates.okay = 1

        [kill_primry]
        leases_lost = 0

        [kill_primary.slow]
        takeover_s = 1
        """)
    with pytest.raises(SlaError) as caught:
        parse_sla(text, "fixtures/slas.toml", PROFILES, scenarios={"kill_primary"})
    problems = caught.value.problems
    assert sorted(int(p.split(":")[1]) for p in problems) == [2, 3, 4, 5, 6, 8, 11]
    text_of = "\n".join(problems)
    assert "fixtures/slas.toml:2: kill_primary.fast.takeover_s: '=< 12' is not a bound" in text_of
    assert "fixtures/slas.toml:3: kill_primary.fast.takeover_seconds: unknown metric" in text_of
    assert "fixtures/slas.toml:4: kill_primary.fast.outages: outages is a list" in text_of
    assert "fixtures/slas.toml:5: kill_primary.fast.latency_s: latency_s is a table of " \
           "values: bound one of its keys, e.g. latency_s.p50" in text_of
    assert ("fixtures/slas.toml:6: kill_primary.fast.registrar_updates.okay: registrar_updates "
            "has no key 'okay' (keys: ok, failed)") in text_of
    assert ("fixtures/slas.toml:8: unknown scenario 'kill_primry' (no test_kill_primry among "
            "the 1 tests scanned; did you mean kill_primary?)") in text_of
    assert "fixtures/slas.toml:11: kill_primary.slow: neither a profile" in text_of


def test_a_toml_syntax_error_names_its_line() -> None:
    with pytest.raises(SlaError, match=r"^x.toml:3: "):
        parse_sla("[a]\nb = 1\nc = = 2\n", "x.toml", PROFILES)


@pytest.mark.parametrize(("name", "ok"), [
    ("takeover_s", True), ("registrar_updates.ok", True), ("failed_by_kind.timeout", True),
    ("answered_by.192.168.1.4.lsvm1", True), ("lease_survival_detail.measured", True),
    ("latency_s.p99", True), ("latency_s.p95", False), ("takeover_s.x", False),
    ("duplicate_ip_detail", False), ("answered_by", False), ("nope", False),
])
def test_metric_names_are_fields_of_metrics_or_keys_of_its_dicts(name: str, ok: bool) -> None:
    assert (metric_problem(name) is None) is ok


def test_a_dotted_metric_nobody_measured_is_unmeasured_not_an_error() -> None:
    sla = parse_sla('[x.fast]\n"answered_by.192.168.1.4.lsvm1" = ">= 1"\ntakeover_s = "<= 17"\n',
                    "slas.toml", PROFILES)
    bounds = sla.bounds("x", "fast")
    assert bounds is not None
    verdicts = judge(Metrics(takeover_s=18.4), bounds, run_label("x", "fast"))
    assert [str(v) for v in verdicts] == [
        "x[fast]: answered_by.192.168.1.4.lsvm1 not measured, wanted >= 1 (slas.toml:2)",
        "x[fast]: takeover_s 18.4 > 17 (slas.toml:3)"]


def test_scenario_names_come_from_test_functions() -> None:
    source = "def test_kill_primary(lab):\n    pass\nasync def test_b() -> None: ...\n" \
             "def helper_test_c(): ...\n"
    assert scenario_names([source]) == {"kill_primary", "b"}
    assert scenario_of("test_kill_primary") == "kill_primary"
    assert scenario_of("test_x[r2]") == "x"


# -- the shipped file -------------------------------------------------------------------------
def test_the_shipped_sla_names_only_real_scenarios_metrics_and_profiles() -> None:
    known = scenario_names(scenario_sources([SCENARIOS_DIR]))
    sla = load_sla(DEFAULT_PATH, scenarios=known)
    assert {"kill_primary", "cable_pull_primary", "split_brain_heartbeat_link"} <= set(
        sla.scenarios)


def _budget_table() -> dict[tuple[str, str, str], str]:
    """What each scenario's own expect() asserts in each profile, computed the way the
    scenario computes it (lab.budgets): the SLA must say the same."""
    ipv6 = budgets.ipv6_vip_count(load_topology(Path("fixtures/topology.toml")))
    out = {}
    for name, profile in load_profiles().items():
        takeover = budgets.profile_takeover_budget_s(profile, ipv6)
        handover = budgets.handover_budget_s(ipv6, profile.ipv6addr)
        detect = budgets.profile_detection_s(profile)
        for scenario in ("kill_primary", "ipv6_failover", "guest_vlan_failover",
                         "cable_pull_primary"):
            out[(scenario, name, "takeover_s")] = f"<= {takeover:g}"
        for scenario in ("graceful_shutdown_primary", "reboot_primary_failback"):
            out[(scenario, name, "takeover_s")] = f"<= {handover:g}"
        # lower ends of "the outage lasts the fault's window" (the scenarios' own >= window-1)
        for scenario, window in (("guest_vlan_pruned_on_primary", detect + 10),
                                 ("switch_reboot", detect + 5),
                                 ("dnsmasq_crash_on_primary", 2 * detect + 10)):
            out[(scenario, name, "fault_outage_s")] = f"{window - 1:g}..{window + 3:g}"
        # a hung primary's outage may run past the thaw, up to the scenario's outage bound
        freeze = {b.metric: b for b in load_sla(DEFAULT_PATH).bounds(
            "split_brain_freeze_primary", name) or ()}["outage_s"].value
        out[("split_brain_freeze_primary", name, "fault_outage_s")] = \
            f"{detect + 25 - 1:g}..{freeze:g}" if profile.ipv6addr == "stock" else \
            f"<= {takeover + 1:g}"
        for scenario in ("split_brain_heartbeat_link", "asymmetric_heartbeat_loss"):
            out[(scenario, name, "split_brain_s")] = "== 0"
            out[(scenario, name, "outage_s")] = "== 0"
        out[("disk_error_primary", name, "outage_s")] = "< 1"
        out[("kill_primary", name, "leases_lost")] = "== 0"
    return out


def test_the_shipped_bounds_agree_with_what_the_scenarios_assert() -> None:
    sla = load_sla(DEFAULT_PATH)
    for (scenario, profile, metric), wanted in _budget_table().items():
        bounds = {b.metric: b for b in sla.bounds(scenario, profile) or ()}
        assert metric in bounds, (scenario, profile, metric)
        written = str(bounds[metric]).removeprefix(f"{metric} ").removeprefix("in ")
        assert written == wanted, f"{scenario}[{profile}] {metric}: {written} vs {wanted} " \
                                  f"({bounds[metric].source})"


def test_lab_lint_sla_exits_2_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "slas.toml"
    bad.write_text('[kill_primary.fast]\ntakeover_s = "=< 3"\n[nope]\nleases_lost = 0\n')
    done = subprocess.run([sys.executable, "-m", "lab.cli", "lint", "--sla", str(bad)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        f"{bad}:2: kill_primary.fast.takeover_s: '=< 3' is not a bound (write '<= 12', '< 5', "
        "'>= 0.9', '== 0', a band '3..20', a number, or null)",
        f"{bad}:3: unknown scenario 'nope' (no test_nope among the "
        f"{len(scenario_names(scenario_sources([SCENARIOS_DIR])))} tests scanned)"]
    good = subprocess.run([sys.executable, "-m", "lab.cli", "lint", "--sla", str(DEFAULT_PATH)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert good.returncode == 0, good
    assert "scenarios" in good.stderr and "bounds, ok" in good.stderr


# -- the verdict path in pytest, on a scenario without a lab -----------------------------------
FAKE_CONFTEST = """
import pytest
from lab.checks import Metrics

pytest_plugins = ["lab.pytest_plugin"]


class FakeLab:
    profile = "fast"


class FakeProbes:
    lab = FakeLab()

    def __init__(self, outdir):
        self.outdir = outdir
        self.values = {}

    def metrics(self):
        return Metrics(**self.values)


@pytest.fixture
def probes(tmp_path):
    return FakeProbes(tmp_path)
"""

FAKE_SCENARIOS = """
def test_fake_failover(probes):
    probes.values = {"takeover_s": 18.4, "leases_lost": 2, "lease_survival": 1.0}


def test_fake_quiet(probes):
    probes.values = {"takeover_s": 3.0}


def test_fake_own_failure(probes):
    probes.values = {"takeover_s": 99.0}
    assert False, "the scenario's own assertion"
"""

FAKE_SLA = """\
[fake_failover]
leases_lost = 0
lease_survival = 1.0
[fake_failover.fast]
takeover_s = "<= 17"
[fake_quiet.fast]
takeover_s = "<= 17"
[fake_own_failure.fast]
takeover_s = "<= 17"
"""


def fake_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_CONFTEST)
    pytester.makepyfile(test_fake=FAKE_SCENARIOS)
    pytester.path.joinpath("slas.toml").write_text(FAKE_SLA)


def test_a_breach_fails_the_scenario_with_one_line_per_broken_bound(
        pytester: pytest.Pytester) -> None:
    fake_suite(pytester)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sla", "slas.toml",
                                           "--history", "h.jsonl", f"--junitxml={junit}",
                                           "test_fake.py")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    # all breaches listed, each on its own line, as the verdict says it
    result.stdout.re_match_lines([r"^fake_failover\[fast\]: leases_lost 2 != 0 \(slas\.toml:2\)$",
                                  r"^fake_failover\[fast\]: takeover_s 18\.4 > 17 "
                                  r"\(slas\.toml:5\)$"])
    # only what broke: lease_survival held.  Distinct lines, because pytest's short summary
    # repeats the whole message when it runs under CI (the CI variable turns off truncation).
    assert {line for line in out.splitlines() if line.startswith("fake_failover[fast]:")} \
        == {"fake_failover[fast]: leases_lost 2 != 0 (slas.toml:2)",
            "fake_failover[fast]: takeover_s 18.4 > 17 (slas.toml:5)"}
    # a scenario that failed by itself keeps its own failure
    assert "the scenario's own assertion" in out
    assert "fake_own_failure[fast]: takeover_s" not in out
    xml = junit.read_text()
    assert 'name="hapair.sla.takeover_s" value="breach: fake_failover[fast]: takeover_s 18.4 ' \
           '&gt; 17 (slas.toml:5)"' in xml
    assert 'name="hapair.sla.lease_survival" value="ok"' in xml
    assert 'name="hapair.takeover_s" value="18.4"' in xml


def test_a_bad_sla_file_stops_the_run_before_any_test(pytester: pytest.Pytester) -> None:
    fake_suite(pytester)
    pytester.path.joinpath("slas.toml").write_text('[fake_quiet.fast]\ntakeover_s = "=< 3"\n'
                                                   "[fake_typo]\nleases_lost = 0\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sla", "slas.toml",
                                           "test_fake.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "slas.toml:2: fake_quiet.fast.takeover_s: '=< 3' is not a bound" in err
    assert "slas.toml:3: unknown scenario 'fake_typo'" in err


def test_a_scenario_can_be_judged_from_a_later_fault_than_its_first() -> None:
    sla = parse_sla('[cut_then_crash]\njudged_from = "crash"\ntakeover_s = "<= 7"\n', "s.toml",
                    PROFILES)
    assert sla.judged_from("cut_then_crash") == "crash"
    assert [b.metric for b in sla.bounds("cut_then_crash", "fast") or ()] == ["takeover_s"]
    assert sla.judged_from("other") is None
    with pytest.raises(SlaError) as err:
        parse_sla('[x]\njudged_from = 3\n', "s.toml", PROFILES)
    assert err.value.problems == ["s.toml:2: x.judged_from: expected a fault kind such as "
                                  "\"crash\" or \"partition\", got 3"]


def test_the_judged_fault_is_the_first_injected_one_of_its_kind() -> None:
    from types import SimpleNamespace

    from lab.probes.records import FaultEvent
    from lab.pytest_plugin import first_fault_of

    faults = [FaultEvent(1.0, "start", "partition", "partition-1"),
              FaultEvent(2.0, "start", "crash", "crash-self", injected=False),
              FaultEvent(3.0, "start", "crash", "crash-lsvm2-3"),
              FaultEvent(4.0, "start", "crash", "crash-lsvm1-4")]
    timeline = SimpleNamespace(of=lambda kind: faults)
    probes = SimpleNamespace(timeline=lambda: timeline)
    assert first_fault_of(probes, "crash") == "crash-lsvm2-3"
    with pytest.raises(ValueError, match=r"first 'freeze' fault, but the run had none \(its "
                                         r"faults: partition, crash, crash\)"):
        first_fault_of(probes, "freeze")
