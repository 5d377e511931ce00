"""What the planner sees: the forecast from sessions, the arrival profile and dispatch windows (by hand),
re-plan timing, neutral plans without a battery, determinism, and the station file's planner keys."""

from __future__ import annotations

import math

import numpy as np
import pytest

from station.config import validate_config
from station.plan import Planner, Window
from station.plan.forecast import grid_limits, profile_demand, session_demand
from tests.plan.stations import observe, small_station


def test_sessions_draw_what_they_ask_until_done_or_gone() -> None:
    """Steps of 10 minutes from t = 1000 s, modules 90 % efficient (grid side = gun side / 0.9).

    Gun 0 asks 120 kW but its BCP allows 100: 100 kW; it wants 50 kWh: 30 minutes, 3 full steps.
    Gun 1 asks 60 kW, energy unknown, leaves at t = 1900 s: 900 s, one and a half steps."""
    cfg = small_station(module_efficiency=0.9)
    obs = observe(cfg, t_s=1000.0, sessions=[(0, 120.0, 50.0, 9000.0), (1, 60.0, math.nan, 1900.0)])
    obs.vehicle_max_kw[0] = 100.0
    eff = np.array([0.9, 0.9])
    got = session_demand(obs, np.array([300.0, 300.0]), eff, 5, 600.0, 1800.0)
    assert got == pytest.approx([(100 + 60) / 0.9, (100 + 30) / 0.9, 100 / 0.9, 0.0, 0.0])


def test_a_session_with_nothing_known_lasts_unknown_session_s_and_unplugged_guns_draw_nothing() -> None:
    cfg = small_station()
    obs = observe(cfg, sessions=[(0, 50.0, math.nan, math.nan)])
    obs.vehicle_max_kw[0] = math.nan  # not reported yet: the gun's rating bounds it
    obs.demand_kw[1] = 80.0  # asks, but not in the charging phase: not counted
    got = session_demand(obs, np.array([300.0, 300.0]), np.ones(2), 4, 600.0, 900.0)
    assert got == pytest.approx([50.0, 25.0, 0.0, 0.0])
    obs.demand_kw[0] = math.nan  # no demand reported: nothing forecast, never a nan in the plan
    assert session_demand(obs, np.array([300.0, 300.0]), np.ones(2), 4, 600.0, 900.0) == pytest.approx([0.0] * 4)


def test_profile_is_read_in_local_hours_from_the_start_hour() -> None:
    """Run started at 23:30 local; at t = 0 steps of 30 min have their middles at 23:45, 00:15, 00:45, 01:15."""
    hours = [float(h) for h in range(24)]
    assert profile_demand(hours, 23.5, 0.0, 4, 1800.0) == pytest.approx([23.0, 0.0, 0.0, 1.0])
    assert profile_demand(hours, 23.5, 7200.0, 2, 1800.0) == pytest.approx([1.0, 2.0])


def test_grid_limits_from_obs_now_and_windows_later() -> None:
    """Cap 100 kW, export 200, a margin of 1 % of the cap (1 kW); steps of 10 min from t = 600 s.

    Now (step 0) the observation: a lease of 80 kW. Window A [1200, 3000) caps import at 60; window B
    [2400, 3300) starts later and wins where they overlap: target -150 (export, within 180 - 1).
    A window touching a step at all sets the step (ready early rather than late)."""
    cfg = small_station(cap_margin_fraction=0.01)
    obs = observe(cfg, t_s=600.0, import_cap_kw=80.0)
    windows = [Window(2400.0, 3300.0, 500.0, 180.0, -150.0), Window(1200.0, 3000.0, 60.0, 0.0)]
    limit, hold = grid_limits(cfg, obs, windows, 6, 600.0)
    # steps start at 600, 1200, 1800, 2400, 3000, 3600
    assert limit == pytest.approx([79.0, 59.0, 59.0, -150.0, -150.0, 99.0])
    assert hold.tolist() == [False, False, False, True, True, False]
    # a target beyond the export limit is clamped to it, and a cap under the auxiliary load is held
    limit, hold = grid_limits(cfg, obs, [Window(1200.0, 1800.0, 100.0, 50.0, -400.0)], 3, 600.0)
    assert limit[1] == pytest.approx(-49.0) and hold[1]
    obs.aux_load_kw = 70.0
    limit, hold = grid_limits(cfg, obs, [Window(1200.0, 1800.0, 50.0, 0.0)], 3, 600.0)
    assert hold.tolist() == [False, True, False] and limit[1] == pytest.approx(49.0)


def test_forecast_takes_the_larger_of_sessions_and_profile_after_now() -> None:
    cfg = small_station(profile=[40.0] * 24, horizon_s=1800.0, step_s=600.0)
    planner = Planner(cfg)
    obs = observe(cfg, sessions=[(0, 100.0, math.nan, 900.0)])
    demand, limit, hold = planner.forecast(obs, [])
    assert demand == pytest.approx([100.0, 50.0, 40.0])  # now: sessions only; later: max(sessions, profile)
    assert limit == pytest.approx([100.0] * 3) and not hold.any()


def test_due_every_period_and_after_time_runs_backwards() -> None:
    cfg = small_station(period_s=30.0)
    planner = Planner(cfg)
    assert planner.due(0.0)
    planner.plan(observe(cfg, t_s=0.0), [])
    assert not planner.due(29.9)
    assert planner.due(30.0)
    planner.plan(observe(cfg, t_s=30.0), [])
    assert planner.due(5.0)  # a new run on the same planner


def test_no_battery_gives_a_plan_the_kernel_ignores() -> None:
    cfg = small_station()
    obs = observe(cfg)
    obs.bess_available = False
    plan = Planner(cfg).plan(obs, [])
    assert math.isnan(plan.soc_target) and math.isnan(plan.support_max_kw) and plan.charge_min_kw == 0.0
    assert len(plan.bess_kw) == 120 and np.all(plan.bess_kw == 0.0) and np.all(np.isnan(plan.soc))


def test_replanning_is_deterministic() -> None:
    cfg = small_station(profile=[0.0, 250.0] + [60.0] * 22)
    obs = observe(cfg, t_s=120.0, soc=0.42, sessions=[(0, 130.0, 80.0, 4000.0), (1, 90.0, math.nan, 3000.0)])
    windows = [Window(2400.0, 3600.0, 100.0, 200.0, -80.0)]
    first = Planner(cfg).plan(obs, windows)
    again = Planner(cfg).plan(obs, windows)
    same_planner = Planner(cfg)
    same_planner.plan(obs, windows)
    third = same_planner.plan(obs, windows)
    for other in (again, third):
        assert np.array_equal(first.bess_kw, other.bess_kw) and np.array_equal(first.soc, other.soc)
        assert (first.soc_target, first.charge_min_kw) == (other.soc_target, other.charge_min_kw)
        assert first.support_max_kw == other.support_max_kw or (
            math.isnan(first.support_max_kw) and math.isnan(other.support_max_kw))


def test_planner_keys_are_validated_with_their_path() -> None:
    data = small_station().model_dump(mode="json")
    data["control"]["planner"] = {"step_s": 60.0, "horizon_s": 90.0, "arrival_profile_kw": [1.0] * 23,
                                  "soc_levels": 5, "period_s": 0.0, "typo": 1}
    _, issues = validate_config(data)
    errors = sorted(str(i) for i in issues)
    assert errors == [
        "control.planner.arrival_profile_kw: must have at least 24 item(s)",
        "control.planner.horizon_s: must be at least two planner steps (2 x step_s)",
        "control.planner.period_s: must be > 0",
        "control.planner.soc_levels: must be >= 11",
        "control.planner.typo: unknown key",
    ]
    data["control"]["planner"] = {"arrival_profile_kw": [0.0] * 12 + [-5.0] + [0.0] * 11}
    _, issues = validate_config(data)
    assert [str(i) for i in issues] == ["control.planner.arrival_profile_kw[12]: must be >= 0"]
