"""The horizon planner: every ``period_s``, plan the battery over the next hours and hand the allocation
kernel the three BESS settings that carry the plan out (docs/planner.md).

The kernel sees one instant: without a plan it discharges whenever vehicles want more than the cap and
recharges whenever there is headroom. The plan changes that only where foresight pays:

* ``support_max_kw`` rations the discharge now when the energy is worth more later (a dispatch window
  that needs it; with ``leveling`` > 0, also a forecast deeper deficit);
* ``charge_min_kw`` charges the battery before the vehicles when a known window cannot be held
  otherwise (there is no headroom to fill it from);
* ``soc_target`` stays ``soc_max`` - recharging from headroom is free without a tariff - except before a
  window that must absorb power (a target above the station's own load), which needs room.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from station.config import StationConfig
from station.control.decide import gun_efficiencies
from station.control.observation import Observation
from station.plan.forecast import grid_limits, profile_demand, session_demand
from station.plan.kernel import solve
from station.plan.problem import Problem, Solution, Weights
from station.plan.reference import Steps

TOL_KW = 1.0  # a planned power within this of the kernel's own choice is the kernel's own choice


@dataclass(frozen=True)
class Window:
    """A known dispatch window (leases and schedules from the operator), in the observation's time."""

    start_s: float
    end_s: float
    import_limit_kw: float
    export_limit_kw: float
    target_kw: float = math.nan  # grid power to hold; negative = export


@dataclass(frozen=True)
class BessPlan:
    soc_target: float  # -> BessInput.soc_target   (recharge towards this)
    support_max_kw: float  # -> BessInput.support_max_kw (most discharge to carry vehicles now; nan: no limit)
    charge_min_kw: float  # -> BessInput.charge_min_kw  (charge at least this now, before vehicles)
    soc: np.ndarray  # planned SoC at the start of each planner step and at the end ([steps + 1])
    bess_kw: np.ndarray  # planned BESS power per planner step (> 0 discharging) ([steps])


class Planner:
    """Plans the BESS for one station. ``start_hour``: local hour of day (fractional) at ``t_s = 0`` of
    the observations, for the hourly arrival profile."""

    def __init__(self, cfg: StationConfig, *, start_hour: float = 0.0) -> None:
        pc = cfg.control.planner
        self.cfg = cfg
        self.start_hour = start_hour
        self.step_s = pc.step_s
        self.period_s = pc.period_s
        self.steps = max(2, int(round(pc.horizon_s / pc.step_s)))
        guns = cfg.guns()
        self.gun_eff = np.array(gun_efficiencies(cfg))
        self.gun_max_kw = np.array([g.max_power_kw for g in guns])
        module_kw = sum(cab.modules.rated_kw / cab.modules.efficiency for cab, _ in cfg.modules())
        self.capability_kw = min(float(np.sum(self.gun_max_kw / self.gun_eff)), module_kw)
        self.last_t: float | None = None
        self.problem: Problem | None = None  # the last problem solved (reports, plots, tests)
        self.solution: Solution | None = None

    def due(self, t_s: float) -> bool:
        """Re-plan every ``period_s`` (and at the first call, or when time runs backwards: a new run)."""
        return self.last_t is None or t_s < self.last_t or t_s - self.last_t >= self.period_s - 1e-9

    def forecast(self, obs: Observation, schedule: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vehicle demand, grid limit and hold flag per planner step (forecast.py)."""
        pc = self.cfg.control.planner
        n, dt = self.steps, self.step_s
        demand = session_demand(obs, self.gun_max_kw, self.gun_eff, n, dt, pc.unknown_session_s)
        demand[1:] = np.maximum(demand[1:], profile_demand(pc.arrival_profile_kw, self.start_hour, obs.t_s, n, dt)[1:])
        limit, hold = grid_limits(self.cfg, obs, schedule, n, dt)
        return np.minimum(demand, self.capability_kw), limit, hold

    def plan(self, obs: Observation, schedule: Sequence[Any]) -> BessPlan:
        """Solve the horizon from ``obs`` and the known ``schedule`` (objects with the fields of
        :class:`Window`) and return the kernel's BESS settings for now."""
        self.last_t = obs.t_s
        b = self.cfg.bess
        if b is None or not obs.bess_available or math.isnan(obs.bess_soc):
            self.problem = self.solution = None
            return BessPlan(math.nan, math.nan, 0.0, np.full(self.steps + 1, math.nan), np.zeros(self.steps))
        demand, limit, hold = self.forecast(obs, schedule)
        pc = self.cfg.control.planner
        p = Problem(
            dt_h=self.step_s / 3600.0, demand_kw=demand, limit_kw=limit, hold=hold, aux_kw=obs.aux_load_kw,
            capacity_kwh=b.capacity_kwh, soc0=obs.bess_soc, soc_min=b.soc_min, soc_max=b.soc_max,
            reserve_soc=b.reserve_soc, max_charge_kw=b.max_charge_kw, max_discharge_kw=b.max_discharge_kw,
            charge_efficiency=b.charge_efficiency, discharge_efficiency=b.discharge_efficiency,
            soc_levels=pc.soc_levels, weights=Weights(leveling=pc.leveling),
        )
        sol = solve(p)
        self.problem, self.solution = p, sol
        return BessPlan(*settings_now(p, sol), sol.soc, sol.bess_kw)


def settings_now(p: Problem, sol: Solution) -> tuple[float, float, float]:
    """``(soc_target, support_max_kw, charge_min_kw)`` that make the kernel do the plan's first step.

    * ``soc_target`` is ``soc_max`` (recharge from all the headroom) unless the plan charges less than
      that, to keep room for a window that must absorb: then the SoC the plan reaches at the next step.
    * Support is unlimited (nan) unless the plan rations it: it discharges less than the kernel would for
      the forecast deficit, or - with no deficit forecast now - the energy is worth more later than
      covering the first kW of a deficit that appears unforeseen (then none until the next re-plan).
    * A minimum charge only when the plan charges harder than the headroom allows."""
    if p.hold[0]:
        return p.soc_max, math.nan, 0.0  # the kernel holds the grid with the battery itself
    st = Steps(p)
    b0 = float(sol.bess_kw[0])
    d0 = st.deficit[0]
    own = st.greedy(0, p.soc0)
    soc_target = float(sol.soc[1]) if d0 <= 0.0 and b0 > own + TOL_KW else p.soc_max
    charge_min = -b0 if b0 < -(max(-d0, 0.0) + TOL_KW) else 0.0
    if d0 > 0.0:
        rationed = b0 < own - TOL_KW
    else:
        rationed = marginal_value(p, st, sol) > st.weight[0]
    return soc_target, (max(b0, 0.0) if rationed else math.nan), charge_min


def marginal_value(p: Problem, st: Steps, sol: Solution) -> float:
    """Cost-to-go saved per kWh the battery still holds after step 0, per kWh it would deliver (over one
    average SoC grid cell below the planned SoC: the slope of the interpolated cost-to-go)."""
    s1 = float(sol.soc[1])
    cell = (p.soc_max - p.soc_min) / (p.soc_levels - 1)
    row = list(sol.value[1])
    saved = st.interp(row, s1 - cell) - st.interp(row, s1)
    return saved / (cell * p.capacity_kwh * p.discharge_efficiency)
