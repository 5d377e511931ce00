"""A scenario's timed events resolved to run seconds: dispatch windows and faults.

Scenario files give times as seconds from the start or as wall-clock ``"HH:MM[:SS]"`` in the start's
timezone (the first such time at or after the start); the simulator, the planner's schedule and the
perfect-foresight bound all work in run seconds, and this module is the one place that converts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Window:
    """A dispatch event in run seconds. Doubles as the planner's known schedule entry."""

    start_s: float
    end_s: float
    import_limit_kw: float
    export_limit_kw: float
    target_kw: float = math.nan  # negative = export
    ramp_kw_per_s: float = math.nan
    announced_s: float = 0.0


@dataclass(frozen=True)
class Fault:
    start_s: float
    end_s: float
    kind: str
    target: str


def at_seconds(start: datetime, at: float | int | str) -> float:
    """Run seconds of a scenario time: a number of seconds, or wall time at or after ``start``."""
    if isinstance(at, (int, float)):
        return float(at)
    parts = [int(x) for x in at.split(":")]
    hh, mm, ss = (parts + [0, 0])[:3]
    wall = start.replace(hour=hh, minute=mm, second=ss, microsecond=0)
    if wall < start:
        wall += timedelta(days=1)
    return (wall - start).total_seconds()


def start_hour_of(scenario: Any) -> float:
    """Local hour of day (fractional) at the start of the run: the planner's arrival profile is local."""
    s = scenario.start
    return s.hour + s.minute / 60.0 + s.second / 3600.0


def _opt(x: Any) -> float:
    return math.nan if x is None else float(x)


def windows_of(scenario: Any) -> list[Window]:
    out = []
    for ev in scenario.dispatch:
        start = at_seconds(scenario.start, ev.at)
        announced = 0.0 if getattr(ev, "announced", None) is None else at_seconds(scenario.start, ev.announced)
        out.append(Window(start, start + float(ev.valid_s), float(ev.import_limit_kw), float(ev.export_limit_kw),
                          _opt(ev.target_kw), _opt(getattr(ev, "ramp_kw_per_s", None)), min(announced, start)))
    return sorted(out, key=lambda w: w.start_s)


def faults_of(scenario: Any) -> list[Fault]:
    return [Fault(at_seconds(scenario.start, f.at), at_seconds(scenario.start, f.at) + float(f.duration_s), f.kind,
                  f.target) for f in scenario.faults]
