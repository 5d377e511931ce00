"""The perfect-foresight LP (hil.bound) on cases whose optimum is worked out by hand, and against the
baselines stepped on the plant's vehicle models.

Scenarios are real ``hil.scenarios.Scenario`` objects built as data (the bound reads their duration,
dispatch events, faults, initial BESS SoC and tariff; the station comes separately as a small config).
Module losses in the LP are the plant's at its best point: ``loss per kW = 0.8 * (1 / eff - 1)`` for the
loss curve of hil.plant.modules (peak efficiency at half load).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from hil.baselines import POLICIES
from hil.bound import acceptance_curve, acceptance_cuts, perfect_foresight
from hil.plant import V2GOffer, Vehicle, VehicleSpec, car, fast_car, truck
from hil.scenarios import Plug, Scenario
from station.config import StationConfig
from station.control.observation import Observation
from tests.baselines.stations import gun, station


def best_loss(eff: float) -> float:
    return 0.8 * (1.0 / eff - 1.0)


def scenario(duration_s: float, dispatch: list[dict[str, Any]] | None = None,
             faults: list[dict[str, Any]] | None = None, **kw: Any) -> Scenario:
    """A scenario of the given events; its own station file is never read (the tests pass the config)."""
    return Scenario.model_validate({"name": "test", "station": "unused.yaml", "start": "2026-07-15T12:00:00+08:00",
                                    "duration_s": duration_s, "dispatch": dispatch or [], "faults": faults or [],
                                    **kw})


def event(at: float, valid_s: float, *, import_kw: float, export_kw: float = 0.0, target_kw: float | None = None,
          ramp: float | None = None) -> dict[str, Any]:
    return {"at": at, "valid_s": valid_s, "import_limit_kw": import_kw, "export_limit_kw": export_kw,
            "target_kw": target_kw, "ramp_kw_per_s": ramp}


def fault(at: float, duration_s: float, kind: str, target: str) -> dict[str, Any]:
    return {"at": at, "duration_s": duration_s, "kind": kind, "target": target}


def plug(spec: VehicleSpec, g: int) -> Plug:
    return Plug(spec, g)


def big_truck(vid: str, arrival: float = 0.0, departure: float = math.inf, **kw: Any) -> VehicleSpec:
    """A pack so large that acceptance never binds within these tests."""
    return truck(vid, 3000.0, 0.2, arrival_s=arrival, departure_s=departure, max_current_a=1500, **kw)


# ---- hand-computed optima -------------------------------------------------------------------------------------


def test_one_gun_under_a_cap_below_its_demand_gets_the_cap_less_aux_and_losses() -> None:
    cfg = station([gun("G1")], cap_kw=100.0, aux_kw=4.0, efficiency=0.96)
    res = perfect_foresight(cfg, [plug(big_truck("T"), 0)], scenario(3600.0))
    assert res.status == "optimal"
    assert res.energy_delivered_kwh == pytest.approx(96.0 / (1.0 + best_loss(0.96)), rel=1e-6)
    np.testing.assert_allclose(res.grid_kw, 100.0, rtol=1e-6)
    assert res.per_session_kwh["T"] == pytest.approx(res.energy_delivered_kwh)
    assert res.gun_kw.shape == (60, 1)


def test_with_time_to_spare_a_session_gets_exactly_the_energy_to_its_target() -> None:
    cfg = station([gun("G1")], cap_kw=1000.0)
    spec = car("C", 80.0, 0.3, target_soc=0.8)
    res = perfect_foresight(cfg, [plug(spec, 0)], scenario(4 * 3600.0))
    v = Vehicle(spec)  # the plant charged flat out at 1 s steps, the gun never binding
    while not v.full:
        v.step(v.accepted_current_a(), 1.0)
    assert res.energy_delivered_kwh == pytest.approx(v.energy_in_kwh, rel=2e-3)


def test_the_battery_shifts_energy_from_before_the_arrival_into_the_session() -> None:
    bess = {"capacity_kwh": 100, "max_charge_kw": 100, "max_discharge_kw": 100, "soc_min": 0.05, "soc_max": 0.95,
            "reserve_soc": 0.05, "initial_soc": 0.05, "charge_efficiency": 0.9, "discharge_efficiency": 0.9}
    cfg = station([gun("G1")], cap_kw=100.0, bess=bess)
    res = perfect_foresight(cfg, [plug(big_truck("T", 3600.0, 7200.0), 0)], scenario(7200.0))
    # hour 1: 100 kWh from the grid fill the battery (90 kWh stored = its whole range);
    # hour 2: the grid's 100 kWh plus 90 * 0.9 = 81 kWh back from the battery
    assert res.energy_delivered_kwh == pytest.approx(181.0, rel=1e-6)
    first = res.t_s < 3600.0
    np.testing.assert_allclose(res.bess_kw[first], -100.0, rtol=1e-6)
    assert np.sum(res.bess_kw[~first]) / 60.0 == pytest.approx(81.0, rel=1e-6)
    assert res.bess_soc[-1] == pytest.approx(0.05, abs=1e-6)


def test_keeping_the_reserve_holds_it_back_from_vehicles_but_not_from_dispatch() -> None:
    """100 kWh battery at 80 %, reserve 30 %, lossless: a truck under a 100 kW cap for an hour gets
    100 + 75 kWh without the reserve and 100 + 50 kWh with it; inside an export window the reserve is
    the operator's, so the battery may go below it there."""
    bess = {"capacity_kwh": 100, "max_charge_kw": 100, "max_discharge_kw": 100, "soc_min": 0.05, "soc_max": 0.95,
            "reserve_soc": 0.3, "initial_soc": 0.8, "charge_efficiency": 1.0, "discharge_efficiency": 1.0}
    cfg = station([gun("G1")], cap_kw=100.0, bess=bess, efficiency=1.0)
    plugs = [plug(big_truck("T", 0.0, 3600.0), 0)]
    loose = perfect_foresight(cfg, plugs, scenario(3600.0))
    kept = perfect_foresight(cfg, plugs, scenario(3600.0), keep_reserve=True)
    assert loose.energy_delivered_kwh == pytest.approx(175.0 / (1.0 + best_loss(1.0)), rel=1e-6)
    assert kept.energy_delivered_kwh == pytest.approx(150.0, rel=1e-6)
    assert kept.bess_soc.min() == pytest.approx(0.3, abs=1e-6)
    # a window asking 40 kW of export for the last 30 minutes: the battery goes below the reserve there
    window = scenario(3600.0, dispatch=[event(1800.0, 1800.0, import_kw=0.0, export_kw=50.0, target_kw=-40.0)])
    kept = perfect_foresight(cfg, plugs, window, keep_reserve=True)
    assert kept.tracking_slack_kwh == pytest.approx(0.0, abs=1e-6)
    assert kept.bess_soc[-1] < 0.3 - 1e-3


def test_module_capacity_binds_through_the_switch_matrix_and_faults() -> None:
    guns = [gun("G1", kw=80.0, amps=260.0), gun("G2", kw=80.0, amps=260.0)]
    cfg = station(guns, cap_kw=1000.0, modules=3, matrix=[{"cabinet": "C1", "modules": "1-2", "guns": ["G1"]},
                                                          {"cabinet": "C1", "modules": "2-3", "guns": ["G2"]}])
    alone = perfect_foresight(cfg, [plug(big_truck("A"), 0)], scenario(3600.0))
    assert alone.energy_delivered_kwh == pytest.approx(80.0, rel=1e-6)  # G1 reaches modules 1-2
    both = perfect_foresight(cfg, [plug(big_truck("A"), 0), plug(big_truck("B"), 1)], scenario(3600.0))
    assert both.energy_delivered_kwh == pytest.approx(120.0, rel=1e-6)  # module 2 is shared: 120 kW, not 2 x 80
    # module 3 out for the first 30 minutes: 80 kW, then 120 kW
    faulted = perfect_foresight(cfg, [plug(big_truck("A"), 0), plug(big_truck("B"), 1)],
                                scenario(3600.0, faults=[fault(0.0, 1800.0, "module_fault", "C1.M03")]))
    assert faulted.energy_delivered_kwh == pytest.approx(100.0, rel=1e-6)


def test_gun_and_vehicle_faults_take_their_share_of_each_step_away() -> None:
    cfg = station([gun("G1")], cap_kw=1000.0)  # the gun's 300 kW binds, not the cap
    faults = [fault(0.0, 930.0, "gun_unavailable", "G1"), fault(1800.0, 930.0, "vehicle_stops_drawing", "G1")]
    res = perfect_foresight(cfg, [plug(big_truck("T"), 0)], scenario(3600.0, faults=faults))
    # 300 kW for the 1740 s it can charge: the steps cut at 930 s and 2730 s count half
    assert res.energy_delivered_kwh == pytest.approx(300.0 * (3600.0 - 2 * 930.0) / 3600.0, rel=1e-6)


def test_an_unavailable_battery_cannot_help() -> None:
    bess = {"capacity_kwh": 100, "max_charge_kw": 100, "max_discharge_kw": 100, "soc_min": 0.05, "soc_max": 0.95,
            "reserve_soc": 0.05, "initial_soc": 0.95, "charge_efficiency": 0.9, "discharge_efficiency": 0.9}
    cfg = station([gun("G1")], cap_kw=100.0, bess=bess)
    res = perfect_foresight(cfg, [plug(big_truck("T", 0.0, 3600.0), 0)],
                            scenario(3600.0, faults=[fault(0.0, 1800.0, "bess_unavailable", "bess")]))
    # the grid's 100 kWh plus the battery at 100 kW for the half hour it is there
    assert res.energy_delivered_kwh == pytest.approx(150.0, rel=1e-6)
    assert np.all(res.bess_kw[res.t_s < 1800.0] == pytest.approx(0.0, abs=1e-9))


def test_an_export_target_is_met_by_v2g_and_charging_resumes_after_it() -> None:
    eff = 0.96
    cfg = station([gun("B1", v2g_kw=100.0)], cap_kw=100.0, export_kw=100.0, efficiency=eff)
    spec = car("V", 200.0, 0.6, max_current_a=400.0, v2g=V2GOffer(max_discharge_kw=100.0, min_soc=0.3))
    window = event(0.0, 3600.0, import_kw=100.0, export_kw=100.0, target_kw=-50.0)
    res = perfect_foresight(cfg, [plug(spec, 0)], scenario(7200.0, dispatch=[window]))
    lam = best_loss(eff)
    first = res.t_s < 3600.0
    np.testing.assert_allclose(res.grid_kw[first], -50.0, atol=1e-6)
    assert res.tracking_slack_kwh == pytest.approx(0.0, abs=1e-6)
    # hour 1: the vehicle gives 50 / (1 - loss) at its terminals; hour 2: it charges at the cap
    assert res.energy_delivered_kwh == pytest.approx(100.0 / (1 + lam) - 50.0 / (1 - lam), rel=1e-6)


def test_without_a_v2g_offer_the_target_cannot_be_met_and_the_slack_says_by_how_much() -> None:
    cfg = station([gun("B1", v2g_kw=100.0)], cap_kw=100.0, export_kw=100.0, efficiency=0.96)
    spec = car("V", 200.0, 0.3, max_current_a=400.0)  # 120 kWh to its target: the hour at the cap fits
    window = event(0.0, 3600.0, import_kw=100.0, export_kw=100.0, target_kw=-50.0)
    res = perfect_foresight(cfg, [plug(spec, 0)], scenario(7200.0, dispatch=[window]))
    assert res.tracking_slack_kwh == pytest.approx(50.0, rel=1e-6)  # grid stays at 0 for the hour
    assert res.energy_delivered_kwh == pytest.approx(100.0 / (1 + best_loss(0.96)), rel=1e-6)


def test_a_dispatch_cap_and_its_ramp_limit_hold_on_the_step_averages() -> None:
    cfg = station([gun("G1")], cap_kw=200.0)
    # 50 kW from 30 min, then (a later window wins) 150 kW from 45 min, both at 1 kW/s
    windows = [event(1800.0, 1800.0, import_kw=50.0, ramp=1.0), event(2700.0, 900.0, import_kw=150.0, ramp=1.0)]
    res = perfect_foresight(cfg, [plug(big_truck("T"), 0)], scenario(3600.0, dispatch=windows))
    assert np.all(res.grid_kw[(res.t_s >= 1800.0) & (res.t_s < 2700.0)] <= 50.0 + 1e-6)
    # the falling cap is obeyed at once (the looser ramp counts where the ramp changes); inside the
    # windows the grid rises at 1 kW/s, i.e. 60 kW between 60 s averages: 50 -> 110 -> 150
    np.testing.assert_allclose(res.grid_kw[[29, 30, 44, 45, 46]], [200.0, 50.0, 50.0, 110.0, 150.0], atol=1e-6)
    assert res.energy_delivered_kwh == pytest.approx((200 * 30 + 50 * 15 + 110 + 150 * 14) / 60.0, rel=1e-6)


# ---- the acceptance cuts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [car("c", 80.0, 0.2), fast_car("f"), truck("t"), car("lo", 60.0, 0.05, target_soc=1.0)])
def test_acceptance_cuts_lie_on_or_above_the_plants_curve(spec: VehicleSpec) -> None:
    e, p, e_max = acceptance_curve(spec, 1440.0, 1500.0)
    cuts = acceptance_cuts(spec, 1440.0, 1500.0)
    bound = np.min(cuts.intercept[:, None] + cuts.slope[:, None] * e[None, :], axis=0)
    assert np.all(bound >= p - 1e-9)
    assert cuts.e_max_kwh == pytest.approx(e_max)
    assert e_max >= (spec.target_soc - spec.initial_soc) * spec.capacity_kwh  # stored energy plus heat
    assert 1 <= len(cuts.slope) <= 8


# ---- the bound against the baselines on the plant's vehicles -----------------------------------------------------


def run_vehicles(cfg: StationConfig, plugs: list[Any], policy: Any, duration_s: float, cap_kw: float) -> tuple[float, float]:
    """Step the baseline on hil.plant vehicles at 1 s (a charger in current-limit mode, modules not binding):
    returns the net energy at the terminals and the highest grid power."""
    eff = 0.96
    obs = Observation.for_station(cfg)
    obs.import_cap_kw, obs.aux_load_kw, obs.dt_s = cap_kw, cfg.grid.aux_load_kw, 1.0
    on: list[Vehicle | None] = [None] * len(cfg.guns())
    done = 0.0
    grid = peak = obs.aux_load_kw
    last_kw = np.zeros(len(on))
    plugged: set[str] = set()
    for step in range(int(duration_s)):
        t = float(step)
        for p in plugs:
            v = on[p.gun]
            if v is not None and v.spec is p.spec and t >= p.spec.departure_s:
                done += v.energy_in_kwh
                on[p.gun] = None
            if on[p.gun] is None and p.spec.vehicle_id not in plugged and p.spec.arrival_s <= t < p.spec.departure_s:
                on[p.gun] = Vehicle(p.spec)
                plugged.add(p.spec.vehicle_id)
        obs.t_s, obs.grid_measured_kw = t, grid
        for g, v in enumerate(on):
            obs.connected[g] = v is not None
            if v is None:
                obs.demand_kw[g] = obs.vehicle_max_kw[g] = 0.0
                obs.measured_kw[g] = obs.voltage_v[g] = obs.energy_wanted_kwh[g] = obs.departure_s[g] = math.nan
                continue
            obs.demand_kw[g] = v.demand_kw()
            obs.vehicle_max_kw[g] = v.spec.max_current_a * v.spec.max_voltage_v / 1000.0
            obs.voltage_v[g] = v.terminal_voltage_v(0.0)
            obs.measured_kw[g] = last_kw[g]
            obs.energy_wanted_kwh[g] = v.energy_wanted_kwh()
            obs.departure_s[g] = v.spec.departure_s
        d = policy.decide(obs)
        grid = obs.aux_load_kw
        for g, v in enumerate(on):
            last_kw[g] = 0.0
            if v is None:
                continue
            i = min(v.current_for_power(float(d.gun_kw[g])), v.accepted_current_a())
            last_kw[g] = v.step(i, 1.0)
            grid += last_kw[g] / eff
        peak = max(peak, grid)
    return done + sum(v.energy_in_kwh for v in on if v is not None), peak


def test_the_bound_is_above_every_baseline_that_keeps_the_cap() -> None:
    cfg = station([gun("G1", priority=1), gun("G2"), gun("G3")], cap_kw=150.0, aux_kw=2.0, efficiency=0.96)
    specs = [(car("a", 60.0, 0.2, arrival_s=0.0, departure_s=2400.0), 0),
             (fast_car("b", 80.0, 0.3, arrival_s=300.0, departure_s=3000.0), 1),
             (car("c", 100.0, 0.5, arrival_s=900.0, departure_s=3600.0), 2),
             (car("d", 50.0, 0.1, arrival_s=2500.0, departure_s=3600.0), 0)]
    bound = perfect_foresight(cfg, [plug(s, g) for s, g in specs], scenario(3600.0))
    energies = {}
    for name in ["equal-share", "priority-share", "llf", "uncontrolled"]:
        energies[name], peak = run_vehicles(cfg, [plug(s, g) for s, g in specs], POLICIES[name](cfg), 3600.0, 150.0)
        if name == "uncontrolled":
            assert peak > 150.0 + 50.0  # it ignores the cap, so the bound does not apply to it
            continue
        assert bound.energy_delivered_kwh >= energies[name], (name, energies[name], bound.energy_delivered_kwh)
    # and the bound is not loose beyond reason: the best capped baseline reaches a good share of it
    assert max(energies[n] for n in ("equal-share", "priority-share", "llf")) >= 0.9 * bound.energy_delivered_kwh


def test_no_policy_beats_the_bound_in_the_simulator_on_the_demo_scenario() -> None:
    """Ours and the baselines that try to keep the cap, through the real simulator (plant, module layer,
    meter), stay at or below the bound of the same scenario (uncontrolled ignores the cap: no bound)."""
    from hil.scenarios import SHIPPED_DIR, load_scenario
    from hil.sim.report import metrics
    from hil.sim.run import simulate

    scn = load_scenario(SHIPPED_DIR / "demo.yaml")
    cfg = scn.station_config()
    bound = perfect_foresight(cfg, scn.plugs(cfg), scn)
    assert bound.status == "optimal" and bound.cap_slack_kwh == pytest.approx(0.0, abs=1e-6)
    nets = {name: metrics(simulate(scn, name))["energy_net_kwh"]
            for name in ["ours", "equal-share", "priority-share", "llf"]}
    assert all(net <= bound.energy_delivered_kwh + 1e-6 for net in nets.values()), (nets, bound.energy_delivered_kwh)
    assert max(nets.values()) >= 0.8 * bound.energy_delivered_kwh  # and it is not loose beyond reason
