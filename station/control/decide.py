"""Our policy: the station's decision each cycle, from an :class:`Observation` to a :class:`Decision`.

This is the one ``decide`` the service runs and the offline simulator runs (no copy): it turns what the
drivers measured into the allocation kernel's packed input, calls the kernel, and keeps the kernel's
state (closed-loop caps, module assignment, hysteresis timers) from cycle to cycle in the packed arrays
themselves, so a cycle costs the kernel's own time plus a few vector copies.

Two corrections sit around the kernel, both because the plant is never exactly the model:

* **Grid bias.** The kernel balances the grid with a fixed module efficiency and the configured
  auxiliary load; real losses depend on load and real auxiliaries drift. The difference between the
  metered grid power and what the last decision expected is filtered into an extra auxiliary load, so
  the cap holds on the true grid power, not just on the model's.
* **BESS plan.** The kernel sees one instant; an optional horizon planner (``station.plan``) sets the
  battery's recharge target, support limit and minimum charge every few minutes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from station.allocate import layout as L
from station.allocate.model import AllocationInput, BessInput, GridInput, GunInput, ModuleInput, Params
from station.allocate.packing import Packed, fill_station, pack
from station.config import StationConfig
from station.control.observation import Decision, Observation

# time constant of the grid-bias filter: long against meter noise, short against load drift
BIAS_TAU_S = 5.0
# the bias learns only when the expected grid moved less than this over the last few cycles
BIAS_SETTLED_KW = 5.0
BIAS_SETTLED_CYCLES = 4
# the bias only ever adds load (a model that overstates losses just leaves a little headroom unused)
BIAS_MAX_KW_FRACTION = 0.1


def params_from(cfg: StationConfig) -> Params:
    c = cfg.control
    return Params(
        closed_loop_settle_s=c.closed_loop.settle_s,
        closed_loop_margin_kw=c.closed_loop.margin_kw,
        closed_loop_tolerance_kw=c.closed_loop.tolerance_kw,
        module_release_hold_s=c.modules.release_hold_s,
        module_release_margin_kw=c.modules.release_margin_kw,
        module_idle_current_a=c.modules.idle_current_a,
    )


def gun_efficiencies(cfg: StationConfig) -> list[float]:
    """Per gun, the nominal efficiency of the least efficient cabinet that can feed it (conservative)."""
    allowed = cfg.module_gun_matrix()
    modules = cfg.modules()
    eff = [1.0] * len(cfg.guns())
    for m, (cab, _) in enumerate(modules):
        for g, ok in enumerate(allowed[m]):
            if ok:
                eff[g] = min(eff[g], cab.modules.efficiency)
    return eff


def station_template(cfg: StationConfig) -> AllocationInput:
    """The static part of the allocation input: guns, modules and the switch matrix, no session."""
    guns = cfg.guns()
    eff = gun_efficiencies(cfg)
    allowed = cfg.module_gun_matrix()
    gun_inputs = tuple(GunInput(id=g.id, gun_max_kw=g.max_power_kw, priority=g.priority, efficiency=eff[i])
                       for i, g in enumerate(guns))
    module_inputs = tuple(
        ModuleInput(id=mid, rated_kw=cab.modules.rated_kw, allowed=tuple(g for g, ok in enumerate(allowed[m]) if ok),
                    max_current_a=cab.modules.max_current_a, min_voltage_v=cab.modules.min_voltage_v,
                    max_voltage_v=cab.modules.max_voltage_v)
        for m, ((cab, _), mid) in enumerate(zip(cfg.modules(), cfg.module_ids()))
    )
    b = cfg.bess
    bess = BessInput() if b is None else BessInput(
        soc=b.initial_soc, capacity_kwh=b.capacity_kwh, soc_min=b.soc_min, soc_max=b.soc_max,
        reserve_soc=b.reserve_soc, max_charge_kw=b.max_charge_kw, max_discharge_kw=b.max_discharge_kw,
        charge_efficiency=b.charge_efficiency, discharge_efficiency=b.discharge_efficiency, available=True)
    grid = GridInput(import_limit_kw=cfg.import_cap_kw, export_limit_kw=cfg.grid.export_limit_kw,
                     ramp_kw_per_s=cfg.grid.ramp_limit_kw_per_s)
    return AllocationInput(dt_s=cfg.control.period_s, grid=grid, guns=gun_inputs, bess=bess,
                           aux_load_kw=cfg.grid.aux_load_kw, modules=module_inputs, params=params_from(cfg))


class Controller:
    """Our policy (``name = "ours"``). One instance per station; ``decide`` once per cycle."""

    name = "ours"

    def __init__(self, cfg: StationConfig, *, planner: Any = None, engine: str = "numba") -> None:
        from station.allocate.kernel import allocate_kernel

        self.cfg = cfg
        self.template = station_template(cfg)
        self.pk: Packed = pack(self.template)
        self._kernel = allocate_kernel
        self.engine = engine
        guns = cfg.guns()
        self.gun_max_kw = np.array([g.max_power_kw for g in guns])
        self.gun_max_a = np.array([g.max_current_a for g in guns])
        self.gun_discharge_kw = np.array([g.max_discharge_kw if g.bidirectional else 0.0 for g in guns])
        self.aux_kw = cfg.grid.aux_load_kw
        self.bias_kw = 0.0
        self.expected_grid_kw = math.nan
        self._recent_model_kw: deque[float] = deque(maxlen=BIAS_SETTLED_CYCLES)  # expected grid, bias excluded
        self.planner = planner
        self.plan: Any = None
        self.schedule: Sequence[Any] = ()
        self.cycles = 0

    # ---- inputs that do not come every cycle ---------------------------------------------------------

    def set_schedule(self, windows: Sequence[Any]) -> None:
        """Known future and current dispatch windows (leases and schedules from the operator): the
        planner plans around them, and a lower import cap is approached ahead of its start. Each has
        ``start_s``, ``end_s``, ``import_limit_kw``, ``export_limit_kw`` and ``target_kw`` (obs time)."""
        self.schedule = tuple(windows)

    # ---- the cycle ------------------------------------------------------------------------------------

    def decide(self, obs: Observation) -> Decision:
        self._update_bias(obs)
        if self.planner is not None and self.planner.due(obs.t_s):
            self.plan = self.planner.plan(obs, self.schedule)
        self.fill(obs)
        self._kernel(*self.pk.args())
        return self._decision()

    def fill(self, obs: Observation) -> None:
        """Write ``obs`` and the carried state into the packed input (in place)."""
        pk = self.pk
        gi, go, mi, mo = pk.gun_in, pk.gun_out, pk.mod_in, pk.mod_out
        on = obs.connected
        volts = obs.voltage_v
        gi[:, L.G_DEMAND] = np.where(on, np.maximum(obs.demand_kw, 0.0), 0.0)
        gi[:, L.G_VEHICLE_MAX] = np.where(on, obs.vehicle_max_kw, 0.0)
        at_volts = np.where(np.isnan(volts), self.gun_max_kw, self.gun_max_a * volts / 1000.0)
        gi[:, L.G_GUN_MAX] = np.minimum(self.gun_max_kw, at_volts)
        gi[:, L.G_V2G] = np.where(on, np.minimum(np.maximum(obs.v2g_kw, 0.0), self.gun_discharge_kw), 0.0)
        gi[:, L.G_VOLTAGE] = volts
        gi[:, L.G_MEASURED] = obs.measured_kw
        if self.cycles:
            gi[:, L.G_PREV_ALLOC] = go[:, L.GO_POWER]
            gi[:, L.G_UNDER_S] = np.where(on, go[:, L.GO_UNDER_S], 0.0)
            gi[:, L.G_DRAW_CAP] = np.where(on, go[:, L.GO_DRAW_CAP], math.inf)
            mi[:, L.M_GUN] = mo[:, L.MO_GUN]
            mi[:, L.M_DRAINING] = mo[:, L.MO_DRAINING]
            mi[:, L.M_SURPLUS_S] = mo[:, L.MO_SURPLUS_S]
        mi[:, L.M_AVAILABLE] = obs.module_available
        mi[:, L.M_CURRENT] = obs.module_current_a
        fill_station(pk.st, self.station_input(obs))

    def station_input(self, obs: Observation) -> AllocationInput:
        """The station-level part of the allocation input for this cycle (guns and modules stay packed)."""
        t = self.template
        plan = self.plan
        bess = t.bess
        if self.cfg.bess is not None:
            bess = BessInput(
                soc=obs.bess_soc, capacity_kwh=bess.capacity_kwh, soc_min=bess.soc_min, soc_max=bess.soc_max,
                reserve_soc=bess.reserve_soc, max_charge_kw=min(bess.max_charge_kw, obs.bess_max_charge_kw),
                max_discharge_kw=min(bess.max_discharge_kw, obs.bess_max_discharge_kw),
                charge_efficiency=bess.charge_efficiency, discharge_efficiency=bess.discharge_efficiency,
                available=bool(obs.bess_available and not math.isnan(obs.bess_soc)),
                soc_target=math.nan if plan is None else plan.soc_target,
                support_max_kw=math.nan if plan is None else plan.support_max_kw,
                charge_min_kw=0.0 if plan is None else plan.charge_min_kw,
            )
        last = obs.grid_measured_kw if not math.isnan(obs.grid_measured_kw) else self.expected_grid_kw
        importing, exporting = self.limits_with_margin(self.anticipated_cap_kw(obs), obs.export_cap_kw)
        grid = GridInput(import_limit_kw=importing, export_limit_kw=exporting, target_kw=obs.target_kw,
                         ramp_kw_per_s=obs.ramp_kw_per_s, last_kw=last)
        return AllocationInput(dt_s=obs.dt_s, grid=grid, guns=(), bess=bess,
                               aux_load_kw=obs.aux_load_kw + self.bias_kw, modules=t.modules, params=t.params)

    def limits_with_margin(self, import_kw: float, export_kw: float) -> tuple[float, float]:
        """Aim ``cap_margin_fraction`` of the connection's cap inside each limit (absolute kW: the plant's
        lag and loss errors scale with the station, not with the momentary cap), shrinking each limit
        towards zero but never across it (a limit of 0 kW must not force a flow the other way)."""
        margin = self.cfg.control.cap_margin_fraction * self.cfg.import_cap_kw
        return max(import_kw - margin, min(import_kw, 0.0)), max(export_kw - margin, min(export_kw, 0.0))

    def anticipated_cap_kw(self, obs: Observation) -> float:
        """The import cap in force, lowered ahead of a known lower cap so that the grid, ramping at the
        ramp limit, is already under it one cycle before it starts ("future setpoints take effect on
        time": a cap dropped at once would be broken by the plant's own lag)."""
        cap = obs.import_cap_kw
        ramp = obs.ramp_kw_per_s
        if not self.schedule or math.isnan(ramp) or ramp <= 0:
            return cap
        for w in self.schedule:
            ahead = w.start_s - obs.t_s
            if ahead > 0:
                cap = min(cap, w.import_limit_kw + ramp * max(0.0, ahead - obs.dt_s))
        return cap

    def _update_bias(self, obs: Observation) -> None:
        """Filter (metered - expected) grid power into an extra auxiliary load, never negative.

        Only while the grid is settled: the meter is late (its delay, plus the cycle it averages), so
        during a ramp it compares the past with the present; the last few expectations must agree
        within ``BIAS_SETTLED_KW`` for the comparison to mean anything."""
        recent = self._recent_model_kw
        if math.isnan(obs.grid_measured_kw) or len(recent) < recent.maxlen:
            return
        if max(recent) - min(recent) > BIAS_SETTLED_KW:
            return
        err = obs.grid_measured_kw - recent[-1]
        alpha = min(1.0, obs.dt_s / BIAS_TAU_S)
        limit = BIAS_MAX_KW_FRACTION * max(self.cfg.import_cap_kw, 1.0)
        self.bias_kw = min(max(self.bias_kw + alpha * (err - self.bias_kw), 0.0), limit)

    def _decision(self) -> Decision:
        pk = self.pk
        so = pk.st_out
        self.cycles += 1
        self.expected_grid_kw = float(so[L.SO_GRID])
        self._recent_model_kw.append(self.expected_grid_kw - self.bias_kw)
        return Decision(
            gun_kw=pk.gun_out[:, L.GO_POWER].copy(),
            bess_kw=float(so[L.SO_BESS]),
            grid_kw=float(so[L.SO_GRID]),
            module_gun=pk.mod_out[:, L.MO_GUN].astype(np.int64),
            bound_by=pk.gun_out[:, L.GO_BOUND].astype(np.int64),
            unserved_kw=float(so[L.SO_UNSERVED]),
            shortfall_kw=float(so[L.SO_SHORTFALL]),
            flags=int(so[L.SO_FLAGS]),
        )


class ModuleLayer:
    """The cabinet's module switching for policies that only decide gun power (the peers' baselines).

    It runs our kernel with the policy's gun powers as the demands and no grid, BESS or ramp constraint,
    so every policy gets the same switch-matrix hardware logic and is bounded by the same module capacity.
    """

    def __init__(self, cfg: StationConfig) -> None:
        self.controller = Controller(cfg)

    def assign(self, obs: Observation, gun_kw: np.ndarray) -> Decision:
        """Module assignment and the gun powers the modules can carry (baselines do not discharge)."""
        inner = Observation(obs.n_guns, obs.n_modules, t_s=obs.t_s, dt_s=obs.dt_s)
        inner.connected[:] = obs.connected
        inner.demand_kw[:] = np.maximum(gun_kw, 0.0)
        inner.vehicle_max_kw[:] = obs.vehicle_max_kw
        inner.voltage_v[:] = obs.voltage_v
        inner.measured_kw[:] = obs.measured_kw
        inner.module_available[:] = obs.module_available
        inner.module_current_a[:] = obs.module_current_a
        inner.import_cap_kw = math.inf
        return self.controller.decide(inner)
