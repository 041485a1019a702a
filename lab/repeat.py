"""The summary of repeated scenarios: pass counts and each metric's spread (pure)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any


def summarize(results: Iterable[tuple[str, bool, dict[str, Any]]],
              metrics: Sequence[str]) -> list[str]:
    """One line per scenario: ``passed/runs`` and, per metric measured in at least one run,
    ``min / median / max``. ``results`` are (scenario, passed, properties) per run; a
    property is a metric as the JUnit XML has it (``hapair.takeover_s`` or ``takeover_s``)."""
    runs: dict[str, list[tuple[bool, dict[str, Any]]]] = defaultdict(list)
    for scenario, ok, props in results:
        runs[scenario].append((ok, props))
    lines = []
    for scenario, entries in sorted(runs.items()):
        n_passed = sum(1 for ok, _ in entries if ok)
        parts = [f"{scenario}: {n_passed}/{len(entries)} passed"]
        for name in metrics:
            values = [v for _, props in entries
                      if (v := _number(props.get(f"hapair.{name}", props.get(name)))) is not None]
            if values:
                parts.append(f"{name} {min(values):.3g} / {statistics.median(values):.3g} / "
                             f"{max(values):.3g}")
        lines.append("; ".join(parts))
    return lines


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
