"""The warm-lab pool's bookkeeping: which kind of lab a test will want, and what is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.pool import LabPool, key_of
from lab.pytest_plugin import predicted_key


class FakeItem:
    def __init__(self, fixtures: list[str], marker: Any = None,
                 profile: str = "fast") -> None:
        self.fixturenames = fixtures
        self._marker = marker
        self.config = type("C", (), {"getoption": staticmethod(lambda _name: profile)})()

    def get_closest_marker(self, name: str) -> Any:
        return self._marker if name == "stack" else None


def test_predicted_key_follows_the_fixtures_and_the_stack_marker() -> None:
    seed = FakeItem(["seed_lab", "probes"])
    assert predicted_key(seed) == key_of("fast", "seed", {})  # type: ignore[arg-type]
    marked = FakeItem(["lab"], pytest.mark.stack("seed", profile="seed",
                                                  keep_findings=["F14"]).mark)
    assert predicted_key(marked) == key_of(  # type: ignore[arg-type]
        "seed", "seed", {"keep_findings": ["F14"]})
    assert predicted_key(FakeItem(["lab"])) == key_of(  # type: ignore[arg-type]
        "fast", "none", {})
    assert predicted_key(FakeItem(["tmp_path"])) is None  # type: ignore[arg-type]
    assert predicted_key(None) is None


def test_bare_labs_and_unknown_kinds_are_not_booted_ahead(tmp_path: Path) -> None:
    pool = LabPool(1, tmp_path, lambda: "never")
    pool.prepare(None)
    pool.prepare(key_of("fast", "none", {}))
    assert pool.booting == []
    assert pool.take(key_of("fast", "seed", {})) is None and pool.missed == 1
