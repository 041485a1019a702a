"""pytest front door: fresh labs as fixtures, one name space per process, artifacts per test.

Every lab a test gets is new and is removed afterwards, even when the test fails; its logs are
copied first to ``results/<run-id>/<test-id>/`` so a failure can be understood without running
it again. Lab names carry the pytest process's PID, so pytest-xdist workers (and two pytest runs
side by side) never share or touch each other's labs.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lab import audits, history, rootns
from lab.backend import BACKENDS
from lab.faults import Nemesis
from lab.lab import Lab
from lab.pool import Key, LabPool, key_of
from lab.sla import (
    Sla,
    SlaError,
    load_sla,
    run_label,
    scenario_names,
    scenario_sources,
)
from lab.sla import judge as judge_sla
from lab.sla import scenario_of as sla_scenario_of
from lab.topology import Topology
from lab.wait import WaitTimeout, wait_for

RESULTS = Path(os.environ.get("HAPAIR_RESULTS", "results"))
_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hapair-lab")
    group.addoption("--lab-profile", default="fast", choices=("fast", "seed"),
                    help="timing profile of the labs tests bring up (default: fast)")
    group.addoption("--keep-labs", action="store_true",
                    help="leave failed tests' labs up for inspection (`lab down --all` later)")
    group.addoption("--lab-pool", type=int, default=0, metavar="N",
                    help="keep N labs booting ahead for the next scenario on each worker, so "
                         "its setup is a hand-over, not a boot (0: off, the default)")
    group.addoption("--repeat", type=int, default=1, metavar="N",
                    help="run each lab scenario N times; the summary gives pass counts and "
                         "each metric's spread")
    group.addoption("--scenario-timeout", type=float, default=900.0, metavar="S",
                    help="end a scenario still running after S seconds (its artifacts are "
                         "kept and its labs removed); 0 disables (default 900)")
    group.addoption("--sla", default=None, metavar="FILE",
                    help="judge every scenario with the `probes` fixture against this SLA "
                         "file (default: fixtures/slas.toml when it exists)")
    group.addoption("--lab-backend", default=None, choices=BACKENDS,
                    help="what the labs' nodes are: namespace (the host's userland) or docker "
                         "(containers from a node image); default: $LAB_BACKEND or namespace")
    group.addoption("--lab-image", default=None, metavar="IMAGE",
                    help="the node image with --lab-backend docker (default: "
                         "hapair-node:bookworm)")
    group.addoption("--history", default=None, metavar="FILE",
                    help="append one record per scenario run to FILE (default: "
                         "results/history.jsonl)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario_timeout(seconds): this scenario's watchdog")
    terminate_like_ctrl_c()
    # through the environment: every lab this run makes takes its default from there, those
    # booted ahead by the pool's child processes and xdist's workers included
    if config.getoption("--lab-backend"):
        os.environ["LAB_BACKEND"] = config.getoption("--lab-backend")
    if config.getoption("--lab-image"):
        os.environ["LAB_IMAGE"] = config.getoption("--lab-image")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        run_id = workerinput["hapair_run_id"]
    else:
        run_id = os.environ.get("HAPAIR_RUN_ID") or time.strftime("%Y%m%d-%H%M%S")
    config.hapair_run_id = run_id  # type: ignore[attr-defined]
    config.stash[SLA_KEY] = _load_sla(config)
    config.pluginmanager.register(SlaJudge(config.stash[SLA_KEY]), "hapair-sla")
    if workerinput is None:
        path = Path(config.getoption("--history") or RESULTS / "history.jsonl")
        config.pluginmanager.register(HistoryWriter(path), "hapair-history")


def terminate_like_ctrl_c() -> None:
    """SIGTERM (a cancelled CI job, `kill`) ends the run as Ctrl-C does: KeyboardInterrupt in
    the main thread, so every lab fixture's teardown and the pool's clean-up still run instead
    of the process dying with its labs up. Left alone where a handler is already installed.

    Only in this process: a child forked from it without exec (a multiprocessing worker, a
    probe forked by a test) inherits the handler, and there SIGTERM must end the child as
    usual, not unwind a copy of pytest's stack that then reports to the run as a worker."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        return
    owner = os.getpid()

    def interrupt(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent with -p no:xdist
def pytest_configure_node(node: Any) -> None:
    """xdist hook: every worker writes into the controller's run directory."""
    node.workerinput["hapair_run_id"] = node.config.hapair_run_id


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: labs are made of namespaces, bridges and mounts")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
    if report.when == "setup" and "lab" in item.keywords:
        # what the scenario waited for its lab: a boot, or a warm lab's hand-over (--lab-pool)
        item.user_properties.append(("hapair.setup_s", round(report.duration, 3)))
    if report.when == "call" and RECORD_KEY in item.stash:
        report.hapair_record = item.stash[RECORD_KEY]  # carried to the xdist controller


def artifact_dir(request: pytest.FixtureRequest) -> Path:
    """``results/<run-id>/<test-id>/``: where a test's evidence goes."""
    test_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")
    path = RESULTS / str(request.config.hapair_run_id) / test_id  # type: ignore[attr-defined]
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_lab_logs(lab: Lab, dest: Path) -> None:
    """Copy each node's /var/log, console and the lab's event log into `dest`."""
    if not lab.dir.exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("events.jsonl", "lab.json", "switch.log"):
        if (lab.dir / name).exists():
            shutil.copy2(lab.dir / name, dest / name)
    for node in lab:
        target = dest / "nodes" / node.name
        target.mkdir(parents=True, exist_ok=True)
        if (node.dir / "console.log").exists():
            shutil.copy2(node.dir / "console.log", target / "console.log")
        logs = node.dir / "fs" / "var" / "log"
        if logs.is_dir():
            shutil.copytree(logs, target / "log", dirs_exist_ok=True,
                            ignore_dangling_symlinks=True)


LabFactory = Callable[..., Lab]


def new_lab_name() -> str:
    """A lab name no other pytest process uses (its PID) and unique within this one."""
    return f"t{os.getpid()}-{next(_counter)}"


# -- warm labs (lab.pool) ------------------------------------------------------------------------
def predicted_key(item: pytest.Item | None) -> Key | None:
    """The kind of lab `item` will ask its `lab`/`seed_lab` fixture for (None: no pooled kind)."""
    if item is None:
        return None
    names = set(getattr(item, "fixturenames", ()))
    marker = item.get_closest_marker("stack")
    if "seed_lab" in names:
        stack = "seed"
    elif "lab" in names:
        stack = str(marker.args[0]) if marker and marker.args else "none"
    else:
        return None
    options = dict(marker.kwargs) if marker else {}
    profile = options.pop("profile", item.config.getoption("--lab-profile"))
    return key_of(str(profile), stack, options)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Remember which test comes next on this worker: the pool boots its lab meanwhile."""
    item.config.hapair_next_item = nextitem  # type: ignore[attr-defined]
    yield


def pytest_sessionstart(session: pytest.Session) -> None:
    size = session.config.getoption("--lab-pool")
    if size > 0 and os.geteuid() == 0:
        run_dir = RESULTS / str(session.config.hapair_run_id)  # type: ignore[attr-defined]
        session.config.hapair_pool = LabPool(  # type: ignore[attr-defined]
            size, run_dir / "pool", new_lab_name)


def pytest_sessionfinish(session: pytest.Session) -> None:
    pool: LabPool | None = getattr(session.config, "hapair_pool", None)
    if pool is not None:
        pool.close()
        if pool.handed or pool.missed:
            print(f"\nhapair-lab pool: {pool.handed} lab(s) handed over warm, "
                  f"{pool.missed} booted in the test's own setup")


@pytest.fixture
def lab_factory(request: pytest.FixtureRequest) -> Iterator[LabFactory]:
    """Make labs on demand (`lab_factory(stack="seed")`); all are removed after the test, and
    the root namespace must then be exactly as it was before the first one."""
    from lab.probes.fixture import Probes

    made: list[Lab] = []
    recorders: dict[str, Probes] = {}
    before = rootns.snapshot()
    # a test with the `probes` fixture writes its own timeline; every other lab gets one made
    # from what the lab itself recorded (faults, power, node logs), so each test leaves a plot
    own_timeline = "probes" not in request.fixturenames

    def make(topology: Topology | None = None, profile: str | None = None,
             stack: str = "none", up: bool = True, **stack_options: Any) -> Lab:
        profile = profile or request.config.getoption("--lab-profile")
        pool: LabPool | None = getattr(request.config, "hapair_pool", None)
        warm = None
        if pool is not None and up and topology is None:
            warm = pool.take(key_of(profile, stack, stack_options))
            pool.prepare(predicted_key(getattr(request.config, "hapair_next_item", None)))
        lab = warm or Lab.create(new_lab_name(), topology, profile=profile, stack=stack,
                                 **stack_options)
        made.append(lab)
        if own_timeline:
            recorders[lab.name] = Probes(lab, artifact_dir(request) / lab.name,
                                         run_id=request.node.nodeid)
        if up and warm is None:
            lab.up()
        return lab

    yield make
    failed = any(getattr(request.node, f"rep_{when}", None) is not None and
                 getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
    keep = failed and request.config.getoption("--keep-labs")
    for lab in made:
        try:
            save_lab_logs(lab, artifact_dir(request) / lab.name)
            if lab.name in recorders:
                recorders[lab.name].write_artifacts(title=f"{request.node.name} · {lab.name}")
        finally:
            if not keep:
                lab.down()
    if made and not keep:
        # one picture after all are down; each lab is judged only by what is its own, since
        # other workers' labs come and go meanwhile (rootns.differences)
        after = rootns.snapshot()
        problems = [p for lab in made
                    for p in rootns.differences(before, after, lab.dir, lab.name)]
        assert not problems, "the root namespace changed:\n" + "\n".join(problems)


def _stack_of(request: pytest.FixtureRequest, default: str) -> str:
    marker = request.node.get_closest_marker("stack")
    return str(marker.args[0]) if marker and marker.args else default


def _lab_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """`@pytest.mark.stack(..., profile="fast", keep_findings=["F14"])`: how this test's lab
    differs from the run's default (a profile, a finding's workaround left out)."""
    marker = request.node.get_closest_marker("stack")
    return dict(marker.kwargs) if marker else {}


def _scenario_lab(request: pytest.FixtureRequest, lab_factory: LabFactory,
                  stack: str) -> Iterator[Lab]:
    """A fresh lab; with services, ready before the test and audited after it."""
    made = lab_factory(stack=stack, **_lab_options(request))
    if made.stack is None:
        yield made
        return
    offsets = _log_offsets(made)
    yield made
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.passed:
        _audit(made, request, offsets)


def _log_offsets(lab: Lab) -> dict[str, int]:
    """Where each log ends now: the audit scans only what the test itself produced."""
    texts = audits.read_logs({n.name: n.dir / "fs" / "var" / "log" for n in lab})
    return {key: len(text.encode()) for key, text in texts.items()}


def _audit(lab: Lab, request: pytest.FixtureRequest, offsets: dict[str, int]) -> None:
    marker = request.node.get_closest_marker("audit")
    skip = list(marker.kwargs.get("skip", ())) if marker else []
    skip += sorted(lab.audit_accepts - set(skip))  # what the scenario's named ending breaks
    ignore = list(marker.kwargs.get("ignore", ())) if marker else []
    settle = float(marker.kwargs.get("settle", 60)) if marker else 60.0
    # the cluster may still be settling (a failback, a node rebooting itself): wait for it
    status: dict[str, Any] = {}

    def look() -> list[audits.Finding]:
        status.clear()
        status.update(lab.status())
        return audits.state_findings(status, skip)
    try:
        findings = wait_for(look, until=lambda found: not found, timeout=settle,
                            interval=0.5, max_interval=1.0, what="the audit's invariants")
    except WaitTimeout as exc:
        findings = list(exc.last) if isinstance(exc.last, list) else look()
    logs = audits.read_logs({n.name: n.dir / "fs" / "var" / "log" for n in lab}, offsets)
    explained = audits.evidence(findings, logs)
    if "logs" not in skip:
        findings += audits.log_findings(logs, ignore)
    if findings:
        state = {k: status.get(k) for k in ("vip", "services", "drbd", "heartbeat")}
        pytest.fail("audit failed after the scenario (settled for up to "
                    f"{settle:.0f} s):\n" + "\n".join(str(f) for f in findings) +
                    "\nstatus: " + json.dumps(state, sort_keys=True) +
                    "".join(f"\nlog: {line}" for line in explained), pytrace=False)


@pytest.fixture
def lab(request: pytest.FixtureRequest, lab_factory: LabFactory) -> Iterator[Lab]:
    """A fresh lab, removed after the test: bare (machines and wires) unless the test is
    marked ``@pytest.mark.stack("seed")``, in which case the seed's services run, the lab is
    ready before the test and audited after it."""
    yield from _scenario_lab(request, lab_factory, _stack_of(request, "none"))


@pytest.fixture
def seed_lab(request: pytest.FixtureRequest, lab_factory: LabFactory) -> Iterator[Lab]:
    """A fresh lab running the seed's services, ready, and audited after the test."""
    yield from _scenario_lab(request, lab_factory, "seed")


def _the_lab(request: pytest.FixtureRequest) -> Lab:
    name = "seed_lab" if "seed_lab" in request.fixturenames else "lab"
    found: Lab = request.getfixturevalue(name)
    return found


@pytest.fixture
def nemesis(request: pytest.FixtureRequest) -> Nemesis:
    """Faults for the test's lab; its random seed is logged in the lab's event log."""
    made = Nemesis(_the_lab(request))
    print(f"nemesis random seed: {made.seed}")
    return made


@pytest.fixture
def probes(request: pytest.FixtureRequest) -> Iterator[Any]:
    """DNS and DHCP probes on the test's lab. After the test: timeline.jsonl, metrics.json and
    timeline.png in the test's artifact directory (the metrics, as JUnit properties and judged
    against the SLA, are the call's: see pytest_runtest_call)."""
    from lab.probes.fixture import Probes

    the_lab = _the_lab(request)
    seed = None
    if "nemesis" in request.fixturenames:
        seed = request.getfixturevalue("nemesis").seed
    made = Probes(the_lab, artifact_dir(request).resolve() / "probes",
                  run_id=request.node.nodeid, seed=seed)
    yield made
    made.write_artifacts(title=request.node.nodeid)


# -- a lab shared by one module's tests -----------------------------------------------------------
@pytest.fixture(scope="module")
def shared_seed_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """One lab running the seed's services for all tests of a module that only look (they
    change nothing a later test depends on): ready before the first, audited after the last
    (the same audit as `seed_lab`, over everything the module did), and the root namespace
    checked exactly as for every other lab."""
    from lab.probes.fixture import Probes

    if os.geteuid() != 0:
        pytest.skip("needs root: labs are made of namespaces, bridges and mounts")
    before = rootns.snapshot()
    module = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")
    made = Lab.create(f"m{os.getpid()}-{next(_counter)}",
                      profile=request.config.getoption("--lab-profile"), stack="seed",
                      **_lab_options(request))
    artifacts = RESULTS / str(request.config.hapair_run_id) / module / made.name  # type: ignore[attr-defined]
    recorder = Probes(made, artifacts, run_id=request.node.nodeid)
    try:
        made.up()
        offsets = _log_offsets(made)
        yield made
        _audit(made, request, offsets)
    finally:
        try:
            save_lab_logs(made, artifacts)
            recorder.write_artifacts(title=f"{request.node.name} · {made.name}")
        finally:
            made.down()
    problems = rootns.differences(before, rootns.snapshot(), made.dir, made.name)
    assert not problems, "the root namespace changed:\n" + "\n".join(problems)


# -- repeats --------------------------------------------------------------------------------------
REPEAT_ID = re.compile(r"\[(?:(.*)-)?r(\d+)\]$")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With ``--repeat N``, every scenario that makes a lab runs N times (ids ``[rK]``)."""
    n = metafunc.config.getoption("--repeat")
    uses_lab = {"lab", "seed_lab", "lab_factory"} & set(metafunc.fixturenames)
    if n > 1 and uses_lab:
        metafunc.fixturenames.append("hapair_repeat")
        metafunc.parametrize("hapair_repeat", range(1, n + 1),
                             ids=[f"r{i}" for i in range(1, n + 1)])


@pytest.fixture
def hapair_repeat(request: pytest.FixtureRequest) -> int:
    """Which repetition of the scenario this is (``--repeat``)."""
    return int(request.param)


def scenario_of(nodeid: str) -> str:
    """A test's id without its repetition suffix: what the repeat summary groups by."""
    m = REPEAT_ID.search(nodeid)
    if m is None:
        return nodeid
    rest = f"[{m.group(1)}]" if m.group(1) else ""
    return nodeid[:m.start()] + rest


SPREAD_METRICS = ("takeover_s", "outage_s", "fault_outage_s", "dhcp_outage_s",
                  "lease_survival", "leases_lost", "split_brain_s", "duplicate_ips")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    """With ``--repeat``: per scenario, how many runs passed and each metric's spread."""
    if config.getoption("--repeat") <= 1:
        return
    from lab.repeat import summarize

    reports = [r for key in ("passed", "failed", "error")
               for r in terminalreporter.stats.get(key, [])
               if getattr(r, "when", "") == "call" or (r.failed and r.when == "setup")]
    rows = summarize([(scenario_of(r.nodeid), r.passed, dict(r.user_properties))
                      for r in reports], SPREAD_METRICS)
    terminalreporter.section("hapair-lab: repeated scenarios")
    for line in rows:
        terminalreporter.write_line(line)


# -- SLAs and the history ------------------------------------------------------------------------
SLA_KEY = pytest.StashKey["Sla | None"]()
RECORD_KEY = pytest.StashKey[dict[str, Any]]()


def _load_sla(config: pytest.Config) -> Sla | None:
    """The run's SLA file, checked against every scenario under scenarios/ and the paths
    given (a name nothing defines is a typo); a bad file stops the run before any lab."""
    given = config.getoption("--sla")
    path = Path(given) if given else config.rootpath / "fixtures" / "slas.toml"
    if not given and not path.exists():
        return None
    here = config.invocation_params.dir
    sources = [config.rootpath / "scenarios", *(here / a.split("::")[0] for a in config.args)]
    try:
        return load_sla(path, scenarios=scenario_names(scenario_sources(sources)))
    except SlaError as exc:
        raise pytest.UsageError("the SLA file has problems:\n" + "\n".join(exc.problems)
                                ) from exc


def pytest_report_header(config: pytest.Config) -> str | None:
    found = config.stash.get(SLA_KEY, None)
    return None if found is None else (f"hapair-lab SLA: {found.source} "
                                       f"({len(found.scenarios)} scenarios)")


class SlaJudge:
    """After a scenario with the `probes` fixture: its metrics become JUnit properties
    (``hapair.<metric>``), are judged against the SLA for (scenario, profile)
    (``hapair.sla.<metric>``: ok, or the breach), and the test fails with one line per
    breach. A test that failed by itself keeps its own failure; its verdicts are still
    recorded. Registered in every process that runs tests (xdist workers included)."""

    def __init__(self, sla: Sla | None) -> None:
        self.sla = sla

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        try:
            result = yield
        except BaseException:
            self.judge(item, strict=False)
            raise
        broken = self.judge(item, strict=True)
        if broken:
            pytest.fail("\n".join(broken), pytrace=False)
        return result

    def judge(self, item: pytest.Item, strict: bool) -> list[str]:
        """Record the run's metrics and verdicts; the breaches' lines. ``strict``: a run whose
        metrics cannot be computed fails (otherwise the test's own failure is what counts)."""
        from lab.report import record_properties

        made = getattr(item, "funcargs", {}).get("probes")
        if made is None or not hasattr(made, "metrics"):
            return []
        scenario = sla_scenario_of(getattr(item, "originalname", item.name))
        kind = None if self.sla is None else self.sla.judged_from(scenario)
        try:
            metrics = made.metrics(fault_id=first_fault_of(made, kind)) if kind else \
                made.metrics()
        except Exception:
            if strict:
                raise
            return []
        record_properties(lambda name, value: item.user_properties.append((name, value)),
                          metrics)
        profile = str(getattr(getattr(made, "lab", None), "profile", None)
                      or item.config.getoption("--lab-profile"))
        bounds = None if self.sla is None else self.sla.bounds(scenario, profile)
        verdicts = None if bounds is None else judge_sla(metrics, bounds,
                                                         run_label(scenario, profile))
        for v in verdicts or []:
            item.user_properties.append((f"hapair.sla.{v.bound.metric}",
                                         "ok" if v.ok else f"breach: {v}"))
        callspec = getattr(item, "callspec", None)
        outdir = getattr(made, "outdir", None)
        item.stash[RECORD_KEY] = history.make_record(
            run_id=str(item.config.hapair_run_id),  # type: ignore[attr-defined]
            test_id=item.nodeid, scenario=scenario, profile=profile,
            metrics=metrics.to_dict(), verdicts=verdicts,
            repetition=callspec.params.get("hapair_repeat") if callspec is not None else None,
            timeline=str(Path(outdir) / "timeline.png") if outdir is not None else None,
            **_backend_fields(getattr(made, "lab", None)))
        return [str(v) for v in verdicts or [] if not v.ok]


def _backend_fields(lab: Any) -> dict[str, Any]:
    """What a history record says about the lab's kind of node."""
    if getattr(lab, "backend", None) is None:
        return {}
    return {"backend": lab.backend.name, "image": lab.backend.image,
            "node_versions": lab.backend.versions(lab)}


def first_fault_of(probes: Any, kind: str) -> str:
    """The id of the run's first injected fault of this kind (the SLA's ``judged_from``)."""
    from lab.probes.records import FaultEvent
    starts = [f for f in probes.timeline().of(FaultEvent) if f.phase == "start" and f.injected]
    for fault in starts:
        if fault.fault == kind:
            return str(fault.fault_id)
    raise ValueError(f"the SLA judges this scenario from its first {kind!r} fault, but the run "
                     f"had none (its faults: {', '.join(f.fault for f in starts) or 'none'})")


class HistoryWriter:
    """Appends one history record per scenario run, from the one process that sees every
    report (pytest itself, or the xdist controller), once the test's teardown (its audit
    included) has said how it ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.environment: dict[str, Any] | None = None
        self.pending: dict[str, dict[str, Any]] = {}
        self.written = 0

    def pytest_sessionstart(self) -> None:
        self.environment = history.environment()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.pending.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0,
                                                        "start": report.start})
        entry["duration"] += report.duration
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
        record = getattr(report, "hapair_record", None)
        if record is not None:
            entry["record"] = record
        if report.when != "teardown":
            return
        done = self.pending.pop(report.nodeid)
        if "record" not in done:
            return
        if self.environment is None:
            self.environment = history.environment()
        started = datetime.fromtimestamp(done["start"], UTC)
        history.append(self.path, history.complete(
            done["record"], self.environment, done["outcome"],
            started.isoformat(timespec="seconds"), done["duration"], self.path.parent))
        self.written += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written:
            terminalreporter.write_line(f"hapair-lab: {self.written} scenario record(s) "
                                        f"appended to {self.path}")


# -- the watchdog ---------------------------------------------------------------------------------
class ScenarioTimeout(Exception):
    """A scenario ran past its watchdog; raised inside it so its fixtures still clean up."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """End a scenario that hangs: SIGALRM raises ScenarioTimeout in the test's own thread,
    so the lab fixtures' teardown still saves the artifacts and removes the labs."""
    marker = item.get_closest_marker("scenario_timeout")
    limit = float(marker.args[0]) if marker else float(
        item.config.getoption("--scenario-timeout"))
    uses_lab = {"lab", "seed_lab", "lab_factory"} & set(getattr(item, "fixturenames", ()))
    if limit <= 0 or not uses_lab or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(_signum: int, _frame: Any) -> None:
        raise ScenarioTimeout(f"{item.nodeid} still running after {limit:g} s: ended by the "
                              "watchdog (--scenario-timeout)")
    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
