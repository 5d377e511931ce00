"""Our decide (station.control.decide): the service's and the simulator's one decision path.

* Over many cycles it decides exactly what the pure-Python reference decides when the same station,
  observations and carried state are given to it as data (so the in-place packing, the state carry
  and the config mapping are right).
* The grid-bias correction keeps the true grid under the cap when the plant loses more than modelled.
* The cap margin and the safety rules hold on random observations.
* The module layer bounds a baseline's gun powers by the same modules.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.allocate import AllocationInput, BessInput, GridInput, allocate
from station.allocate.cycle import carry
from station.config import StationConfig, load_config, read_yaml, validate_config
from station.control.decide import Controller, ModuleLayer, station_template
from station.control.observation import Observation

ROOT = Path(__file__).resolve().parents[2]


def hub(margin: float | None = None) -> StationConfig:
    data = read_yaml(ROOT / "config" / "megawatt-hub.yaml")
    if margin is not None:
        data.setdefault("control", {})["cap_margin_fraction"] = margin
    cfg, issues = validate_config(data)
    assert cfg is not None, issues
    return cfg


def busy_observation(cfg: StationConfig, rng: np.random.Generator) -> Observation:
    obs = Observation.for_station(cfg)
    n = obs.n_guns
    obs.dt_s = 1.0
    obs.connected[:] = rng.random(n) < 0.8
    obs.demand_kw[:] = rng.uniform(0, 700, n)
    obs.vehicle_max_kw[:] = rng.uniform(100, 1500, n)
    obs.v2g_kw[:] = np.where(rng.random(n) < 0.5, rng.uniform(0, 150, n), 0.0)
    obs.voltage_v[:] = rng.uniform(350, 900, n)
    obs.import_cap_kw = 2000.0
    obs.export_cap_kw = 500.0
    obs.ramp_kw_per_s = math.nan
    obs.bess_available = True
    obs.bess_soc = 0.6
    obs.bess_max_charge_kw = 1000.0
    obs.bess_max_discharge_kw = 1000.0
    return obs


def reference_input(cfg: StationConfig, obs: Observation) -> AllocationInput:
    """The same cycle written out as allocation data, independently of Controller.fill."""
    t = station_template(cfg)
    guns = []
    for g, (gun, tmpl) in enumerate(zip(cfg.guns(), t.guns)):
        on = bool(obs.connected[g])
        volts = float(obs.voltage_v[g])
        guns.append(dataclasses.replace(
            tmpl, demand_kw=float(obs.demand_kw[g]) if on else 0.0,
            vehicle_max_kw=float(obs.vehicle_max_kw[g]) if on else 0.0,
            gun_max_kw=min(gun.max_power_kw, gun.max_current_a * volts / 1000.0),
            v2g_kw=min(float(obs.v2g_kw[g]), gun.max_discharge_kw if gun.bidirectional else 0.0) if on else 0.0,
            voltage_v=volts))
    b = t.bess
    bess = BessInput(soc=obs.bess_soc, capacity_kwh=b.capacity_kwh, soc_min=b.soc_min, soc_max=b.soc_max,
                     reserve_soc=b.reserve_soc, max_charge_kw=min(b.max_charge_kw, obs.bess_max_charge_kw),
                     max_discharge_kw=min(b.max_discharge_kw, obs.bess_max_discharge_kw),
                     charge_efficiency=b.charge_efficiency, discharge_efficiency=b.discharge_efficiency, available=True)
    grid = GridInput(import_limit_kw=obs.import_cap_kw, export_limit_kw=obs.export_cap_kw, target_kw=obs.target_kw,
                     ramp_kw_per_s=obs.ramp_kw_per_s)
    return dataclasses.replace(t, dt_s=obs.dt_s, guns=tuple(guns), bess=bess, grid=grid, aux_load_kw=obs.aux_load_kw)


def test_controller_matches_the_reference_over_cycles() -> None:
    """20 cycles of a busy hub: arrivals, departures and a dispatch target change between cycles."""
    cfg = hub(margin=0.0)
    ctl = Controller(cfg)
    rng = np.random.default_rng(7)
    obs = busy_observation(cfg, rng)
    inp = reference_input(cfg, obs)
    out = None
    for cycle in range(20):
        if cycle == 8:
            obs.target_kw = -300.0
        if cycle == 14:
            obs.connected[:5] = ~obs.connected[:5]
        fresh = reference_input(cfg, obs)
        if out is not None:
            carried = carry(inp, out, grid_kw=ctl.expected_grid_kw,
                            module_current_a={m: 0.0 for m in cfg.module_ids()})
            # the station fills measurements from the plant: here it did exactly what was commanded
            guns = tuple(dataclasses.replace(f, prev_alloc_kw=c.prev_alloc_kw, measured_kw=c.measured_kw,
                                             under_s=c.under_s if f.demand_kw > 0 or f.vehicle_max_kw > 0 else 0.0,
                                             draw_cap_kw=c.draw_cap_kw if f.vehicle_max_kw > 0 else math.inf)
                         for f, c in zip(fresh.guns, carried.guns))
            fresh = dataclasses.replace(fresh, guns=guns, modules=carried.modules,
                                        grid=dataclasses.replace(fresh.grid, last_kw=carried.grid.last_kw))
            obs.measured_kw[:] = [g.measured_kw for g in guns]
        inp = fresh
        out = allocate(inp, engine="reference")
        got = ctl.decide(obs)
        want = np.array([g.power_kw for g in out.guns])
        assert got.gun_kw == pytest.approx(want, abs=1e-6), f"cycle {cycle}"
        assert got.bess_kw == pytest.approx(out.bess_kw, abs=1e-6)
        assert got.grid_kw == pytest.approx(out.grid_kw, abs=1e-6)
        assert list(got.module_gun) == [m.gun for m in out.modules], f"cycle {cycle}"
        assert list(got.bound_by) == [int(g.bound_by) for g in out.guns]


def test_grid_bias_keeps_the_true_grid_under_the_cap() -> None:
    """The plant draws 30 kW more than the model (unmetered auxiliaries, light-load losses)."""
    cfg = hub(margin=0.0)
    ctl = Controller(cfg)
    obs = busy_observation(cfg, np.random.default_rng(1))
    obs.connected[:] = True
    obs.demand_kw[:] = 400.0
    obs.bess_available = False  # the cap binds on the vehicles alone
    true_grid = []
    for _ in range(60):
        d = ctl.decide(obs)
        # the plant: what the kernel planned for the vehicles, plus 30 kW it does not know about
        # (d.grid_kw includes the bias the controller added as a phantom load; the plant does not draw it)
        true_grid.append(d.grid_kw - ctl.bias_kw + 30.0)
        obs.grid_measured_kw = true_grid[-1]
        obs.measured_kw[:] = d.gun_kw
    assert true_grid[0] > obs.import_cap_kw + 25  # without the correction the cap is broken
    assert max(true_grid[-20:]) <= obs.import_cap_kw + 1.0
    assert ctl.bias_kw == pytest.approx(30.0, abs=1.0)


def test_bias_never_adds_headroom() -> None:
    """A plant that draws less than modelled does not make the controller import more than the cap."""
    cfg = hub(margin=0.0)
    ctl = Controller(cfg)
    obs = busy_observation(cfg, np.random.default_rng(2))
    for _ in range(30):
        d = ctl.decide(obs)
        obs.grid_measured_kw = d.grid_kw - 50.0
    assert ctl.bias_kw == 0.0
    assert ctl.decide(obs).grid_kw <= obs.import_cap_kw + 1e-6


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cap=st.floats(0, 3000), margin=st.floats(0, 0.05))
def test_margin_and_safety_on_random_observations(seed: int, cap: float, margin: float) -> None:
    cfg = hub(margin=margin)
    ctl = Controller(cfg)
    obs = busy_observation(cfg, np.random.default_rng(seed))
    obs.import_cap_kw = cap
    for _ in range(3):
        d = ctl.decide(obs)
        obs.measured_kw[:] = d.gun_kw
    on = obs.connected
    assert np.all(d.gun_kw <= np.where(on, obs.demand_kw, 0.0) + 1e-6)
    assert np.all(d.gun_kw >= -np.where(on, obs.v2g_kw, 0.0) - 1e-6)
    assert np.all(d.gun_kw[~on] == 0.0)
    if not d.flags & 1:  # GRID_OVER_CAP: infeasible even with everything shed
        assert d.grid_kw <= ctl.limits_with_margin(cap, obs.export_cap_kw)[0] + 1e-6
        assert d.grid_kw <= cap + 1e-6


def test_module_layer_bounds_a_baseline_by_the_modules() -> None:
    cfg = load_config(ROOT / "config" / "megawatt-hub.yaml")
    layer = ModuleLayer(cfg)
    obs = Observation.for_station(cfg)
    obs.connected[:] = True
    obs.vehicle_max_kw[:] = 2000.0
    obs.voltage_v[:] = 800.0
    ids = cfg.gun_ids()
    want = np.zeros(len(ids))
    want[ids.index("T1")] = 1440.0
    want[ids.index("T2")] = 1440.0  # together more than cabinet C1's 40 x 40 kW
    d = layer.assign(obs, want)
    t1, t2 = d.gun_kw[ids.index("T1")], d.gun_kw[ids.index("T2")]
    assert t1 + t2 == pytest.approx(1600.0, abs=1e-6)
    cab = [c.id for c, _ in cfg.modules()]
    on_t = [m for m, g in enumerate(d.module_gun) if g in (ids.index("T1"), ids.index("T2"))]
    assert len(on_t) == 40 and all(cab[m] == "C1" for m in on_t)
    assert np.all(d.gun_kw <= want + 1e-9)


def test_margin_is_absolute_and_never_forces_a_flow() -> None:
    cfg = hub(margin=0.005)  # 10 kW on the hub's 2000 kW connection
    ctl = Controller(cfg)
    assert ctl.limits_with_margin(2000.0, 1000.0) == pytest.approx((1990.0, 990.0))
    assert ctl.limits_with_margin(500.0, 0.0) == pytest.approx((490.0, 0.0))
    assert ctl.limits_with_margin(0.0, 1100.0) == pytest.approx((0.0, 1090.0))
    assert ctl.limits_with_margin(4.0, 0.0) == pytest.approx((0.0, 0.0))


def test_a_scheduled_lower_cap_is_approached_at_the_ramp_limit() -> None:
    """The operator announced 500 kW from t=10 s; the site ramps at 100 kW/s: the grid is under 500 kW
    from the cycle before the window, and never steps down faster than the ramp."""
    from hil.sim.timeline import Window

    cfg = hub(margin=0.0)
    ctl = Controller(cfg)
    obs = busy_observation(cfg, np.random.default_rng(3))
    obs.connected[:] = True
    obs.demand_kw[:] = 300.0
    obs.bess_available = False
    obs.ramp_kw_per_s = 100.0
    ctl.set_schedule([Window(start_s=10.0, end_s=100.0, import_limit_kw=500.0, export_limit_kw=0.0)])
    grid = []
    for k in range(12):
        obs.t_s = float(k)
        if k >= 10:
            obs.import_cap_kw = 500.0
        d = ctl.decide(obs)
        grid.append(d.grid_kw)
        obs.grid_measured_kw = d.grid_kw
        obs.measured_kw[:] = d.gun_kw
    assert grid[0] == pytest.approx(1400.0)  # 500 + 100 kW/s x (10 - 0 - 1) s
    assert grid[9] <= 500.0 + 1e-6
    assert all(a - b <= 100.0 + 1e-6 for a, b in zip(grid, grid[1:]))
