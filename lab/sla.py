"""Failover SLAs (``fixtures/slas.toml``): a pure loader and the judge of one run against it.

The nightly states what each scenario may cost in one file, per scenario and profile, with
the bound syntax of :mod:`lab.verdict`::

    [kill_primary]            # bounds every profile shares
    leases_lost = 0
    [kill_primary.fast]       # bounds of one profile (they win over shared ones)
    takeover_s = "<= 21.5"
    registrar_updates.ok = ">= 1"   # dotted: a key inside a dict metric
    [replication_cut_then_primary_crash]
    judged_from = "crash"     # metrics from the first crash, not the run's first fault

A scenario is its test function's name without ``test_``. Every bound keeps where it was
written (``slas.toml:12``), so a breach names the line to argue with. tomllib gives no line
numbers, so they are found by scanning the text for each key inside its table. A file with
problems is refused whole: :class:`SlaError` carries one ``file:line: problem`` per problem
(unknown scenario or profile, unknown metric, unreadable bound), never just the first.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import checks
from lab.verdict import Bound, BoundError, Verdict, parse_bound, value_of

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "slas.toml"
SCENARIOS_DIR = Path(__file__).resolve().parents[1] / "scenarios"


class SlaError(ValueError):
    """An SLA file that cannot be used; ``problems`` are ``file:line: problem`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# A scenario table's own setting, not a bound: which fault its metrics are measured from.
JUDGED_FROM = "judged_from"


@dataclass(frozen=True)
class ScenarioSla:
    shared: tuple[Bound, ...] = ()
    by_profile: Mapping[str, tuple[Bound, ...]] = field(default_factory=dict)
    # the kind of fault (crash, cut, partition, ...) whose first occurrence the metrics are
    # measured from; None: the run's first injected fault
    judged_from: str | None = None

    def bounds(self, profile: str) -> tuple[Bound, ...]:
        """The shared bounds, each replaced by the profile's own bound on the same metric."""
        own = self.by_profile.get(profile, ())
        mine = {b.metric for b in own}
        return (*[b for b in self.shared if b.metric not in mine], *own)


@dataclass(frozen=True)
class Sla:
    source: str
    scenarios: Mapping[str, ScenarioSla]

    def bounds(self, scenario: str, profile: str) -> tuple[Bound, ...] | None:
        """The bounds of one scenario in one profile; None when the file says nothing of it."""
        entry = self.scenarios.get(scenario)
        return None if entry is None else entry.bounds(profile)

    def judged_from(self, scenario: str) -> str | None:
        entry = self.scenarios.get(scenario)
        return None if entry is None else entry.judged_from


# -- metric names ---------------------------------------------------------------------------
def _kind(annotation: Any) -> str:
    """'dict', 'list' or 'scalar' for a Metrics field's type (``X | None`` looked through)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (
        annotation,)
    origins = {typing.get_origin(o) or o for o in options}
    if dict in origins:
        return "dict"
    if list in origins:
        return "list"
    return "scalar"


METRIC_KINDS: dict[str, str] = {name: _kind(kind)
                                for name, kind in typing.get_type_hints(checks.Metrics).items()}
# dict metrics whose keys are fixed, read from the checks themselves on no data
FIXED_KEYS: dict[str, tuple[str, ...]] = {
    "registrar_updates": tuple(checks.registrar_updates([])),
    "latency_s": tuple(checks.latency_quantiles([])),
}


def metric_problem(name: str) -> str | None:
    """Why ``name`` is not a boundable metric of :class:`lab.checks.Metrics`, or None.

    A field of Metrics, or a dotted key into one of its dict fields (``registrar_updates.ok``,
    ``failed_by_kind.timeout``); a list field holds no single number to bound."""
    head, _, rest = name.partition(".")
    kind = METRIC_KINDS.get(head)
    if kind is None:
        return f"unknown metric {head!r} (metrics: {', '.join(sorted(METRIC_KINDS))})"
    if kind == "list":
        return f"{head} is a list, not a number: it cannot be bounded"
    if kind == "dict" and not rest:
        keys = FIXED_KEYS.get(head)
        example = f"{head}.{keys[0]}" if keys else f"{head}.<key>"
        return f"{head} is a table of values: bound one of its keys, e.g. {example}"
    if kind == "scalar" and rest:
        return f"{head} is a number, it has no key {rest!r}"
    fixed = FIXED_KEYS.get(head)
    if fixed is not None and rest not in fixed:
        return f"{head} has no key {rest!r} (keys: {', '.join(fixed)})"
    return None


# -- where each key was written -------------------------------------------------------------
_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER = re.compile(rf"^\s*\[\s*({_KEY})\s*\]")
_ASSIGN = re.compile(rf"^\s*({_KEY})\s*=")


def _parts(key: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in re.findall(_PART, key))


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line number (1-based) of every table header and every key, by its full path
    (``("kill_primary", "fast", "takeover_s")``). Enough TOML for an SLA file: one key per
    line, no multi-line values."""
    out: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if m := _HEADER.match(line):
            table = _parts(m.group(1))
            out.setdefault(table, number)
        elif m := _ASSIGN.match(line):
            path = table + _parts(m.group(1))
            for i in range(len(table) + 1, len(path) + 1):
                out.setdefault(path[:i], number)
    return out


# -- the loader -----------------------------------------------------------------------------
def _leaves(prefix: tuple[str, ...], value: Any) -> Iterable[tuple[tuple[str, ...], Any]]:
    """A metric's value, or every leaf of a dotted metric written as a nested table."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves((*prefix, k), v)
    else:
        yield prefix, value


def parse_sla(text: str, src: str, profiles: Iterable[str],
              scenarios: Iterable[str] | None = None) -> Sla:
    """Read an SLA file's text. ``profiles`` are the known profile names; ``scenarios`` the
    known scenario names (None: any name is accepted). Raises SlaError with every problem."""
    name = Path(src).name
    profiles = set(profiles)
    known = None if scenarios is None else set(scenarios)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise SlaError([f"{src}:{line.group(1) if line else 1}: {exc}"]) from exc
    lines = key_lines(text)
    problems: list[str] = []

    def at(path: tuple[str, ...]) -> int:
        return lines.get(path, 1)

    def problem(path: tuple[str, ...], message: str) -> None:
        problems.append(f"{src}:{at(path)}: {message}")

    clash = sorted(profiles & set(METRIC_KINDS))
    if clash:
        problems.append(f"{src}:1: profile names {clash} are also metric names")
    entries: dict[str, ScenarioSla] = {}
    for scenario, table in raw.items():
        if not isinstance(table, dict):
            problem((scenario,), f"{scenario}: expected a table [{scenario}] of bounds")
            continue
        if known is not None and scenario not in known:
            close = difflib.get_close_matches(scenario, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            problem((scenario,), f"unknown scenario {scenario!r} (no test_{scenario} among "
                    f"the {len(known)} tests scanned{hint})")
            continue
        shared: list[Bound] = []
        by_profile: dict[str, list[Bound]] = {}
        judged_from: str | None = None
        for key, value in table.items():
            base: tuple[str, ...]
            if key == JUDGED_FROM:
                if isinstance(value, str) and re.fullmatch(r"[a-z_]+", value):
                    judged_from = value
                else:
                    problem((scenario, key), f"{scenario}.{key}: expected a fault kind such "
                            f"as \"crash\" or \"partition\", got {value!r}")
                continue
            if key in profiles and isinstance(value, dict):
                target, base = by_profile.setdefault(key, []), (scenario, key)
                leaves = list(_leaves((), value))
            elif key in METRIC_KINDS or not isinstance(value, dict):
                target, base = shared, (scenario,)
                leaves = list(_leaves((key,), value))
            else:
                problem((scenario, key), f"{scenario}.{key}: neither a profile (profiles: "
                        f"{', '.join(sorted(profiles))}) nor a metric")
                continue
            for rel, spec in leaves:
                path, metric = base + rel, ".".join(rel)
                why = metric_problem(metric)
                if why is not None:
                    problem(path, f"{'.'.join(path)}: {why}")
                    continue
                try:
                    target.append(parse_bound(metric, spec, f"{name}:{at(path)}"))
                except BoundError as exc:
                    problem(path, f"{'.'.join(base)}.{exc}")
        entries[scenario] = ScenarioSla(tuple(shared),
                                        {p: tuple(b) for p, b in by_profile.items()},
                                        judged_from)
    if problems:
        raise SlaError(problems)
    return Sla(src, entries)


def load_sla(path: Path | str = DEFAULT_PATH, profiles: Iterable[str] | None = None,
             scenarios: Iterable[str] | None = None) -> Sla:
    """Read an SLA file; ``profiles`` default to those of ``fixtures/profiles.toml``."""
    if profiles is None:
        from lab.services.profiles import load_profiles

        profiles = load_profiles()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SlaError([f"{path}:1: cannot read: {exc.strerror or exc}"]) from exc
    return parse_sla(text, str(path), profiles, scenarios)


# -- scenario names -------------------------------------------------------------------------
_TEST_DEF = re.compile(r"^\s*(?:async\s+)?def\s+test_(\w+)\s*\(", re.MULTILINE)


def scenario_names(texts: Iterable[str]) -> set[str]:
    """Every ``test_X`` function defined in these Python sources, as ``X``."""
    return {m.group(1) for text in texts for m in _TEST_DEF.finditer(text)}


def scenario_of(test_name: str) -> str:
    """A test function's name (``test_kill_primary``, parameters left out) as a scenario."""
    return test_name.split("[", 1)[0].removeprefix("test_")


def scenario_sources(paths: Iterable[Path]) -> list[str]:
    """The text of every test module under these files and directories."""
    texts = []
    for path in paths:
        files = [path] if path.is_file() else sorted(path.rglob("test_*.py")) if path.is_dir() \
            else []
        texts += [f.read_text(errors="replace") for f in files if f.suffix == ".py"]
    return texts


# -- judging one run ------------------------------------------------------------------------
def judge(metrics: Any, bounds: Iterable[Bound], label: str = "") -> list[Verdict]:
    """Every bound checked (like :func:`lab.verdict.judge`), but a dotted key the metrics do
    not have (``answered_by.192.168.1.4`` when nobody answered) is unmeasured, not an error:
    the file was checked for names already."""
    out = []
    for bound in bounds:
        try:
            actual = value_of(metrics, bound.metric)
        except KeyError:
            actual = None
        out.append(Verdict(bound, actual, bound.holds(actual), label))
    return out


def run_label(scenario: str, profile: str) -> str:
    """How a verdict names its run: ``kill_primary[fast]``."""
    return f"{scenario}[{profile}]"


def bound_text(bound: Bound) -> str:
    """The bound as written after the metric: ``<= 21.5``, ``3..20``, ``null``."""
    return str(bound).removeprefix(bound.metric + " ").removeprefix("in ").removeprefix(
        "is ")
