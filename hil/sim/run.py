"""The offline simulator: a scenario on a simulated clock, one policy, the plant models in process.

Our policy is ``station.control.decide.Controller`` - the service's own decide, not a copy. The peers'
baselines (``hil.baselines``) decide gun and BESS power only; the same module layer as ours switches
the modules for them (``ModuleLayer``), so every policy is bounded by the same hardware.

Order of one step at ``t``: departures, arrivals, the dispatch limits and faults in force, measure
(the controller sees last step's measurements and a late, noisy meter), decide, then the plant runs
``[t, t + step)`` and the true flows are recorded. The scorekeeping (``report.py``) judges the cap on
the true grid power, never on the meter.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hil.plant import MeterRating
from hil.sim.plant import StationPlant
from hil.sim.timeline import Fault, Window, faults_of, start_hour_of, windows_of
from station.config import StationConfig
from station.control.decide import Controller, ModuleLayer
from station.control.observation import Observation, Policy


@dataclass
class SessionRecord:
    vehicle_id: str
    gun: str  # "" when turned away
    kind: str
    arrival_s: float
    departure_s: float
    capacity_kwh: float
    initial_soc: float
    target_soc: float
    final_soc: float = math.nan
    charged_kwh: float = 0.0  # at the terminals, into the vehicle
    discharged_kwh: float = 0.0  # at the terminals, V2G
    v2g_offered: bool = False

    @property
    def requested_kwh(self) -> float:
        """Energy to the driver's target, stored in the pack (what the driver asked for)."""
        return max(0.0, self.target_soc - self.initial_soc) * self.capacity_kwh

    @property
    def delivered_kwh(self) -> float:
        """Net energy stored towards the target (SoC basis, so V2G taken back counts against it)."""
        if math.isnan(self.final_soc):
            return 0.0
        return min(self.requested_kwh, max(0.0, self.final_soc - self.initial_soc) * self.capacity_kwh)

    @property
    def left_short(self) -> bool:
        return bool(self.gun) and self.requested_kwh > 0 and self.final_soc < self.target_soc - 0.01

    @property
    def turned_away(self) -> bool:
        return not self.gun


@dataclass
class SimResult:
    scenario: str
    policy: str
    step_s: float
    gun_ids: list[str]
    t_s: np.ndarray
    grid_kw: np.ndarray  # true power at the connection point (average over the step)
    meter_kw: np.ndarray  # what the controller's meter read at the start of the step
    cap_kw: np.ndarray  # import cap in force
    export_cap_kw: np.ndarray
    target_kw: np.ndarray  # nan: no target
    bess_kw: np.ndarray
    bess_soc: np.ndarray  # at the end of the step
    gun_kw: np.ndarray  # [steps, guns], at the terminals
    price: np.ndarray
    export_price: np.ndarray
    sessions: list[SessionRecord]
    windows: list[Window]
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def make_policy(name: str, cfg: StationConfig, *, start_hour: float = 0.0) -> Policy:
    """``ours`` (with the horizon planner when the station file enables it) or a baseline by name."""
    if name == "ours":
        return Controller(cfg, planner=_planner(cfg, start_hour))
    from hil.baselines import POLICIES

    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}: choose from ours, {', '.join(POLICIES)}")
    return POLICIES[name](cfg)


def _planner(cfg: StationConfig, start_hour: float) -> Any:
    planner_cfg = getattr(cfg.control, "planner", None)
    if planner_cfg is None or not getattr(planner_cfg, "enabled", True):
        return None
    from station.plan import Planner

    return Planner(cfg, start_hour=start_hour)


def simulate(scenario: Any, policy: str = "ours", step_s: float | None = None) -> SimResult:
    """Run ``scenario`` (a ``hil.scenarios.Scenario``) with ``policy``; deterministic for a given input."""
    wall0 = time.perf_counter()
    cfg = scenario.station_config()
    step = float(step_s or scenario.step_s)
    plugs = scenario.plugs(cfg)
    windows = windows_of(scenario)
    faults = faults_of(scenario)
    meter = MeterRating(delay_s=scenario.meter.delay_s, noise_kw=scenario.meter.noise_kw, seed=scenario.meter.seed)
    plant = StationPlant(cfg, bess_initial_soc=scenario.bess_initial_soc, meter=meter)
    pol = make_policy(policy, cfg, start_hour=start_hour_of(scenario))
    layer = ModuleLayer(cfg) if not isinstance(pol, Controller) else None
    obs = Observation.for_station(cfg)
    obs.dt_s = step
    obs.aux_load_kw = cfg.grid.aux_load_kw
    n = len(cfg.guns())
    steps = int(math.ceil(scenario.duration_s / step - 1e-9))
    rec = _Recorder(steps, n)
    gun_index = {gid: i for i, gid in enumerate(cfg.gun_ids())}
    module_index = {mid: i for i, mid in enumerate(cfg.module_ids())}
    sessions: list[SessionRecord] = []
    on_gun: list[SessionRecord | None] = [None] * n
    next_plug = 0
    announced: tuple[Window, ...] = ()
    for k in range(steps):
        t = k * step
        for g in range(n):
            s = on_gun[g]
            if s is not None and s.departure_s <= t:
                _close(s, plant.unplug(g))
                on_gun[g] = None
        while next_plug < len(plugs) and plugs[next_plug].spec.arrival_s <= t:
            p = plugs[next_plug]
            next_plug += 1
            s = _record(p, cfg)
            sessions.append(s)
            if p.gun >= 0:
                plant.plug(p.gun, p.spec)
                on_gun[p.gun] = s
        _apply_limits(obs, cfg, windows, t)
        _apply_faults(plant, faults, t, gun_index, module_index)
        if isinstance(pol, Controller):
            known = tuple(w for w in windows if w.announced_s <= t and w.end_s > t)
            if known != announced:
                announced = known
                pol.set_schedule(known)
        plant.measure(obs, t)
        obs.t_s = t
        obs.price_per_kwh = scenario.price_at(t)
        d = pol.decide(obs)
        if d.module_gun is None:
            assert layer is not None
            mod = layer.assign(obs, d.gun_kw)
            d.gun_kw, d.module_gun = mod.gun_kw, mod.module_gun
        flows = plant.step(t, d, step)
        rec.put(k, t, obs, flows, plant, scenario)
    for g in range(n):
        s = on_gun[g]
        if s is not None:
            s.departure_s = min(s.departure_s, steps * step)
            _close(s, plant.unplug(g))
    return SimResult(
        scenario=scenario.name, policy=policy, step_s=step, gun_ids=cfg.gun_ids(), t_s=rec.t, grid_kw=rec.grid,
        meter_kw=rec.meter, cap_kw=rec.cap, export_cap_kw=rec.export_cap, target_kw=rec.target, bess_kw=rec.bess,
        bess_soc=rec.soc, gun_kw=rec.guns, price=rec.price, export_price=rec.export_price, sessions=sessions,
        windows=list(windows), wall_s=time.perf_counter() - wall0,
    )


class _Recorder:
    def __init__(self, steps: int, n: int) -> None:
        self.t = np.zeros(steps)
        self.grid = np.zeros(steps)
        self.meter = np.zeros(steps)
        self.cap = np.zeros(steps)
        self.export_cap = np.zeros(steps)
        self.target = np.full(steps, math.nan)
        self.bess = np.zeros(steps)
        self.soc = np.full(steps, math.nan)
        self.guns = np.zeros((steps, n))
        self.price = np.full(steps, math.nan)
        self.export_price = np.full(steps, math.nan)

    def put(self, k: int, t: float, obs: Observation, flows: Any, plant: StationPlant, scenario: Any) -> None:
        self.t[k] = t
        self.grid[k] = flows.grid_kw
        self.meter[k] = obs.grid_measured_kw
        self.cap[k] = obs.import_cap_kw
        self.export_cap[k] = obs.export_cap_kw
        self.target[k] = obs.target_kw
        self.bess[k] = flows.bess_kw
        self.soc[k] = plant.bess.soc if plant.bess is not None else math.nan
        self.guns[k] = flows.gun_kw
        self.price[k] = obs.price_per_kwh
        self.export_price[k] = scenario.export_price_at(t)


def _record(p: Any, cfg: StationConfig) -> SessionRecord:
    s = p.spec
    return SessionRecord(
        vehicle_id=s.vehicle_id, gun=cfg.gun_ids()[p.gun] if p.gun >= 0 else "", kind=s.kind,
        arrival_s=s.arrival_s, departure_s=s.departure_s, capacity_kwh=s.capacity_kwh, initial_soc=s.initial_soc,
        target_soc=s.target_soc, final_soc=s.initial_soc if p.gun < 0 else math.nan, v2g_offered=s.v2g is not None,
    )


def _close(s: SessionRecord, v: Any) -> None:
    if v is None:
        return
    s.final_soc = v.soc
    s.charged_kwh = v.energy_in_kwh
    s.discharged_kwh = v.energy_out_kwh


def _apply_limits(obs: Observation, cfg: StationConfig, windows: list[Window], t: float) -> None:
    """The limits in force at ``t``: the latest-starting active dispatch window, else the site's own
    (the dispatch fallback profile: the connection cap, the configured export limit, no target)."""
    active = None
    for w in windows:
        if w.start_s <= t < w.end_s and (active is None or w.start_s >= active.start_s):
            active = w
    site_cap = cfg.import_cap_kw
    fallback = cfg.dispatch.fallback_import_limit_kw
    if fallback is not None:
        site_cap = min(site_cap, fallback)
    if active is None:
        obs.import_cap_kw = site_cap
        obs.export_cap_kw = min(cfg.grid.export_limit_kw, cfg.dispatch.fallback_export_limit_kw)
        obs.target_kw = math.nan
        fallback_ramp = cfg.dispatch.fallback_ramp_kw_per_s
        obs.ramp_kw_per_s = cfg.grid.ramp_limit_kw_per_s if fallback_ramp is None else fallback_ramp
        return
    obs.import_cap_kw = min(cfg.import_cap_kw, active.import_limit_kw)
    obs.export_cap_kw = active.export_limit_kw
    obs.target_kw = active.target_kw
    obs.ramp_kw_per_s = cfg.grid.ramp_limit_kw_per_s if math.isnan(active.ramp_kw_per_s) else active.ramp_kw_per_s


def _apply_faults(plant: StationPlant, faults: list[Fault], t: float, guns: dict[str, int],
                  modules: dict[str, int]) -> None:
    plant.module_faulted[:] = False
    plant.gun_out_of_service[:] = False
    plant.not_drawing[:] = False
    if plant.bess is not None:
        plant.bess.available = True
    frozen = None
    for f in faults:
        if not f.start_s <= t < f.end_s:
            continue
        if f.kind == "module_fault":
            plant.module_faulted[modules[f.target]] = True
        elif f.kind == "gun_unavailable":
            plant.gun_out_of_service[guns[f.target]] = True
        elif f.kind == "vehicle_stops_drawing":
            plant.not_drawing[guns[f.target]] = True
        elif f.kind == "bess_unavailable" and plant.bess is not None:
            plant.bess.available = False
        elif f.kind == "meter_frozen":
            frozen = f.start_s
    plant.meter_frozen_at = frozen
