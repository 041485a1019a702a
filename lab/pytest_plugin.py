"""pytest front door: fresh labs as fixtures, one name space per process, artifacts per test.

Every lab a test gets is new and is removed afterwards, even when the test fails; its logs are
copied first to ``results/<run-id>/<test-id>/`` so a failure can be understood without running
it again. Lab names carry the pytest process's PID, so pytest-xdist workers (and two pytest runs
side by side) never share or touch each other's labs.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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
    """Make labs on demand (`lab_factory(stack="seed")`); all are removed after the test."""
    made: list[Lab] = []

    def make(topology: Topology | None = None, profile: str | None = None,
             stack: str = "none", up: bool = True) -> Lab:
        name = f"t{os.getpid()}-{next(_counter)}"
        lab = Lab.create(name, topology, profile=profile or request.config.getoption(
            "--lab-profile"), stack=stack)
        made.append(lab)
        if up:
            lab.up()
        return lab

    yield make
    failed = any(getattr(request.node, f"rep_{when}", None) is not None and
                 getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
    for lab in made:
        try:
            save_lab_logs(lab, artifact_dir(request) / lab.name)
        finally:
            if not (failed and request.config.getoption("--keep-labs")):
                lab.down()


@pytest.fixture
def lab(lab_factory: LabFactory) -> Lab:
    """A fresh bare lab (machines and wires, no services), removed after the test."""
    return lab_factory()


@pytest.fixture
def nemesis(lab: Lab) -> Nemesis:
    """Faults for the test's `lab`; its random seed is logged in the lab's event log."""
    made = Nemesis(lab)
    print(f"nemesis random seed: {made.seed}")
    return made
