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
from station.plan import Planner, Window
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
    it). 100 kWh battery at 50 %, reserve 10 %: 40 kWh to give, 100 kW at most, no losses.

    By hand - myopic kernel: carries the 30 kW now (30 kWh), has 10 kWh left for the peak: 100 kW for
    6 minutes, then the peak goes 150 kW short; 140 kWh unserved in all, worst minute 150 kW short.
    Planned: nothing now (30 kW short), all 40 kWh spread over the peak (40 kW): 110 kW short all hour;
    the same 140 kWh unserved, but the worst minute 110 kW short instead of 150."""
    cfg = small_station(profile=profile(130.0, 250.0))
    demand = minutes((130.0, 60), (250.0, 60))
    myopic = run(cfg, demand, [], 0.5, planned=False)
    planned = run(cfg, demand, [], 0.5, planned=True)

    assert math.isclose(myopic.soc[60], 0.2, abs_tol=1e-9)  # 30 kWh spent before the peak
    assert math.isclose(max(myopic.unserved_kw), 150.0, abs_tol=1e-6)
    assert math.isclose(myopic.kwh(myopic.unserved_kw), 140.0, abs_tol=1e-6)

    assert math.isclose(planned.soc[60], 0.5, abs_tol=0.005)  # the 40 kWh are all still there at the peak
    assert max(planned.bess_kw[:60]) < 0.5
    assert np.mean(planned.bess_kw[60:]) == pytest.approx(40.0, abs=1.0)
    assert max(planned.unserved_kw) < 112.5  # 110 by hand; the SoC grid ripples the discharge by ~2 kW
    assert math.isclose(planned.kwh(planned.unserved_kw), 140.0, abs_tol=0.5)
    assert min(planned.soc) >= 0.1 - 1e-9  # the reserve is never touched


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
