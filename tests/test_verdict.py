"""Bounds and verdicts: how a bound is read, when it holds, and what a breach says."""

from __future__ import annotations

import pytest

from lab.checks import Metrics
from lab.verdict import BoundError, expect, judge, parse_bound, value_of


@pytest.mark.parametrize(("spec", "actual", "holds"), [
    ("<= 12", 12.0, True), ("<= 12", 12.01, False), ("< 5", 4.99, True), ("< 5", 5, False),
    (">= 0.9", 0.9, True), (">= 0.9", 0.5, False), ("> 0", 0, False), ("== 0", 0, True),
    ("!= 0", 3, True), ("3..20", 3, True), ("3..20", 20, True), ("3..20", 21, False),
    (0, 0, True), (0, 1, False), (True, True, True), (None, None, True), (None, 0, False),
    ("null", None, True), ("<= 12", None, False), ("3..20", None, False),
    ("<= 12", float("nan"), False),
])
def test_bound_holds(spec: object, actual: object, holds: bool) -> None:
    assert parse_bound("x", spec).holds(actual) is holds


@pytest.mark.parametrize("spec", ["=< 12", "12 <=", "about 3", "20..3", [1], {"a": 1}, ""])
def test_unreadable_bounds_name_the_metric(spec: object) -> None:
    with pytest.raises(BoundError, match=r"^takeover_s: "):
        parse_bound("takeover_s", spec)


def test_expect_lists_every_breach_with_its_value() -> None:
    m = Metrics(takeover_s=18.4, leases_lost=2, duplicate_ips=0, lease_survival=None)
    with pytest.raises(AssertionError) as info:
        expect(m, takeover_s="<= 17", leases_lost=0, duplicate_ips=0, lease_survival=">= 0.9")
    text = str(info.value)
    assert text.startswith("3 of 4 bounds broken")
    assert "takeover_s 18.4 > 17" in text
    assert "leases_lost 2 != 0" in text
    assert "lease_survival not measured, wanted >= 0.9" in text
    assert "duplicate_ips" not in text


def test_expect_returns_the_verdicts_when_all_hold() -> None:
    verdicts = expect(Metrics(takeover_s=2.0), takeover_s="<= 3")
    assert [v.ok for v in verdicts] == [True]


def test_dotted_metric_and_source_in_the_verdict() -> None:
    m = Metrics(registrar_updates={"ok": 0, "failed": 1})
    (v,) = judge(m, [parse_bound("registrar_updates.ok", ">= 1", "slas.toml:12")], "kill[fast]")
    assert not v.ok
    assert str(v) == "kill[fast]: registrar_updates.ok 0 < 1 (slas.toml:12)"


def test_unknown_metric_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no metric 'takover_s'"):
        value_of(Metrics(), "takover_s")
