"""The whole station as a plant for the offline simulator: vehicles on guns, module banks, BESS, meter.

Built from the same plant models as the device simulators and the HIL bench (``hil.plant``); only the
stepping is arranged for long runs at coarse steps (0.1-10 s):

* The power modules switched to one gun share its current equally (as a cabinet's current sharing
  does), so a gun's bank is stepped as one: its capacity is the sum of its modules' limits at the gun's
  voltage, its loss is ``n * loss(p / n)`` from ``ModuleRating.loss_kw``, and it ramps at ``n`` times a
  module's ramp. A module's first-order lag (tens of ms) is below any step used here. Idle modules
  (no current) are switched off and lose nothing.
* A faulted module trips at once: its share of the gun's power is gone in the same step.
* The charger delivers ``min(what the controller allows, what the modules can, what the BMS asks)``,
  as a GB/T charger in current-limit mode does.

``measure(obs)`` writes what the controller could know (late and noisy grid meter, BMS values) into an
:class:`~station.control.observation.Observation`; ``step(decision, dt)`` applies a decision and
returns the true power flows, which the scorekeeping uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hil.plant import BatteryStorage, BessRating, GridMeter, MeterRating, ModuleRating, Vehicle, VehicleSpec
from station.config import StationConfig
from station.control.observation import Decision, Observation


@dataclass
class StepFlows:
    """True power flows over one step (averages, kW)."""

    gun_kw: np.ndarray  # at the vehicle terminals
    gun_ac_kw: np.ndarray  # drawn from the AC bus (module losses included)
    bess_kw: float
    grid_kw: float


class StationPlant:
    def __init__(self, cfg: StationConfig, *, bess_initial_soc: float | None = None,
                 meter: MeterRating = MeterRating()) -> None:
        self.cfg = cfg
        guns = cfg.guns()
        self.n = len(guns)
        self.gun_ids = [g.id for g in guns]
        self.gun_max_kw = np.array([g.max_power_kw for g in guns])
        self.gun_max_a = np.array([g.max_current_a for g in guns])
        # modules of one cabinet are identical: the bank of a gun is counted per cabinet
        self.cabinet_ratings = [
            ModuleRating(rated_kw=c.modules.rated_kw, min_voltage_v=c.modules.min_voltage_v,
                         max_voltage_v=c.modules.max_voltage_v, max_current_a=c.modules.max_current_a,
                         efficiency=c.modules.efficiency, ramp_kw_per_s=c.modules.ramp_kw_per_s)
            for c in cfg.cabinets
        ]
        cab_index = {c.id: i for i, c in enumerate(cfg.cabinets)}
        self.module_cabinet = np.array([cab_index[c.id] for c, _ in cfg.modules()], dtype=np.int64)
        self.module_ids = cfg.module_ids()
        self.m = len(self.module_ids)
        self.module_faulted = np.zeros(self.m, dtype=np.bool_)
        self.module_gun = np.full(self.m, -1, dtype=np.int64)
        self.module_current_a = np.zeros(self.m)
        self._banks: dict[tuple[int, ...], _Bank] = {}
        self.vehicles: list[Vehicle | None] = [None] * self.n
        self.gun_out_of_service = np.zeros(self.n, dtype=np.bool_)
        self.not_drawing = np.zeros(self.n, dtype=np.bool_)  # fault: the vehicle stops drawing current
        self.last_gun_kw = np.zeros(self.n)
        self.last_voltage_v = np.full(self.n, math.nan)
        b = cfg.bess
        self.bess: BatteryStorage | None = None
        if b is not None:
            rating = BessRating(capacity_kwh=b.capacity_kwh, max_charge_kw=b.max_charge_kw,
                                max_discharge_kw=b.max_discharge_kw, soc_min=b.soc_min, soc_max=b.soc_max,
                                charge_efficiency=b.charge_efficiency, discharge_efficiency=b.discharge_efficiency)
            self.bess = BatteryStorage(rating, b.initial_soc if bess_initial_soc is None else bess_initial_soc)
        self.meter = GridMeter(meter)
        self.meter_frozen_at: float | None = None
        self.meter.observe(0.0, cfg.grid.aux_load_kw)
        self.aux_kw = cfg.grid.aux_load_kw

    # ---- sessions ---------------------------------------------------------------------------------------

    def plug(self, gun: int, spec: VehicleSpec) -> Vehicle:
        if self.vehicles[gun] is not None:
            raise ValueError(f"gun {self.gun_ids[gun]} is occupied")
        v = Vehicle(spec)
        self.vehicles[gun] = v
        self.last_gun_kw[gun] = 0.0
        return v

    def unplug(self, gun: int) -> Vehicle | None:
        v, self.vehicles[gun] = self.vehicles[gun], None
        self.last_gun_kw[gun] = 0.0
        self.last_voltage_v[gun] = math.nan
        return v

    # ---- what the controller sees -------------------------------------------------------------------------

    def measure(self, obs: Observation, t_s: float) -> None:
        nan = math.nan
        n = self.n
        on, demand, vmax, v2g, volts, measured, wanted, departs = ([False] * n, [0.0] * n, [0.0] * n, [0.0] * n,
                                                                    [nan] * n, [nan] * n, [nan] * n, [nan] * n)
        for g, v in enumerate(self.vehicles):
            if v is None or self.gun_out_of_service[g]:
                continue
            s = v.spec
            on[g] = True
            demand[g] = v.demand_kw()
            vmax[g] = s.max_current_a * s.max_voltage_v / 1000.0
            v2g[g] = v.v2g_available_kw()
            last_v = self.last_voltage_v[g]
            volts[g] = v.terminal_voltage_v(0.0) if math.isnan(last_v) else last_v
            measured[g] = self.last_gun_kw[g]
            wanted[g] = v.energy_wanted_kwh()
            departs[g] = s.departure_s
        obs.connected[:] = on
        obs.demand_kw[:] = demand
        obs.vehicle_max_kw[:] = vmax
        obs.v2g_kw[:] = v2g
        obs.voltage_v[:] = volts
        obs.measured_kw[:] = measured
        obs.energy_wanted_kwh[:] = wanted
        obs.departure_s[:] = departs
        obs.module_available[:] = ~self.module_faulted
        obs.module_current_a[:] = self.module_current_a
        if self.bess is not None:
            obs.bess_available = self.bess.available
            obs.bess_soc = self.bess.soc
            obs.bess_max_charge_kw = self.bess.charge_limit_kw()
            obs.bess_max_discharge_kw = self.bess.discharge_limit_kw()
        reading_at = t_s if self.meter_frozen_at is None else self.meter_frozen_at
        obs.grid_measured_kw = self.meter.reading(reading_at)

    # ---- physics ------------------------------------------------------------------------------------------

    def step(self, t_s: float, decision: Decision, dt_s: float) -> StepFlows:
        """Apply ``decision`` over [t_s, t_s + dt_s]."""
        if decision.module_gun is None:
            raise ValueError("a decision must carry a module assignment (run the module layer first)")
        self.module_gun[:] = decision.module_gun
        working = (self.module_gun >= 0) & ~self.module_faulted
        n_cab = len(self.cabinet_ratings)
        bank = np.bincount(self.module_gun[working] * n_cab + self.module_cabinet[working],
                           minlength=self.n * n_cab).reshape(self.n, n_cab)
        gun_kw = [0.0] * self.n
        gun_ac = [0.0] * self.n
        current_a = [0.0] * self.n
        banks = bank.tolist()
        commands = decision.gun_kw.tolist()
        last_volts = self.last_voltage_v.tolist()
        last_kw = self.last_gun_kw.tolist()
        for g, v in enumerate(self.vehicles):
            if v is None:
                continue
            b = self._bank(tuple(banks[g]))
            volts = v.terminal_voltage_v(0.0) if math.isnan(last_volts[g]) else last_volts[g]
            cmd = 0.0 if self.gun_out_of_service[g] else commands[g]
            current = self._current(g, v, b, volts, cmd, last_kw[g], dt_s)
            p = v.step(current, dt_s)
            # what the charger measured during the step: voltage and current of the same instant
            self.last_voltage_v[g] = p * 1000.0 / current if current else v.terminal_voltage_v(0.0)
            gun_kw[g] = p
            if b.count and p != 0.0:
                share = p / b.count  # equal current sharing: each module carries p / n
                gun_ac[g] = p + b.loss_p0_kw + b.loss_k * share * share
                current_a[g] = abs(current)
        n_per_gun = bank.sum(axis=1)
        per_module = np.divide(np.array(current_a), n_per_gun, out=np.zeros(self.n), where=n_per_gun > 0)
        self.module_current_a[:] = np.where(working, per_module[np.maximum(self.module_gun, 0)], 0.0)
        self.last_gun_kw[:] = gun_kw
        bess_kw = 0.0
        if self.bess is not None:
            self.bess.setpoint_kw = decision.bess_kw
            self.bess.step(dt_s)
            bess_kw = self.bess.power_kw
        grid = sum(gun_ac) + self.aux_kw - bess_kw
        self.meter.observe(t_s + dt_s, grid)
        return StepFlows(np.array(gun_kw), np.array(gun_ac), bess_kw, grid)

    def _bank(self, counts: tuple[int, ...]) -> _Bank:
        """The modules switched to one gun, by cabinet, summed once per composition (compositions recur)."""
        b = self._banks.get(counts)
        if b is None:
            parts = [(c, r) for c, r in zip(counts, self.cabinet_ratings) if c]
            # ModuleRating.loss_kw(x) = p0 + k x^2 per module; n modules at x = p / n each
            p0 = sum(c * r.loss_kw(0.0) for c, r in parts)
            k = sum(c * (r.loss_kw(1.0) - r.loss_kw(0.0)) for c, r in parts)
            b = _Bank(count=sum(c for c, _ in parts), parts=parts, loss_p0_kw=p0, loss_k=k,
                      ramp_kw_per_s=sum(c * r.ramp_kw_per_s for c, r in parts))
            self._banks[counts] = b
        return b

    def _current(self, g: int, v: Vehicle, bank: _Bank, volts: float, cmd_kw: float, prev_kw: float,
                 dt_s: float) -> float:
        """The current the charger delivers: bounded by the command, the modules and the BMS request."""
        # the modules' limits hold at the terminal voltage under load: a current limit and a power limit
        cap_kw = cap_a = 0.0
        for c, r in bank.parts:
            if r.min_voltage_v <= volts <= r.max_voltage_v:
                cap_kw += c * r.rated_kw
                cap_a += c * r.max_current_a
        cap_a = min(float(self.gun_max_a[g]), cap_a, v.current_for_power(cap_kw))
        ramp_kw = bank.ramp_kw_per_s * dt_s
        cmd_kw = min(max(cmd_kw, prev_kw - ramp_kw), prev_kw + ramp_kw)
        if cmd_kw >= 0.0:
            asked = 0.0 if self.not_drawing[g] else v.accepted_current_a()
            return min(v.current_for_power(cmd_kw), cap_a, asked)
        offer = v.v2g_available_kw()
        return max(v.current_for_power(max(cmd_kw, -offer, -cap_kw)), -cap_a)


@dataclass(frozen=True)
class _Bank:
    count: int
    parts: list[tuple[int, ModuleRating]]
    loss_p0_kw: float
    loss_k: float
    ramp_kw_per_s: float
