"""Wall clock ↔ CLOCK_MONOTONIC, measured once per run and converted in one place.

Logs (heartbeat, dnsmasq, tcpdump) stamp wall-clock time; probes stamp CLOCK_MONOTONIC. The two
clocks differ by an offset that is constant unless someone steps or slews the wall clock, so a
run samples the pair at its start (and again at its end) and every conversion goes through
:class:`ClockMap`. Sampling reads monotonic, wall, monotonic and keeps the tightest of several
brackets: the error of one pair is then well under a microsecond on an idle machine, and it is
recorded (``err_s``) instead of assumed.

With a start and an end pair the map interpolates linearly, which absorbs NTP slewing during a
long run; a step of the wall clock in between would show up as a large disagreement between the
two pairs (``drift_s``), which the timeline header keeps for anyone who wants to check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, tzinfo


@dataclass(frozen=True)
class ClockPair:
    """A simultaneous reading of the two clocks; ``err_s`` bounds how simultaneous."""

    wall: float
    mono: float
    err_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"wall": self.wall, "mono": self.mono, "err_s": self.err_s}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> ClockPair:
        return cls(float(data["wall"]), float(data["mono"]), float(data.get("err_s", 0.0)))


def sample_pair(tries: int = 9) -> ClockPair:
    """Read (wall, mono) ``tries`` times and keep the reading with the tightest bracket."""
    best: ClockPair | None = None
    for _ in range(max(1, tries)):
        m0 = time.monotonic()
        w = time.time()
        m1 = time.monotonic()
        pair = ClockPair(wall=w, mono=(m0 + m1) / 2, err_s=(m1 - m0) / 2)
        if best is None or pair.err_s < best.err_s:
            best = pair
    assert best is not None
    return best


@dataclass(frozen=True)
class ClockMap:
    """Converts wall-clock seconds (epoch) to monotonic seconds and back."""

    start: ClockPair
    end: ClockPair | None = None

    @property
    def offset(self) -> float:
        """wall - mono at the start of the run."""
        return self.start.wall - self.start.mono

    @property
    def drift_s(self) -> float:
        """How much wall - mono moved between the two pairs (0 with a single pair)."""
        if self.end is None:
            return 0.0
        return (self.end.wall - self.end.mono) - self.offset

    def _offset_at_wall(self, wall: float) -> float:
        if self.end is None or self.end.wall == self.start.wall:
            return self.offset
        frac = (wall - self.start.wall) / (self.end.wall - self.start.wall)
        frac = min(max(frac, 0.0), 1.0)
        return self.offset + frac * self.drift_s

    def to_mono(self, wall: float) -> float:
        return wall - self._offset_at_wall(wall)

    def to_wall(self, mono: float) -> float:
        # the offset is nearly constant, so one fixed-point step is exact to far below a µs
        guess = mono + self.offset
        return mono + self._offset_at_wall(guess)

    def datetime_to_mono(self, when: datetime) -> float:
        """A timezone-aware datetime to monotonic seconds."""
        if when.tzinfo is None:
            raise ValueError("naive datetime: say which timezone the log was written in")
        return self.to_mono(when.timestamp())

    def local_tz(self) -> tzinfo:
        """The timezone of this process at the start of the run (what the daemons log in)."""
        tz = datetime.fromtimestamp(self.start.wall).astimezone().tzinfo
        assert tz is not None
        return tz

    def to_dict(self) -> dict[str, object]:
        return {
            "start": self.start.to_dict(),
            "end": None if self.end is None else self.end.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ClockMap:
        start = data["start"]
        end = data.get("end")
        assert isinstance(start, dict)
        return cls(
            ClockPair.from_dict(start),
            None if not isinstance(end, dict) else ClockPair.from_dict(end),
        )

    @classmethod
    def now(cls) -> ClockMap:
        return cls(sample_pair())
