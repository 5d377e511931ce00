"""The planning problem on arrays, and its solution: what the horizon solve sees and returns.

The horizon is ``N`` equal steps of ``dt_h`` hours. Step ``k`` is either

* a *normal* step: an import cap ``limit_kw[k]`` the allocation kernel keeps. The kernel then does one
  of three things with the battery, and the planner chooses among them: discharge to carry vehicle
  demand above the cap (at most ``support_max_kw``, never below the reserve), recharge from headroom
  under the cap (the kernel always does, towards ``soc_target``), or charge harder than the headroom
  and curtail vehicles for it (``charge_min_kw``);
* a *hold* step: a grid power ``limit_kw[k]`` the kernel must hold (a dispatch target, or a cap below the
  auxiliary load). Then the kernel moves the battery itself, before any vehicle, down to ``soc_min``
  (the reserve exists for this), and the planner only decides in which state the battery arrives.

The cost the solve minimises (kWh-weighted, see docs/planner.md for why this shape):

* vehicle demand not served, ``u + leveling * u^2 / (2 P)`` per step for ``u`` kW unserved, ``P`` the
  battery's discharge rating, weighted ``1 + time_preference * (hours from step k to the horizon's
  end)``: a kWh now counts more than a forecast one later, and with ``leveling`` > 0 a kWh goes where
  the deficit is deepest rather than where it is shallow;
* vehicles curtailed to charge the battery, ``forced`` times ``f + f^2 / (2 P)``: above any vehicle
  trade-off, so it only happens to make a grid obligation feasible, and spread out rather than in a few
  deep cuts;
* a dispatch target not held (``shortfall`` per kWh): grid before vehicles;
* minus ``terminal_value`` per kWh left in the battery at the end (less than any unserved kWh, so the
  plan never keeps energy beyond the horizon while vehicles go short inside it).

The weights travel with the problem (``Weights``), not as module constants, so the compiled kernel's
cache never holds stale values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np



@dataclass(frozen=True)
class Weights:
    """The cost of a plan (see the module docstring); defaults are the station's (docs/planner.md)."""

    leveling: float = 0.0
    time_preference: float = 0.01  # per hour of lead: breaks ties towards now
    forced: float = 50.0
    shortfall: float = 1000.0
    terminal_value: float = 0.5

    def array(self) -> np.ndarray:
        return np.array([self.leveling, self.time_preference, self.forced, self.shortfall, self.terminal_value])


@dataclass(frozen=True)
class Problem:
    """One planning problem. Powers kW at the AC bus, energies kWh, SoC as fractions."""

    dt_h: float
    demand_kw: np.ndarray  # [N] forecast vehicle demand at the grid side
    limit_kw: np.ndarray  # [N] import cap (normal step) or grid power to hold (hold step)
    hold: np.ndarray  # [N] bool
    aux_kw: float
    capacity_kwh: float
    soc0: float
    soc_min: float
    soc_max: float
    reserve_soc: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_efficiency: float
    discharge_efficiency: float
    soc_levels: int = 101
    weights: Weights = Weights()

    @property
    def steps(self) -> int:
        return len(self.demand_kw)

    def reserve_level(self) -> int:
        """Index of the SoC grid point at the reserve: the reserve's share of the SoC range, with at least
        one cell on each side that has room (reference.py, kernel.py)."""
        m = self.soc_levels
        j = int(math.floor((self.reserve_soc - self.soc_min) / (self.soc_max - self.soc_min) * (m - 1) + 0.5))
        if self.reserve_soc > self.soc_min:
            j = max(j, 1)
        if self.reserve_soc < self.soc_max:
            j = min(j, m - 2)
        return min(max(j, 0), m - 1)

    def args(self) -> tuple[object, ...]:
        """Arguments of ``kernel.solve_kernel`` in order (arrays contiguous, float64 / bool)."""
        return (
            float(self.dt_h), np.ascontiguousarray(self.demand_kw, dtype=np.float64),
            np.ascontiguousarray(self.limit_kw, dtype=np.float64), np.ascontiguousarray(self.hold, dtype=np.bool_),
            float(self.aux_kw), float(self.capacity_kwh), float(self.soc0), float(self.soc_min),
            float(self.soc_max), float(self.reserve_soc), float(self.max_charge_kw), float(self.max_discharge_kw),
            float(self.charge_efficiency), float(self.discharge_efficiency), int(self.soc_levels),
            self.reserve_level(), self.weights.array(),
        )


@dataclass(frozen=True)
class Solution:
    bess_kw: np.ndarray  # [N] planned battery power per step (> 0 discharging)
    soc: np.ndarray  # [N + 1] planned SoC at the start of each step, and at the end
    value: np.ndarray  # [N + 1, soc_levels] cost-to-go on the SoC grid (for the marginal value of energy)
    cost: float  # the plan's cost, evaluated exactly along ``soc`` (no interpolation)
