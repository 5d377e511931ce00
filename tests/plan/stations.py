"""Small stations and observations for the planner tests, built in memory (no files, no I/O)."""

from __future__ import annotations

import math
from typing import Any

from station.config import StationConfig, validate_config
from station.control.observation import Observation


def small_station(*, cap_kw: float = 100.0, capacity_kwh: float = 100.0, bess_kw: float = 100.0,
                  reserve_soc: float = 0.1, soc_min: float = 0.05, soc_max: float = 0.95, efficiency: float = 1.0,
                  module_efficiency: float = 1.0, cap_margin_fraction: float = 0.0,
                  export_kw: float = 200.0, profile: list[float] | None = None, horizon_s: float = 7200.0,
                  **planner: Any) -> StationConfig:
    """Two 300 kW guns on one cabinet (lossless by default), a 100 kWh battery, a 100 kW grid cap, no
    margins: the numbers of a hand calculation come out exactly."""
    data = {
        "station": {"id": "plan-test"},
        "grid": {"transformer_kva": 1000.0, "import_limit_kw": cap_kw, "export_limit_kw": export_kw,
                 "aux_load_kw": 0.0},
        "cabinets": [{"id": "C1", "modules": {"count": 16, "rated_kw": 40.0, "max_current_a": 100.0,
                                              "efficiency": module_efficiency}}],
        "switch_matrix": [{"cabinet": "C1", "modules": "1-16", "guns": ["G1", "G2"]}],
        "dispensers": [{"id": "D1", "guns": [
            {"id": "G1", "max_current_a": 400.0, "max_voltage_v": 1000.0, "max_power_kw": 300.0},
            {"id": "G2", "max_current_a": 400.0, "max_voltage_v": 1000.0, "max_power_kw": 300.0},
        ]}],
        "bess": {"capacity_kwh": capacity_kwh, "max_charge_kw": bess_kw, "max_discharge_kw": bess_kw,
                 "soc_min": soc_min, "soc_max": soc_max, "reserve_soc": reserve_soc, "initial_soc": 0.5,
                 "charge_efficiency": efficiency, "discharge_efficiency": efficiency},
        "dispatch": {"fallback_export_limit_kw": export_kw},
        "control": {"cap_margin_fraction": cap_margin_fraction,
                    "planner": {"horizon_s": horizon_s, "arrival_profile_kw": profile or [0.0] * 24, **planner}},
    }
    cfg, issues = validate_config(data)
    assert cfg is not None and not [i for i in issues if i.severity == "error"], issues
    return cfg


def observe(cfg: StationConfig, *, t_s: float = 0.0, soc: float = 0.5,
            sessions: list[tuple[int, float, float, float]] = (), import_cap_kw: float | None = None,
            target_kw: float = math.nan) -> Observation:
    """An observation with ``sessions`` as (gun, kW asked, kWh still wanted, departure in t_s)."""
    obs = Observation.for_station(cfg)
    obs.t_s = t_s
    obs.bess_available = True
    obs.bess_soc = soc
    assert cfg.bess is not None
    obs.bess_max_charge_kw = cfg.bess.max_charge_kw
    obs.bess_max_discharge_kw = cfg.bess.max_discharge_kw
    obs.import_cap_kw = cfg.import_cap_kw if import_cap_kw is None else import_cap_kw
    obs.export_cap_kw = cfg.dispatch.fallback_export_limit_kw
    obs.target_kw = target_kw
    obs.aux_load_kw = cfg.grid.aux_load_kw
    for g, kw, kwh, dep in sessions:
        obs.connected[g] = True
        obs.demand_kw[g] = kw
        obs.vehicle_max_kw[g] = kw
        obs.energy_wanted_kwh[g] = kwh
        obs.departure_s[g] = dep
    return obs
