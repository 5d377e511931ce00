"""Dispatch evidence: how the measured grid power answered one setpoint.

Fed with grid-meter samples while a lease is active, :class:`ResponseMeter` computes, in O(1) memory
(leases last hours, samples come every control cycle):

- ``time_to_first_change_s``: from ``applied_at`` to the first sample that moved by at least
  ``change_threshold_kw`` from the power at ``applied_at``; None when no change was needed (the power
  was already where the setpoint wants it) or none happened.
- ``time_to_settle_s``: from ``applied_at`` to the start of the final run of samples inside the asked
  set widened by ``tolerance_kw`` (the exact target, or the band ``[-export_limit, import_limit]``);
  None if the last sample was outside.
- tracking error RMS / worst: distance of each sample from the *reference*, which moves from the
  initial power toward the asked set at the setpoint's ramp rate (so the plant is not blamed for a
  ramp the operator asked for). Sample-weighted.
- energy imported / exported (trapezoid between samples, split exactly where the power crosses zero),
  energy asked (target x duration; None for a limits-only setpoint), energy beyond the (ramped) limits.
- coverage: samples, and time not covered because two samples were more than ``max_gap_s`` apart
  (such a gap is not integrated: we report what was measured, not a guess).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from station.dispatch.model import PAYLOAD_VERSION

_KWS_PER_KWH = 3600.0


def move_toward(start: float, goal: float, max_step: float) -> float:
    """``start`` moved toward ``goal`` by at most ``max_step`` (>= 0)."""
    if goal > start:
        return min(goal, start + max_step)
    return max(goal, start - max_step)


@dataclass(frozen=True, slots=True)
class Asked:
    """What the setpoint asked, after clamping to the site (the values the cycle was given)."""

    import_limit_kw: float
    export_limit_kw: float
    target_kw: float | None
    ramp_kw_per_s: float


class ResponseMeter:
    """Streaming response metrics of one lease (see module docstring for the definitions)."""

    def __init__(
        self,
        asked: Asked,
        applied_at: float,
        initial_kw: float | None,
        *,
        tolerance_kw: float,
        change_threshold_kw: float,
        max_gap_s: float,
    ) -> None:
        self.asked = asked
        self.applied_at = applied_at
        self.initial_kw = initial_kw
        self._tol = tolerance_kw
        self._change = change_threshold_kw
        self._max_gap = max_gap_s
        self.samples = 0
        self._prev: tuple[float, float, bool, float] | None = None  # t, kw, in_band, violation
        self._first_change: float | None = None
        self._settled_since: float | None = None
        self._sum_sq = 0.0
        self._worst = 0.0
        self._in_band_s = 0.0
        self._measured_s = 0.0
        self._unmeasured_s = 0.0
        self._import_kws = 0.0
        self._export_kws = 0.0
        self._over_kws = 0.0
        self._last_t = applied_at

    # ---- reference and sets

    def _in_final_set(self, kw: float) -> bool:
        a, tol = self.asked, self._tol
        if a.target_kw is not None:
            return abs(kw - a.target_kw) <= tol
        return -a.export_limit_kw - tol <= kw <= a.import_limit_kw + tol

    def _band(self, p0: float, elapsed: float) -> tuple[float, float]:
        """The allowed band at ``elapsed`` s: limits that start at the initial power and close in at the ramp."""
        a = self.asked
        step = a.ramp_kw_per_s * elapsed
        upper = a.import_limit_kw if p0 <= a.import_limit_kw else move_toward(p0, a.import_limit_kw, step)
        lower = -a.export_limit_kw if p0 >= -a.export_limit_kw else move_toward(p0, -a.export_limit_kw, step)
        return lower, upper

    def _errors(self, p0: float, elapsed: float, kw: float) -> tuple[float, float]:
        """(tracking error, limit violation) of one sample, both >= 0."""
        lower, upper = self._band(p0, elapsed)
        violation = kw - upper if kw > upper else (lower - kw if kw < lower else 0.0)
        a = self.asked
        if a.target_kw is None:
            return violation, violation
        reference = move_toward(p0, a.target_kw, a.ramp_kw_per_s * elapsed)
        return abs(kw - reference), violation

    # ---- feeding

    def add(self, t: float, kw: float) -> None:
        if t < self.applied_at or (self._prev is not None and t <= self._prev[0]) or not math.isfinite(kw):
            return
        if self.initial_kw is None:
            self.initial_kw = kw
        p0 = self.initial_kw
        elapsed = t - self.applied_at
        error, violation = self._errors(p0, elapsed, kw)
        in_band = self._in_final_set(kw)
        self.samples += 1
        self._sum_sq += error * error
        self._worst = max(self._worst, error)
        if self._first_change is None and abs(kw - p0) >= self._change:
            self._first_change = elapsed
        if in_band:
            if self._settled_since is None:
                self._settled_since = t
        else:
            self._settled_since = None
        if self._prev is None:
            if elapsed > self._max_gap:  # no sample for a while after the setpoint took effect
                self._unmeasured_s += elapsed
        else:
            t1, p1, band1, v1 = self._prev
            dt = t - t1
            if dt > self._max_gap:
                self._unmeasured_s += dt
            else:
                self._measured_s += dt
                if band1:
                    self._in_band_s += dt
                imp, exp = _split_trapezoid(p1, kw, dt)
                self._import_kws += imp
                self._export_kws += exp
                self._over_kws += (v1 + violation) * dt / 2.0
        self._prev = (t, kw, in_band, violation)
        self._last_t = t

    # ---- result

    def change_needed(self) -> bool:
        return self.initial_kw is not None and not self._in_final_set(self.initial_kw)

    def report(self, ended_at: float, end_reason: str, setpoint: dict[str, Any]) -> dict[str, Any]:
        """The ``dispatch/report`` payload (docs/schemas/mqtt/dispatch-report.json)."""
        a = self.asked
        duration = max(0.0, ended_at - self.applied_at)
        tail = ended_at - self._last_t
        unmeasured = self._unmeasured_s + (tail if tail > self._max_gap else 0.0)
        settle = None if self._settled_since is None else self._settled_since - self.applied_at
        asked_import = asked_export = None
        if a.target_kw is not None:
            asked_import = max(a.target_kw, 0.0) * duration / _KWS_PER_KWH
            asked_export = max(-a.target_kw, 0.0) * duration / _KWS_PER_KWH
        return {
            "v": PAYLOAD_VERSION,
            "id": setpoint["id"],
            "setpoint": setpoint,
            "asked": {
                "import_limit_kw": a.import_limit_kw,
                "export_limit_kw": a.export_limit_kw,
                "target_kw": a.target_kw,
                "ramp_kw_per_s": a.ramp_kw_per_s,
            },
            "applied_at": self.applied_at,
            "ended_at": ended_at,
            "end_reason": end_reason,
            "initial_kw": None if self.initial_kw is None else float(self.initial_kw),
            "change_needed": self.change_needed(),
            "time_to_first_change_s": self._first_change if self.change_needed() else None,
            "time_to_settle_s": settle,
            "tolerance_kw": self._tol,
            "tracking_rms_kw": math.sqrt(self._sum_sq / self.samples) if self.samples else None,
            "tracking_worst_kw": self._worst if self.samples else None,
            "in_band_fraction": self._in_band_s / self._measured_s if self._measured_s > 0 else None,
            "energy_imported_kwh": self._import_kws / _KWS_PER_KWH,
            "energy_exported_kwh": self._export_kws / _KWS_PER_KWH,
            "energy_asked_import_kwh": asked_import,
            "energy_asked_export_kwh": asked_export,
            "energy_over_limit_kwh": self._over_kws / _KWS_PER_KWH,
            "samples": self.samples,
            "unmeasured_s": unmeasured,
        }


def _split_trapezoid(p1: float, p2: float, dt: float) -> tuple[float, float]:
    """(import kW*s, export kW*s) under the straight line from p1 to p2 over dt seconds."""
    if p1 >= 0 and p2 >= 0:
        return (p1 + p2) * dt / 2.0, 0.0
    if p1 <= 0 and p2 <= 0:
        return 0.0, -(p1 + p2) * dt / 2.0
    tz = dt * p1 / (p1 - p2)  # where the line crosses zero
    if p1 > 0:
        return p1 * tz / 2.0, -p2 * (dt - tz) / 2.0
    return p2 * (dt - tz) / 2.0, -p1 * tz / 2.0
