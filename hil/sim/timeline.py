"""A scenario's timed events resolved to run seconds: dispatch windows and faults.

Scenario files give times as seconds from the start or as wall-clock ``"HH:MM[:SS]"``
(``Scenario.at_s`` converts); the simulator and the planner's schedule work with these resolved records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def start_hour_of(scenario: Any) -> float:
    """Local hour of day (fractional) at the start of the run: the planner's arrival profile is local."""
    s = scenario.start
    return s.hour + s.minute / 60.0 + s.second / 3600.0


def _opt(x: Any) -> float:
    return math.nan if x is None else float(x)


def windows_of(scenario: Any) -> list[Window]:
    out = []
    for ev in scenario.dispatch:
        start = scenario.at_s(ev.at)
        announced = 0.0 if ev.announced is None else scenario.at_s(ev.announced)
        out.append(Window(start, start + float(ev.valid_s), float(ev.import_limit_kw), float(ev.export_limit_kw),
                          _opt(ev.target_kw), _opt(ev.ramp_kw_per_s), min(announced, start)))
    return sorted(out, key=lambda w: w.start_s)


def faults_of(scenario: Any) -> list[Fault]:
    return [Fault(scenario.at_s(f.at), scenario.at_s(f.at) + float(f.duration_s), f.kind, f.target or "")
            for f in scenario.faults]
