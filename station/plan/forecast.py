"""The horizon as the planner sees it: forecast vehicle demand and the grid limit of every planner step.

Built in Python (NumPy) from what the controller knows now; the solve (kernel.py) only sees the arrays.

* **Sessions in progress** (``Observation``): each charging vehicle keeps drawing what it asks for now
  (its BCL demand, within its BCP limit and the gun's rating) until it has the energy it still wants
  or leaves, whichever comes first; with neither known, for ``unknown_session_s``.
  This is the as-soon-as-possible profile the allocation kernel itself serves.
* **Arrivals** (``arrival_profile_kw``): the typical demand of each local hour. The forecast of a future
  step is the larger of the two: the vehicles plugged in now draw at least what their sessions still
  want, and a typical hour brings at least its typical demand. Step 0 is now: sessions only.
* **Grid limits**: now, what is in force (``Observation``); later, the known dispatch windows (the
  latest-starting window touching a step sets its cap, export limit and target, as in force at run
  time), else the station's own cap. Every limit is taken with the controller's margin
  (``cap_margin_fraction``, ``station.control.decide.with_margin``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from station.config import StationConfig
from station.control.decide import with_margin
from station.control.observation import Observation


def step_overlap(start_s: np.ndarray | float, end_s: np.ndarray | float, n: int, dt_s: float) -> np.ndarray:
    """Fraction of each of ``n`` steps of ``dt_s`` (from 0) covered by ``[start_s, end_s)`` (broadcasts)."""
    a = np.arange(n) * dt_s
    return np.clip(np.minimum(np.asarray(end_s)[..., None], a + dt_s) - np.maximum(np.asarray(start_s)[..., None], a),
                   0.0, dt_s) / dt_s


def session_demand(obs: Observation, gun_max_kw: np.ndarray, gun_eff: np.ndarray, n: int, dt_s: float,
                   unknown_session_s: float) -> np.ndarray:
    """Grid-side kW the sessions in progress draw in each step, served as soon as possible. A demand not
    (yet) reported counts as none; a vehicle limit not reported, as the gun's rating."""
    on = obs.connected
    asked = np.nan_to_num(np.maximum(obs.demand_kw, 0.0), nan=0.0)
    vehicle_max = np.where(np.isnan(obs.vehicle_max_kw), gun_max_kw, obs.vehicle_max_kw)
    rate = np.where(on, np.minimum(np.minimum(asked, vehicle_max), gun_max_kw), 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        by_energy = np.where(rate > 0, np.maximum(obs.energy_wanted_kwh, 0.0) / rate * 3600.0, 0.0)
    by_departure = np.maximum(obs.departure_s - obs.t_s, 0.0)
    duration = np.fmin(by_energy, by_departure)  # fmin: a nan (unknown) gives way to the known one
    duration = np.where(np.isnan(duration), unknown_session_s, duration)
    return (rate / gun_eff) @ step_overlap(0.0, duration, n, dt_s)


def profile_demand(profile_kw: Sequence[float], start_hour: float, t_s: float, n: int, dt_s: float) -> np.ndarray:
    """The hourly profile at the middle of each step (local hour of day from the run's start hour)."""
    mid_h = start_hour + (t_s + (np.arange(n) + 0.5) * dt_s) / 3600.0
    return np.asarray(profile_kw, dtype=np.float64)[np.floor(mid_h % 24.0).astype(np.int64) % 24]


def grid_limits(cfg: StationConfig, obs: Observation, schedule: Sequence[Any], n: int,
                dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the import cap to keep (normal step) or the grid power to hold (hold step), and ``hold``.

    A step holds a grid power when a dispatch target is in force, or when the cap is below the auxiliary
    load (then the kernel holds the cap with the whole battery, as for a target)."""
    site_cap = cfg.import_cap_kw
    if cfg.dispatch.fallback_import_limit_kw is not None:
        site_cap = min(site_cap, cfg.dispatch.fallback_import_limit_kw)
    site_export = min(cfg.grid.export_limit_kw, cfg.dispatch.fallback_export_limit_kw)
    cap = np.full(n, site_cap)
    export = np.full(n, site_export)
    target = np.full(n, math.nan)
    starts = np.full(n, -math.inf)  # start of the window in force per step (the latest-starting one wins)
    for w in schedule:
        a, b = w.start_s - obs.t_s, w.end_s - obs.t_s
        touched = step_overlap(a, b, n, dt_s) > 0.0
        touched &= a >= starts
        cap[touched] = min(cfg.import_cap_kw, w.import_limit_kw)
        export[touched] = w.export_limit_kw
        target[touched] = w.target_kw
        starts[touched] = a
    cap[0], export[0], target[0] = obs.import_cap_kw, obs.export_cap_kw, obs.target_kw
    cap = with_margin(cfg, cap)
    export = with_margin(cfg, export)
    hold = ~np.isnan(target) | (cap < obs.aux_load_kw)
    limit = np.where(np.isnan(target), cap, np.minimum(np.maximum(target, -export), cap))
    return limit, hold
