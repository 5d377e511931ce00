"""The simulator's station plant: energy balance over a run with our controller deciding, and the
physical limits the plant enforces whatever a policy commands."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hil.plant import BessRating, MeterRating, V2GOffer, car, fast_car
from hil.sim.plant import StationPlant
from station.config import load_config
from station.control.decide import Controller
from station.control.observation import Decision, Observation

ROOT = Path(__file__).resolve().parents[2]


def demo():
    return load_config(ROOT / "config" / "station.yaml")


def limits(obs: Observation, cfg) -> None:
    obs.import_cap_kw = cfg.import_cap_kw
    obs.export_cap_kw = cfg.grid.export_limit_kw
    obs.ramp_kw_per_s = cfg.grid.ramp_limit_kw_per_s


def test_energy_balance_of_a_run_with_our_controller() -> None:
    """grid energy + energy out of the BESS store = energy into the vehicle packs + pack heat + module
    losses + auxiliaries, to within float rounding, over 20 minutes with V2G and the BESS active."""
    cfg = demo()
    plant = StationPlant(cfg, bess_initial_soc=0.7, meter=MeterRating(noise_kw=0.0))
    ctl = Controller(cfg)
    obs = Observation.for_station(cfg)
    obs.dt_s = 1.0
    limits(obs, cfg)
    gids = cfg.gun_ids()
    bidi = next(i for i, g in enumerate(cfg.guns()) if g.bidirectional)
    vehicles = [plant.plug(0, fast_car("a", initial_soc=0.1)), plant.plug(1, car("b", initial_soc=0.3)),
                plant.plug(bidi, car("c", initial_soc=0.8, v2g=V2GOffer(40.0, 0.5)))]
    assert plant.bess is not None
    r: BessRating = plant.bess.rating
    store0 = plant.bess.soc * r.capacity_kwh
    veh0 = [v.soc * v.spec.capacity_kwh for v in vehicles]
    grid_kwh = loss_kwh = 0.0
    for k in range(1200):
        if k == 600:
            obs.target_kw = -30.0  # the operator asks for export: BESS and V2G
            obs.export_cap_kw = 100.0
        plant.measure(obs, float(k))
        d = ctl.decide(obs)
        f = plant.step(float(k), d, 1.0)
        grid_kwh += f.grid_kw / 3600.0
        loss_kwh += float((f.gun_ac_kw - f.gun_kw).sum()) / 3600.0
    # the BESS store: discharging takes power / eta_d from the store, charging puts power * eta_c in
    bess_out_of_store = store0 - plant.bess.soc * r.capacity_kwh
    into_packs = sum(v.soc * v.spec.capacity_kwh - e0 for v, e0 in zip(vehicles, veh0))
    heat = sum(v.heat_kwh for v in vehicles)
    aux = cfg.grid.aux_load_kw * 1200 / 3600.0
    bess_losses = (plant.bess.ac_discharged_kwh * (1 / r.discharge_efficiency - 1)
                   + plant.bess.ac_charged_kwh * (1 - r.charge_efficiency))
    assert grid_kwh + bess_out_of_store == pytest.approx(into_packs + heat + loss_kwh + aux + bess_losses, abs=1e-6)
    assert loss_kwh > 0 and plant.bess.ac_discharged_kwh > 0  # the run exercised losses and the BESS
    assert vehicles[2].energy_out_kwh > 0  # and V2G
    assert plant.meter.export_kwh > 0 and gids


def test_plant_never_gives_more_than_the_vehicle_asks_or_the_modules_carry() -> None:
    cfg = demo()
    plant = StationPlant(cfg, meter=MeterRating(noise_kw=0.0))
    v = plant.plug(0, fast_car("a", initial_soc=0.1))
    n = len(cfg.guns())
    modules = np.full(len(cfg.module_ids()), -1)
    modules[:2] = 0  # two 40 kW modules on gun 0
    greedy = Decision(gun_kw=np.array([1000.0] + [0.0] * (n - 1)), bess_kw=0.0, grid_kw=0.0, module_gun=modules)
    f = plant.step(0.0, greedy, 1.0)
    assert 0 < f.gun_kw[0] <= 80.0 + 1e-9  # the modules bound it
    modules[:] = 0
    f = plant.step(1.0, greedy, 1.0)
    asked_a = v.accepted_current_a()
    assert f.gun_kw[0] <= v.terminal_voltage_v(asked_a) * asked_a / 1000.0 * 1.01  # the BMS request bounds it
    plant.module_faulted[:] = True
    f = plant.step(2.0, greedy, 1.0)
    assert f.gun_kw[0] == 0.0  # faulted modules trip at once
    assert math.isclose(f.grid_kw, cfg.grid.aux_load_kw - f.bess_kw)


def test_module_currents_are_what_the_controller_measures() -> None:
    cfg = demo()
    plant = StationPlant(cfg, meter=MeterRating(noise_kw=0.0))
    plant.plug(0, car("a", initial_soc=0.2))
    n = len(cfg.guns())
    modules = np.full(len(cfg.module_ids()), -1)
    modules[[0, 1, 2]] = 0
    d = Decision(gun_kw=np.array([60.0] + [0.0] * (n - 1)), bess_kw=0.0, grid_kw=0.0, module_gun=modules)
    plant.step(0.0, d, 1.0)
    obs = Observation.for_station(cfg)
    plant.measure(obs, 1.0)
    gun_a = obs.measured_kw[0] * 1000.0 / obs.voltage_v[0]
    assert obs.module_current_a[[0, 1, 2]] == pytest.approx([gun_a / 3] * 3, rel=1e-9)
    assert np.all(obs.module_current_a[3:] == 0.0)
