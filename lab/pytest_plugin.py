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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import audits, rootns
from lab.faults import Nemesis
from lab.lab import Lab
from lab.topology import Topology

RESULTS = Path(os.environ.get("HAPAIR_RESULTS", "results"))
_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hapair-lab")
    group.addoption("--lab-profile", default="fast", choices=("fast", "seed"),
                    help="timing profile of the labs tests bring up (default: fast)")
    group.addoption("--keep-labs", action="store_true",
                    help="leave failed tests' labs up for inspection (`lab down --all` later)")


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        run_id = workerinput["hapair_run_id"]
    else:
        run_id = os.environ.get("HAPAIR_RUN_ID") or time.strftime("%Y%m%d-%H%M%S")
    config.hapair_run_id = run_id  # type: ignore[attr-defined]


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
        name = f"t{os.getpid()}-{next(_counter)}"
        lab = Lab.create(name, topology, profile=profile or request.config.getoption(
            "--lab-profile"), stack=stack, **stack_options)
        made.append(lab)
        if own_timeline:
            recorders[name] = Probes(lab, artifact_dir(request) / name,
                                     run_id=request.node.nodeid)
        if up:
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
    ignore = list(marker.kwargs.get("ignore", ())) if marker else []
    settle = float(marker.kwargs.get("settle", 60)) if marker else 60.0
    deadline = time.monotonic() + settle
    while True:
        status = lab.status()
        findings = audits.state_findings(status, skip)
        if not findings or time.monotonic() > deadline:
            break
        time.sleep(0.5)
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
def probes(request: pytest.FixtureRequest,
           record_property: Callable[[str, object], None]) -> Iterator[Any]:
    """DNS and DHCP probes on the test's lab. After the test: timeline.jsonl, metrics.json and
    timeline.png in the test's artifact directory, and the metrics as JUnit properties."""
    from lab.probes.fixture import Probes
    from lab.report import record_properties

    the_lab = _the_lab(request)
    seed = None
    if "nemesis" in request.fixturenames:
        seed = request.getfixturevalue("nemesis").seed
    made = Probes(the_lab, artifact_dir(request).resolve() / "probes",
                  run_id=request.node.nodeid, seed=seed)
    yield made
    metrics = made.write_artifacts(title=request.node.nodeid)
    record_properties(record_property, metrics)
