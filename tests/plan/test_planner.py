"""The planner against hand calculations: it saves the battery for a forecast peak, pre-charges before an
export window, keeps room before an absorb window - each run minute by minute through the real allocation
kernel and compared with the kernel alone (myopic) - and its settings make the kernel do the plan."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.allocate import AllocationInput, BessInput, GridInput, GunInput, allocate
from station.config import StationConfig
from station.control.decide import gun_efficiencies
from station.control.observation import Observation
from station.plan import BessPlan, Planner, Window
from station.control.decide import with_margin
from station.plan.planner import TOL_KW
from tests.plan.closed_loop import run
from tests.plan.stations import observe, small_station


def profile(*hours: float) -> list[float]:
    return list(hours) + [0.0] * (24 - len(hours))


def minutes(*blocks: tuple[float, int]) -> list[float]:
    """Demand per minute from (kW, minutes) blocks."""
    return [kw for kw, n in blocks for _ in range(n)]


def test_saves_the_battery_for_a_forecast_peak() -> None:
    """Cap 100 kW; 130 kW of demand for an hour, then a 250 kW peak hour (the arrival profile forecasts
    it). 100 kWh battery at 50 %, reserve 10 %: 40 kWh to give, 100 kW at most, no losses. The planner
    levels (``leveling: 1``).

    By hand - myopic kernel: carries the 30 kW now (30 kWh), has 10 kWh left for the peak: 100 kW for
    6 minutes, then the peak goes 150 kW short; 140 kWh unserved in all, worst minute 150 kW short.
    Planned: nothing now (30 kW short), all 40 kWh spread over the peak (40 kW): 110 kW short all hour;
    the same 140 kWh unserved, but the worst minute 110 kW short instead of 150."""
    cfg = small_station(profile=profile(130.0, 250.0), leveling=1.0)
    demand = minutes((130.0, 60), (250.0, 60))
    myopic = run(cfg, demand, [], 0.5, planned=False)
    planned = run(cfg, demand, [], 0.5, planned=True)

    assert math.isclose(myopic.soc[60], 0.2, abs_tol=1e-9)  # 30 kWh spent before the peak
    assert math.isclose(max(myopic.unserved_kw), 150.0, abs_tol=1e-6)
    assert math.isclose(myopic.kwh(myopic.unserved_kw), 140.0, abs_tol=1e-6)

    assert math.isclose(planned.soc[60], 0.5, abs_tol=0.005)  # the 40 kWh are all still there at the peak
    assert max(planned.bess_kw[:60]) < 0.5
    assert np.mean(planned.bess_kw[60:]) == pytest.approx(40.0, abs=1.0)
    assert max(planned.unserved_kw) < 115.0  # 110 by hand; the SoC grid ripples the discharge by a few kW
    assert math.isclose(planned.kwh(planned.unserved_kw), 140.0, abs_tol=0.5)
    assert min(planned.soc) >= 0.1 - 1e-9  # the reserve is never touched


def test_energy_first_serves_the_deficit_as_it_comes() -> None:
    """The same peak with the default ``leveling: 0``: no kWh is worth more later than now, so the plan
    leaves the kernel alone - the same minute-by-minute battery power, the same 140 kWh unserved."""
    cfg = small_station(profile=profile(130.0, 250.0))
    demand = minutes((130.0, 60), (250.0, 60))
    myopic = run(cfg, demand, [], 0.5, planned=False)
    planned = run(cfg, demand, [], 0.5, planned=True)
    assert planned.bess_kw == pytest.approx(myopic.bess_kw, abs=1e-6)
    assert math.isclose(planned.kwh(planned.unserved_kw), 140.0, abs_tol=1e-6)


def test_pre_charges_so_the_export_window_is_held() -> None:
    """Cap 100 kW with 150 kW of demand for an hour, then the operator's window: export 100 kW for 30
    minutes, no vehicle. 100 kWh battery at 30 %, reserve 20 %, soc_min 5 %, no losses.

    By hand - the window needs 50 kWh above soc_min, i.e. 55 % at its start. Myopic kernel: carries the
    deficit down to the reserve in 12 minutes, enters the window with 15 kWh: 9 minutes of export, then
    35 kWh short. Planned: no support, and 25 kWh charged before the window at the vehicles' expense."""
    window = Window(3600.0, 5400.0, import_limit_kw=100.0, export_limit_kw=200.0, target_kw=-100.0)
    cfg = small_station(reserve_soc=0.2)
    demand = minutes((150.0, 60), (0.0, 30))
    myopic = run(cfg, demand, [window], 0.3, planned=False)
    planned = run(cfg, demand, [window], 0.3, planned=True)

    assert math.isclose(myopic.soc[60], 0.2, abs_tol=1e-9)
    assert math.isclose(myopic.kwh(myopic.shortfall_kw), 35.0, abs_tol=1e-6)

    assert planned.soc[60] >= 0.55 - 0.005
    assert planned.kwh(planned.shortfall_kw) < 0.5  # held (up to one SoC grid cell of interpolation)
    assert 24.5 <= planned.kwh(planned.charge_min_kw) <= 27.0  # 25 kWh by hand: no more than needed
    assert max(planned.bess_kw[:60]) <= 0.0  # never spent on vehicles before the window


def test_keeps_room_before_an_absorb_window() -> None:
    """The operator asks the station to import exactly 100 kW for 30 minutes with no vehicle: the battery
    must absorb 50 kWh. Before it: 30 minutes of 150 kW (the battery carries 50 kW, 60 % -> 35 %), then
    30 minutes of 40 kW (60 kW of headroom). 100 kWh battery, no losses.

    By hand - myopic kernel: recharges 30 kWh from the headroom (to 65 %), then can absorb only 30 kWh:
    20 kWh short. Planned: keeps the room (soc_target at the present SoC), absorbs all 50 kWh."""
    window = Window(3600.0, 5400.0, import_limit_kw=100.0, export_limit_kw=200.0, target_kw=100.0)
    cfg = small_station()
    demand = minutes((150.0, 30), (40.0, 30), (0.0, 30))
    myopic = run(cfg, demand, [window], 0.6, planned=False)
    planned = run(cfg, demand, [window], 0.6, planned=True)

    assert math.isclose(myopic.soc[60], 0.65, abs_tol=1e-9)
    assert math.isclose(myopic.kwh(myopic.shortfall_kw), 20.0, abs_tol=1e-6)
    assert planned.soc[60] <= 0.45 + 0.005
    assert planned.kwh(planned.shortfall_kw) < 0.5


def kernel_now(cfg: StationConfig, obs: Observation, plan: BessPlan) -> float:
    """The allocation kernel's battery power for the observation's instant, with the plan's settings,
    over one planner step (guns as the observation's sessions, efficiencies as the station's)."""
    b = cfg.bess
    assert b is not None
    eff = gun_efficiencies(cfg)
    guns = tuple(GunInput(f"G{g}", demand_kw=float(obs.demand_kw[g]), vehicle_max_kw=float(obs.vehicle_max_kw[g]),
                          gun_max_kw=300.0, efficiency=eff[g]) for g in range(obs.n_guns) if obs.connected[g])
    importing, exporting = with_margin(cfg, np.array([obs.import_cap_kw, obs.export_cap_kw]))
    inp = AllocationInput(
        dt_s=cfg.control.planner.step_s,
        grid=GridInput(import_limit_kw=importing, export_limit_kw=exporting, target_kw=obs.target_kw),
        guns=guns, aux_load_kw=obs.aux_load_kw,
        bess=BessInput(soc=obs.bess_soc, capacity_kwh=b.capacity_kwh, soc_min=b.soc_min, soc_max=b.soc_max,
                       reserve_soc=b.reserve_soc, max_charge_kw=b.max_charge_kw, max_discharge_kw=b.max_discharge_kw,
                       charge_efficiency=b.charge_efficiency, discharge_efficiency=b.discharge_efficiency,
                       available=True, soc_target=plan.soc_target, support_max_kw=plan.support_max_kw,
                       charge_min_kw=plan.charge_min_kw),
    )
    return allocate(inp).bess_kw


def kind_of(plan: BessPlan, cfg: StationConfig, obs: Observation) -> str:
    assert cfg.bess is not None
    if not math.isnan(obs.target_kw):
        return "hold"
    if plan.charge_min_kw > 0:
        return "forced"
    if not math.isnan(plan.support_max_kw):
        return "rationed"
    return "room" if plan.soc_target < cfg.bess.soc_max else "own"


@pytest.mark.parametrize("kind", ["own", "rationed", "forced", "room", "hold"])
def test_each_kind_of_plan_reaches_the_kernel(kind: str) -> None:
    """One hand-picked situation per kind of first step: the kernel with the plan's settings does it."""
    window: list[Window] = []
    target = math.nan
    soc = 0.5
    sessions = [(0, 130.0, 1000.0, 3600.0)]
    cfg = small_station()
    if kind == "rationed":  # the forecast peak of test_saves_the_battery_for_a_forecast_peak
        cfg = small_station(profile=profile(130.0, 250.0), leveling=1.0)
        sessions = [(0, 130.0, math.nan, 3600.0)]
    elif kind == "forced":  # as in test_pre_charges_so_the_export_window_is_held
        cfg = small_station(reserve_soc=0.2)
        soc, sessions = 0.3, [(0, 150.0, 1000.0, 3600.0)]
        window = [Window(3600.0, 5400.0, 100.0, 200.0, -100.0)]
    elif kind == "room":  # an absorb window in 5 minutes, little room left, headroom now
        cfg = small_station(cap_kw=200.0, horizon_s=1800.0)
        soc, sessions = 0.7, [(0, 50.0, 1000.0, 300.0)]
        window = [Window(300.0, 2100.0, 200.0, 300.0, 200.0)]
    elif kind == "hold":
        target = -60.0
        window = [Window(0.0, 1800.0, 100.0, 200.0, target)]
    obs = observe(cfg, soc=soc, sessions=sessions, target_kw=target)
    plan = Planner(cfg).plan(obs, window)
    assert kind_of(plan, cfg, obs) == kind
    assert kernel_now(cfg, obs, plan) == pytest.approx(plan.bess_kw[0], abs=TOL_KW + 1e-6)


@settings(max_examples=150, deadline=None)
@given(
    soc=st.floats(0.0, 1.0),
    cap=st.floats(50.0, 400.0),
    demands=st.lists(st.floats(0.0, 300.0), min_size=2, max_size=2),
    kind=st.sampled_from(["none", "export ahead", "absorb ahead", "window now"]),
    start_min=st.integers(1, 10),
    target=st.floats(20.0, 300.0),
    reserve=st.floats(0.05, 0.6),
    efficiency=st.sampled_from([1.0, 0.95]),
    module_efficiency=st.sampled_from([1.0, 0.9]),
    peak=st.floats(0.0, 600.0),
    leveling=st.sampled_from([0.0, 1.0]),
)
def test_the_kernel_does_what_the_plan_says_now(soc: float, cap: float, demands: list[float], kind: str,
                                                start_min: int, target: float, reserve: float, efficiency: float,
                                                module_efficiency: float, peak: float, leveling: float) -> None:
    """Whatever the plan decides for its first step - ration, carry fully, recharge, keep room, charge
    hard, hold a target - the allocation kernel given the plan's three settings does that, to TOL_KW."""
    ahead = kind.endswith("ahead")  # then the window has the station to itself: no vehicle, no arrival
    cfg = small_station(cap_kw=cap, reserve_soc=reserve, efficiency=efficiency, module_efficiency=module_efficiency,
                        profile=[0.0 if ahead else peak] * 24, horizon_s=1800.0, leveling=leveling)
    start = 0.0 if kind == "window now" else start_min * 60.0
    signed = -target if kind == "export ahead" else target if kind == "absorb ahead" else target - 160.0
    schedule = [] if kind == "none" else [Window(start, start + 1800.0, import_limit_kw=cap, export_limit_kw=300.0,
                                                 target_kw=signed)]
    now = kind == "window now"
    leave = start if ahead else 3600.0
    sessions = [(g, kw, 1000.0, leave) for g, kw in enumerate(demands) if kw > 0]
    obs = observe(cfg, soc=soc, sessions=sessions, target_kw=signed if now else math.nan)
    obs.export_cap_kw = 300.0 if now else cfg.dispatch.fallback_export_limit_kw
    plan = Planner(cfg).plan(obs, schedule)
    assert kernel_now(cfg, obs, plan) == pytest.approx(plan.bess_kw[0], abs=TOL_KW + 1e-6)
