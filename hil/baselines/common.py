"""What every baseline shares: the station's static numbers, the gun limits of the moment, the site budget.

The baselines are judged under exactly the constraints ours sees, so they read the same station file and
the same :class:`~station.control.observation.Observation`. Where a peer needs a number an integrator
would configure for it (the site limit given to the charger controller, the charger efficiency), it gets
the value the station file implies, not a handicap:

* the power budget for the guns is the import cap in force less the station's cap margin (the same rule as
  ours, ``station.control.decide.with_margin``) and its auxiliary load (what an integrator enters as the
  chargers' site limit);
* a gun's AC draw is its DC power over the nominal efficiency of the modules that can feed it
  (``station.control.decide.gun_efficiencies``, the same figure ours uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from station.config import StationConfig
from station.control.decide import gun_efficiencies, with_margin
from station.control.observation import Decision, Observation


@dataclass(frozen=True)
class StationArrays:
    """Per-gun constants of the station, in ``cfg.guns()`` order."""

    gun_max_kw: np.ndarray
    gun_max_a: np.ndarray
    efficiency: np.ndarray
    priority: np.ndarray  # 1 is served first
    cfg: StationConfig

    @classmethod
    def of(cls, cfg: StationConfig) -> StationArrays:
        guns = cfg.guns()
        return cls(
            gun_max_kw=np.array([g.max_power_kw for g in guns], dtype=np.float64),
            gun_max_a=np.array([g.max_current_a for g in guns], dtype=np.float64),
            efficiency=np.array(gun_efficiencies(cfg), dtype=np.float64),
            priority=np.array([g.priority for g in guns], dtype=np.int64),
            cfg=cfg,
        )

    def gun_now_kw(self, obs: Observation) -> np.ndarray:
        """The gun's rating at its present voltage (its current limit bites at low voltage)."""
        volts = obs.voltage_v
        at_volts = np.where(np.isnan(volts), self.gun_max_kw, self.gun_max_a * np.nan_to_num(volts) / 1000.0)
        return np.minimum(self.gun_max_kw, at_volts)

    def session_max_kw(self, obs: Observation) -> np.ndarray:
        """Most a connected gun may be given: its rating now and its vehicle's BCP maximum; 0 if unplugged."""
        return np.where(obs.connected, np.maximum(np.minimum(self.gun_now_kw(obs), obs.vehicle_max_kw), 0.0), 0.0)

    def deliverable_kw(self, obs: Observation, limit_kw: np.ndarray) -> np.ndarray:
        """What a gun carries under a power limit: the vehicle takes at most what it asks (BCL), the gun at
        most its rating and the vehicle's maximum; an unplugged gun carries nothing."""
        top = np.minimum(self.session_max_kw(obs), np.maximum(obs.demand_kw, 0.0))
        return np.where(obs.connected, np.clip(limit_kw, 0.0, top), 0.0)

    def aim_kw(self, cap_kw: float) -> float:
        """The import cap in force as the chargers' site limit: inside it by the station's cap margin."""
        return float(with_margin(self.cfg, cap_kw)) if math.isfinite(cap_kw) else math.inf

    def budget_kw(self, obs: Observation) -> float:
        """AC power the guns may draw under the import cap in force (never negative)."""
        return max(0.0, self.aim_kw(obs.import_cap_kw) - obs.aux_load_kw)

    def decision(self, obs: Observation, gun_kw: np.ndarray, bess_kw: float = 0.0) -> Decision:
        """A decision for the module layer, with the grid power it implies (reported, not enforced)."""
        grid = float(np.sum(gun_kw / self.efficiency)) + obs.aux_load_kw - bess_kw
        return Decision(gun_kw=gun_kw, bess_kw=bess_kw, grid_kw=grid)


def water_fill(budget: float, caps: np.ndarray) -> np.ndarray:
    """Share ``budget`` equally, each share limited by its cap; what a capped share leaves goes to the rest.

    Returns the allocation (same shape as ``caps``). With an infinite or ample budget every cap is met.
    """
    caps = np.maximum(caps, 0.0)
    if budget >= caps.sum():
        return caps.copy()
    if budget <= 0.0:
        return np.zeros_like(caps)
    order = np.sort(caps)
    left = budget
    n = len(order)
    level = 0.0
    for i, c in enumerate(order):
        share = left / (n - i)
        if c >= share:
            level = share
            break
        left -= c
    return np.minimum(caps, level)
