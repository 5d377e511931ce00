"""Scenario time: run seconds, local wall time, and step functions that repeat every day.

A scenario names instants either as seconds from its start (a number) or as local wall time
``"HH:MM"``/``"HH:MM:SS"``: the first such time at or after the start. "Local" is the UTC offset of the
scenario's ``start``, for the whole run: a fixed offset has no daylight-saving jumps, so a wall time is a
plain modulo-a-day computation and the same file means the same thing on every machine.

Tariffs and arrival rates are daily step functions: a list of ``from: "HH:MM"`` boundaries, each value
holding until the next boundary; the last one wraps past midnight to the first.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterator, Sequence
from datetime import datetime

DAY_S = 86400.0

WALL_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
WALL_TIME_RULE = 'must be wall time "HH:MM" or "HH:MM:SS" (00:00 to 23:59:59)'
AT_RULE = 'must be seconds from the start (a number >= 0) or wall time "HH:MM" or "HH:MM:SS"'


def wall_seconds(text: str) -> int:
    """Seconds after local midnight of ``"HH:MM[:SS]"``. Raises ValueError with the rule."""
    m = WALL_TIME.match(text)
    if m is None:
        raise ValueError(WALL_TIME_RULE)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3) or 0)


def check_wall_time(value: object) -> str:
    """Pydantic validator of a ``from: "HH:MM"`` boundary (kept as written, for messages and docs)."""
    if not isinstance(value, str):
        raise ValueError(WALL_TIME_RULE)
    wall_seconds(value)
    return value


def check_at(value: object) -> float | str:
    """Pydantic validator of an instant: a number of seconds >= 0, or a wall time string (kept as written:
    it resolves against the start, which a field validator does not see)."""
    if isinstance(value, bool):
        raise ValueError(AT_RULE)
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(AT_RULE)
        return float(value)
    if isinstance(value, str) and WALL_TIME.match(value):
        return value
    raise ValueError(AT_RULE)


class RunClock:
    """Converts between run seconds and local time of day for a run starting at ``start`` (tz-aware)."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.start_sod = start.hour * 3600 + start.minute * 60 + start.second + start.microsecond / 1e6

    def at_s(self, at: float | str) -> float:
        """Run seconds of an instant as written in a scenario file."""
        if isinstance(at, str):
            return (wall_seconds(at) - self.start_sod) % DAY_S
        return float(at)

    def local_sod(self, t_s: float) -> float:
        """Local seconds after midnight, ``t_s`` run seconds after the start."""
        return (self.start_sod + t_s) % DAY_S


class DailySteps:
    """A value that changes at fixed local times every day (tariff periods, arrival rates).

    ``boundaries`` are seconds after midnight, strictly increasing; ``values[i]`` holds from
    ``boundaries[i]`` to the next boundary, and the last value holds until the first boundary of the next
    day (so a list that does not start at 00:00 wraps past midnight).
    """

    def __init__(self, boundaries: Sequence[float], values: Sequence[float]) -> None:
        if not boundaries or len(boundaries) != len(values):
            raise ValueError("need one value per boundary, at least one")
        if any(b >= a for a, b in zip(boundaries[1:], boundaries)):
            raise ValueError("boundaries must be strictly increasing")
        self.boundaries = [float(b) for b in boundaries]
        self.values = [float(v) for v in values]

    def _index(self, sod: float) -> int:
        """Index of the period in force at local second of day ``sod`` (-1 wraps to the last)."""
        return bisect.bisect_right(self.boundaries, sod) - 1

    def at(self, sod: float) -> float:
        return self.values[self._index(sod % DAY_S)]

    def segments(self, clock: RunClock, t0_s: float, t1_s: float) -> Iterator[tuple[float, float, float]]:
        """``(start_s, end_s, value)`` pieces of constant value covering run seconds ``[t0_s, t1_s)``.

        Boundaries are placed in run seconds day by day (not by stepping from one to the next), so float
        rounding can neither skip a boundary nor produce an endless run of empty pieces."""
        if t1_s <= t0_s:
            return
        s0 = clock.start_sod
        first_day = math.floor((s0 + t0_s) / DAY_S)
        last_day = math.floor((s0 + t1_s) / DAY_S)
        cuts = [(day * DAY_S + b - s0, i) for day in range(first_day, last_day + 1)
                for i, b in enumerate(self.boundaries)]
        t, i = t0_s, self._index(clock.local_sod(t0_s))
        for edge, j in cuts:
            if t0_s < edge < t1_s:
                yield t, edge, self.values[i]
                t, i = edge, j
        yield t, t1_s, self.values[i]
