"""The run history (``results/history.jsonl``): one JSON line per scenario run.

Why a file of its own: a nightly is only worth reading next to the nights before it. Each
record carries what is needed to compare runs later, on any machine: the run, the revision,
the profile, the host and kernel, the versions of the daemons under test, every scalar metric
and every SLA verdict, and where the run's timeline plot lies. Histories of several machines
merge by concatenation, so records never refer to each other.

Writing is one ``write()`` of one line on a file opened with O_APPEND, which the kernel keeps
whole against other writers of the same file (pytest-xdist workers, two runs side by side).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tomllib
from collections.abc import Iterable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from lab.sla import bound_text
from lab.verdict import Verdict

SCHEMA = 1
REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dnsmasq", "heartbeat", "drbd-utils", "ddclient")
LAB_VERSION_KEY = "hapair-lab"
DEFAULT_BACKEND = "namespace"
# metrics.json keys that are detail, not a number to follow over time
DETAIL = frozenset({"lease_survival_detail", "duplicate_ip_detail", "outages", "answered_by",
                    "resolver_paths", "real_dhcp_clients"})


class HistoryError(ValueError):
    """A history file that cannot be read; the message reads ``file:line: problem``."""


# -- what a record holds -------------------------------------------------------------------
def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar metrics, dict metrics as dotted names (``registrar_updates.ok``); lists and
    per-client detail are left to metrics.json."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif not isinstance(value, list):
            out[prefix] = value

    for name, value in metrics.items():
        if name not in DETAIL:
            walk(name, value)
    return out


def verdict_entry(verdict: Verdict) -> dict[str, Any]:
    """One SLA verdict as the history keeps it."""
    return {"bound": bound_text(verdict.bound),
            "source": verdict.bound.source, "ok": verdict.ok,
            "text": str(verdict)}


def make_record(*, run_id: str, test_id: str, scenario: str, profile: str, metrics:
                Mapping[str, Any], verdicts: Iterable[Verdict] | None,
                repetition: int | None = None, timeline: str | None = None,
                backend: str = DEFAULT_BACKEND, image: str | None = None,
                node_versions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a scenario run knows about itself (the worker's half of a record); ``verdicts``
    None means the SLA file has no entry for this scenario. ``node_versions`` are the
    daemons' versions where the nodes do not run the host's packages (a node image)."""
    return {"schema": SCHEMA, "run_id": run_id, "test_id": test_id, "scenario": scenario,
            "profile": profile, "repetition": repetition,
            "backend": backend, "image": image, "node_versions": dict(node_versions or {}),
            "metrics": flat_metrics(metrics),
            "sla": None if verdicts is None else {v.bound.metric: verdict_entry(v)
                                                  for v in verdicts},
            "timeline": timeline}


def series(record: Mapping[str, Any]) -> str:
    """The profile a record's metrics are followed under: its profile, and for nodes that are
    not the default backend's, the backend too (``fast/docker``), so runs on different kinds
    of node never make each other's baseline."""
    backend = record.get("backend") or DEFAULT_BACKEND
    profile = str(record["profile"])
    return profile if backend == DEFAULT_BACKEND else f"{profile}/{backend}"


def complete(record: Mapping[str, Any], environment: Mapping[str, Any], outcome: str,
             wall_time: str, duration_s: float, history_dir: Path | None = None
             ) -> dict[str, Any]:
    """The whole record: the run's half, the machine's half and how the test ended. A
    timeline path under the history's directory is kept relative to it, so a results
    directory copied elsewhere (a CI artifact) still finds its plots."""
    out = {**record, **environment, "outcome": outcome, "passed": outcome == "passed",
           "wall_time": wall_time, "duration_s": round(duration_s, 3)}
    if record.get("node_versions"):  # the daemons ran from an image, not the host's packages
        out["versions"] = {**environment.get("versions", {}), **record["node_versions"]}
    timeline = record.get("timeline")
    if timeline and history_dir is not None:
        with suppress(ValueError):  # not under it: kept as it was
            out["timeline"] = str(Path(timeline).resolve().relative_to(history_dir.resolve()))
    return out


def breaches(record: Mapping[str, Any]) -> list[str]:
    """The verdict lines of every SLA bound this record broke."""
    return [v["text"] for v in (record.get("sla") or {}).values() if not v.get("ok")]


def versions_key(record: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The versions a record ran, as something to group and compare by."""
    return tuple(sorted((k, str(v)) for k, v in (record.get("versions") or {}).items()))


# -- the machine ---------------------------------------------------------------------------
def _run(argv: list[str], cwd: Path = REPO) -> str | None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=20,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 or done.stdout else None


def package_versions(packages: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed Debian versions (dpkg-query), None for a package that is not installed."""
    out: dict[str, str | None] = dict.fromkeys(packages)
    text = _run(["dpkg-query", "-W", "-f=${Package}\t${Version}\t${Status}\n", *out]) or ""
    for line in text.splitlines():
        name, _, rest = line.partition("\t")
        version, _, status = rest.partition("\t")
        if name in out and status.endswith(" installed"):
            out[name] = version
    return out


def lab_version(pyproject: Path = REPO / "pyproject.toml") -> str | None:
    """The lab's (and its replicator's) version as pyproject.toml states it."""
    try:
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def environment() -> dict[str, Any]:
    """The machine's half of every record of this run."""
    revision = _run(["git", "rev-parse", "HEAD"])
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {"git_revision": revision.strip() if revision else None,
            "git_dirty": None if status is None else bool(status.strip()),
            "host": platform.node(), "kernel": platform.release(),
            "versions": {**package_versions(), LAB_VERSION_KEY: lab_version()}}


# -- the file ------------------------------------------------------------------------------
def append(path: Path, record: Mapping[str, Any]) -> None:
    """Add one record: one line, one write, on a descriptor opened with O_APPEND."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
    finally:
        os.close(fd)
    if written != len(line):
        raise OSError(f"{path}: only {written} of {len(line)} bytes of a record written")


def parse(text: str, src: str) -> list[dict[str, Any]]:
    """The records of one history file's text; a line that is not a record is an error
    naming it (``file:line: problem``), blank lines are skipped."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{src}:{number}: not a JSON record: {exc.msg}") from exc
        if not isinstance(record, dict) or not {"run_id", "scenario", "profile"} <= set(
                record):
            raise HistoryError(f"{src}:{number}: not a history record (needs run_id, "
                               "scenario, profile)")
        records.append(record)
    return records


def load(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Records of several histories, concatenated; each remembers its file's directory
    (``_dir``, not written back) so relative timeline paths resolve."""
    out = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError as exc:
            raise HistoryError(f"{path}:1: cannot read: {exc.strerror or exc}") from exc
        out += [{**r, "_dir": str(path.parent)} for r in parse(text, str(path))]
    return out


def timeline_path(record: Mapping[str, Any]) -> Path | None:
    """Where this record's timeline plot is on this machine (None if not recorded)."""
    value = record.get("timeline")
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(record.get("_dir") or ".") / path
