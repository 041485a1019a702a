"""Verdicts: bounds on metrics, checked all at once.

A scenario states its bounds in one place, ``expect(m, takeover_s="<= 12", leases_lost=0)``,
and gets one AssertionError that lists *every* bound the run broke with the value it had, not
just the first. A bound is written the way a person would say it:

* ``"<= 12"``, ``"< 5"``, ``">= 0.9"``, ``"> 0"``, ``"== 0"``, ``"!= 0"`` -- a comparison;
* ``"3..20"`` -- a band, both ends included (a known design failure measured in a range);
* a bare number or bool -- equality; ``None`` -- the metric must be unmeasured (null).

A metric that is ``None`` (not measured: no fault, no renewal) breaks every bound except
``None``: unmeasured is never "0 %". Metric names may be dotted to reach inside a dict metric
(``registrar_updates.ok``). Everything here is pure, so SLA files and scenarios share it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("<=", ">=", "==", "!=", "<", ">")
_COMPARISON = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(-?[0-9.]+(?:[eE]-?[0-9]+)?)\s*$")
_BAND = re.compile(r"^\s*(-?[0-9.]+)\s*\.\.\s*(-?[0-9.]+)\s*$")


class BoundError(ValueError):
    """A bound that cannot be read (``takeover_s: '=< 12' is not a bound ...``)."""


@dataclass(frozen=True)
class Bound:
    metric: str
    op: str  # one of OPERATORS, "in" (a band) or "is" (None: must be unmeasured)
    value: float | tuple[float, float] | None
    source: str = ""  # where the bound was written, e.g. "fixtures/slas.toml:12"

    def __str__(self) -> str:
        if self.op == "in" and isinstance(self.value, tuple):
            return f"{self.metric} in {_num(self.value[0])}..{_num(self.value[1])}"
        if self.op == "is":
            return f"{self.metric} is null"
        return f"{self.metric} {self.op} {_num(self.value)}"

    def holds(self, actual: Any) -> bool:
        if self.op == "is":
            return actual is None
        if actual is None or isinstance(actual, (list, dict, str)):
            return False
        x = float(actual)
        if math.isnan(x):
            return False
        if self.op == "in":
            assert isinstance(self.value, tuple)
            return self.value[0] <= x <= self.value[1]
        assert isinstance(self.value, float)
        v = self.value
        return {"<=": x <= v, ">=": x >= v, "==": x == v, "!=": x != v, "<": x < v,
                ">": x > v}[self.op]


@dataclass(frozen=True)
class Verdict:
    bound: Bound
    actual: Any
    ok: bool
    label: str = ""  # the scenario (and profile) the verdict is about

    def __str__(self) -> str:
        where = f" ({self.bound.source})" if self.bound.source else ""
        who = f"{self.label}: " if self.label else ""
        if self.ok:
            return f"{who}{self.bound.metric} {_num(self.actual)} ok ({self.bound}){where}"
        if self.actual is None:
            return f"{who}{self.bound.metric} not measured, wanted {_wanted(self.bound)}{where}"
        return f"{who}{self.bound.metric} {_num(self.actual)} {_broken(self.bound)}{where}"


def parse_bound(metric: str, spec: Any, source: str = "") -> Bound:
    """One bound from how it is written (see module doc); BoundError names what is wrong."""
    if spec is None:
        return Bound(metric, "is", None, source)
    if isinstance(spec, bool):
        return Bound(metric, "==", float(spec), source)
    if isinstance(spec, (int, float)):
        return Bound(metric, "==", float(spec), source)
    if isinstance(spec, str):
        m = _COMPARISON.match(spec)
        if m:
            return Bound(metric, m.group(1), float(m.group(2)), source)
        m = _BAND.match(spec)
        if m:
            lo, hi = float(m.group(1)), float(m.group(2))
            if lo > hi:
                raise BoundError(f"{metric}: band {spec!r} has its low end above its high end")
            return Bound(metric, "in", (lo, hi), source)
        if spec.strip().lower() in ("null", "none"):
            return Bound(metric, "is", None, source)
    raise BoundError(f"{metric}: {spec!r} is not a bound (write '<= 12', '< 5', '>= 0.9', "
                     "'== 0', a band '3..20', a number, or null)")


def value_of(metrics: Any, name: str) -> Any:
    """A metric by (dotted) name from a Metrics object or a dict; KeyError if it has none."""
    data = metrics.to_dict() if hasattr(metrics, "to_dict") else metrics
    current: Any = data
    for part in name.split("."):
        if not isinstance(current, Mapping) or part not in current:
            raise KeyError(f"no metric {name!r} (metrics: {', '.join(sorted(data))})")
        current = current[part]
    return current


def judge(metrics: Any, bounds: Iterable[Bound], label: str = "") -> list[Verdict]:
    """Every bound checked against the metrics (an unknown metric name is a KeyError)."""
    return [Verdict(b, value_of(metrics, b.metric), b.holds(value_of(metrics, b.metric)), label)
            for b in bounds]


def breaches(verdicts: Iterable[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if not v.ok]


def expect(metrics: Any, label: str = "", **bounds: Any) -> list[Verdict]:
    """Check every bound; raise one AssertionError listing each breach with its value."""
    __tracebackhide__ = True
    verdicts = judge(metrics, [parse_bound(k, v) for k, v in bounds.items()], label)
    broken = breaches(verdicts)
    if broken:
        raise AssertionError(f"{len(broken)} of {len(verdicts)} bounds broken:\n" +
                             "\n".join(f"  {v}" for v in broken))
    return verdicts


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _wanted(bound: Bound) -> str:
    return str(bound).removeprefix(bound.metric + " ")


def _broken(bound: Bound) -> str:
    """How the value broke the bound, e.g. '> 17' for a '<= 17' bound."""
    if bound.op == "in" and isinstance(bound.value, tuple):
        return f"outside {_num(bound.value[0])}..{_num(bound.value[1])}"
    if bound.op == "is":
        return "measured, wanted null"
    negation = {"<=": ">", ">=": "<", "<": ">=", ">": "<=", "==": "!=", "!=": "=="}
    return f"{negation[bound.op]} {_num(bound.value)}"
