"""The one way the lab waits: poll a function until its value is acceptable, or give up.

Every wait in the lab, the plugin and the scenarios goes through :func:`wait_for`, so every
wait that gives up fails the same way: one :class:`WaitTimeout` that says what was awaited, for
how long, and the last value seen (or the last exception raised while looking). Polling starts
fast (20 ms) and backs off to a quarter second, so a wait notices a change quickly without
spinning a core for minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_UNSEEN: Any = object()


class WaitTimeout(AssertionError):
    """A wait gave up. ``last`` is the last value the awaited function returned (or the
    exception it last raised); the message says what was awaited and shows it."""

    def __init__(self, message: str, last: Any = None) -> None:
        super().__init__(message)
        self.last = last


def wait_for(fn: Callable[[], T], *, until: Callable[[T], Any] = bool, timeout: float = 30.0,
             what: str | Callable[[], str] = "", interval: float = 0.02,
             max_interval: float = 0.25, errors: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``fn`` until ``until(value)`` is true; return that value.

    ``errors`` lists exceptions that mean "not yet" (a file not written yet, a node still
    booting); any other exception ends the wait at once. On timeout, :class:`WaitTimeout`
    carries the last value (or exception) seen.
    """
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    delay = interval
    last: Any = _UNSEEN
    while True:
        try:
            value = fn()
        except errors as exc:
            last = exc
        else:
            last = value
            if until(value):
                return value
        now = time.monotonic()
        if now >= deadline:
            described = what() if callable(what) else what
            seen = "nothing (never returned)" if last is _UNSEEN else _short(last)
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for "
                              f"{described or getattr(fn, '__name__', 'a condition')}; "
                              f"last seen: {seen}", None if last is _UNSEEN else last)
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 1.5, max_interval)


def _short(value: Any, limit: int = 500) -> str:
    text = repr(value) if not isinstance(value, BaseException) else \
        f"{type(value).__name__}: {value}"
    return text if len(text) <= limit else text[:limit] + "…"
