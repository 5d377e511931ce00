"""The peers' baselines on small observations whose decisions are computed by hand (pure logic, no I/O).

Three guns on one cabinet, efficiency 1 and no cap margin unless a test says otherwise, so the budget is
the cap and a gun's AC draw is its DC power.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.baselines import POLICIES, EqualShare, LeastLaxityFirst, PriorityShare, Uncontrolled
from hil.baselines.priority_share import PidFilter
from hil.baselines.common import StationArrays, water_fill
from station.config import StationConfig
from station.control.decide import with_margin
from station.control.observation import Observation
from tests.baselines.stations import gun, station


def three_guns(**kw: object) -> StationConfig:
    return station([gun("G1", priority=1), gun("G2"), gun("G3")], **kw)  # type: ignore[arg-type]


def observe(cfg: StationConfig, *, t: float = 0.0, connected=(True, True, True), demand=(0.0, 0.0, 0.0),
            vmax=(400.0, 400.0, 400.0), cap: float = 300.0, grid: float = math.nan, measured=(0.0, 0.0, 0.0),
            dt: float = 1.0) -> Observation:
    obs = Observation.for_station(cfg)
    obs.t_s, obs.dt_s = t, dt
    obs.connected[:] = connected
    obs.demand_kw[:] = demand
    obs.vehicle_max_kw[:] = vmax
    obs.measured_kw[:] = measured
    obs.import_cap_kw = cap
    obs.grid_measured_kw = grid
    obs.aux_load_kw = cfg.grid.aux_load_kw
    if cfg.bess is not None:
        b = cfg.bess
        obs.bess_available, obs.bess_soc = True, b.initial_soc
        obs.bess_max_charge_kw, obs.bess_max_discharge_kw = b.max_charge_kw, b.max_discharge_kw
    return obs


def test_registry_names_the_four_peers_and_each_is_a_policy() -> None:
    cfg = three_guns()
    assert set(POLICIES) == {"equal-share", "priority-share", "llf", "uncontrolled"}
    for name, cls in POLICIES.items():
        pol = cls(cfg)
        assert pol.name == name
        d = pol.decide(observe(cfg, demand=(10.0, 20.0, 30.0)))
        assert d.module_gun is None  # the simulator's module layer switches modules for them
        assert d.gun_kw.shape == (3,)


def test_water_fill_gives_what_a_capped_share_leaves_to_the_others() -> None:
    np.testing.assert_allclose(water_fill(300.0, np.array([50.0, 300.0, 300.0])), [50.0, 125.0, 125.0])
    np.testing.assert_allclose(water_fill(1000.0, np.array([50.0, 300.0])), [50.0, 300.0])
    np.testing.assert_allclose(water_fill(0.0, np.array([50.0, 300.0])), [0.0, 0.0])
    np.testing.assert_allclose(water_fill(90.0, np.array([0.0, 100.0, 100.0])), [0.0, 45.0, 45.0])


# ---- EVerest: equal share every 1 s, limits not demand, no battery --------------------------------------------


def test_equal_share_splits_the_cap_by_limits_and_leaves_unused_power_unused() -> None:
    cfg = three_guns()
    pol = EqualShare(cfg)
    # leaf limits: G1 vehicle max 50, G2 and G3 the gun's 300 -> shares 50, 125, 125; G3 asks only 100
    d = pol.decide(observe(cfg, demand=(50.0, 400.0, 100.0), vmax=(50.0, 400.0, 400.0)))
    np.testing.assert_allclose(d.gun_kw, [50.0, 125.0, 100.0])
    assert d.bess_kw == 0.0
    assert d.grid_kw == pytest.approx(275.0)  # 25 kW of the cap stay unused: EVerest does not redistribute


def test_equal_share_holds_its_limits_between_one_second_updates() -> None:
    cfg = three_guns()
    pol = EqualShare(cfg)
    pol.decide(observe(cfg, t=0.0, connected=(True, True, False), demand=(400.0, 400.0, 0.0)))
    # half a second later a third vehicle plugs in and G1 tapers: no update yet
    d = pol.decide(observe(cfg, t=0.5, demand=(100.0, 400.0, 400.0)))
    np.testing.assert_allclose(d.gun_kw, [100.0, 150.0, 0.0])
    d = pol.decide(observe(cfg, t=1.0, demand=(100.0, 400.0, 400.0)))  # the update: three equal shares
    np.testing.assert_allclose(d.gun_kw, [100.0, 100.0, 100.0])


def test_equal_share_budget_is_the_cap_less_margin_and_aux_in_ac_terms() -> None:
    cfg = three_guns(efficiency=0.95, margin=0.01, aux_kw=7.0)
    d = EqualShare(cfg).decide(observe(cfg, connected=(True, True, False), demand=(400.0, 400.0, 0.0)))
    share_ac = (300.0 * 0.99 - 7.0) / 2
    np.testing.assert_allclose(d.gun_kw, [share_ac * 0.95, share_ac * 0.95, 0.0])
    assert d.grid_kw == pytest.approx(300.0 * 0.99)
    # under a 100 kW dispatch cap the margin stays 1 % of the 300 kW connection: (100 - 3 - 7) / 2 each
    d = EqualShare(cfg).decide(observe(cfg, cap=100.0, connected=(True, True, False), demand=(400.0, 400.0, 0.0)))
    np.testing.assert_allclose(d.gun_kw, [45.0 * 0.95, 45.0 * 0.95, 0.0])


def closed_loop(pol: object, cfg: StationConfig, seconds: int, *, demand: tuple[float, ...],
                connected: tuple[bool, ...] = (True, True, True), volts: float = math.nan,
                cap: float = 300.0) -> list:
    """Feed a policy its own results back for ``seconds`` 1 s cycles: each gun draws what it is given, the
    meter reads the sum (plus aux, less the battery) one cycle later. Returns every decision."""
    eff = StationArrays.of(cfg).efficiency
    measured, grid = np.zeros(3), cfg.grid.aux_load_kw
    out = []
    for t in range(seconds):
        obs = observe(cfg, t=float(t), demand=demand, connected=connected, cap=cap, grid=grid,
                      measured=tuple(measured))
        obs.voltage_v[:] = volts
        d = pol.decide(obs)  # type: ignore[attr-defined]
        measured = d.gun_kw.copy()
        grid = float(np.sum(d.gun_kw / eff)) + cfg.grid.aux_load_kw - d.bess_kw
        out.append(d)
    return out


def test_gun_rating_at_the_present_voltage_limits_every_baseline() -> None:
    cfg = three_guns(cap_kw=10_000.0)
    for cls in POLICIES.values():
        # 500 A at 400 V: 200 kW, below the 300 kW rating
        decisions = closed_loop(cls(cfg), cfg, 400, demand=(400.0, 0.0, 0.0), connected=(True, False, False),
                                volts=400.0, cap=10_000.0)
        assert all(d.gun_kw[0] <= 200.0 + 1e-9 and d.gun_kw[1] == d.gun_kw[2] == 0.0 for d in decisions)
        assert decisions[-1].gun_kw[0] == pytest.approx(200.0), cls


# ---- OpenEMS: priority order, guarantee, charger pauses, peak shaving one cycle late ----------------------------


def openems_station() -> StationConfig:
    return three_guns(bess={"capacity_kwh": 400, "max_charge_kw": 200, "max_discharge_kw": 200,
                            "initial_soc": 0.5, "reserve_soc": 0.2})


def test_priority_share_cycle_by_cycle() -> None:
    cfg = openems_station()
    pol = PriorityShare(cfg)
    demand = (100.0, 400.0, 400.0)
    # t=0: everyone just plugged in -> the 4.5 kW guarantee each; the battery sees a net load of 0, below
    # the recharge level 0.9 * 300, and would charge 270 kW (200 at most); its PID takes 0.3 of the error
    d = pol.decide(observe(cfg, t=0.0, demand=demand, grid=0.0))
    np.testing.assert_allclose(d.gun_kw, [4.5, 4.5, 4.5])
    assert d.bess_kw == pytest.approx(-60.0)
    # t=1..10: the chargers take their limits (10 s pause): the cluster waits, the battery charges more.
    # t=1 by hand: net 213.5 - 60 -> setpoint -116.5; PID 0.3 * -56.5 + 0.3 * -200 - 0.1 * (-60 - 0)
    for t in range(1, 11):
        d = pol.decide(observe(cfg, t=float(t), demand=demand, grid=213.5, measured=(4.5, 4.5, 4.5)))
        np.testing.assert_allclose(d.gun_kw, [4.5, 4.5, 4.5])
        if t == 1:
            assert d.bess_kw == pytest.approx(-70.95)
    assert -200.0 < d.bess_kw < -180.0
    # t=11: power to distribute = chargers 13.5 + battery swing (200 + what it charges) + grid headroom
    # 300 - 213.5, about 490: in priority order G1, G2, G3 would get 300, 300 and the rest, but the ramp
    # filter lets each rise by at most 5 % of its 300 kW above what it draws: 4.5 + 15
    d = pol.decide(observe(cfg, t=11.0, demand=demand, grid=213.5, measured=(4.5, 4.5, 4.5)))
    np.testing.assert_allclose(d.gun_kw, [19.5, 19.5, 19.5])
    charging = d.bess_kw
    assert charging < -180.0  # it still sees a net load of ~20 kW: charges, a cycle late
    # t=12: the meter shows 400 kW over the cap. The peak shaver turns towards discharging, slowed by its
    # PID (still charging this cycle); the cluster cuts its last total by the excess at once despite the
    # pause: after the guarantees G1 may have ~80 (the filter lets it rise to 19.5 + 15), G2 and G3 keep
    # only their guarantee
    d = pol.decide(observe(cfg, t=12.0, demand=demand, grid=700.0, measured=(19.5, 19.5, 19.5)))
    assert charging < d.bess_kw < 0.0
    np.testing.assert_allclose(d.gun_kw, [34.5, 4.5, 4.5])
    # t=13: back under the cap, inside the pauses: nothing changes
    d = pol.decide(observe(cfg, t=13.0, demand=demand, grid=250.0, measured=(34.5, 4.5, 4.5)))
    np.testing.assert_allclose(d.gun_kw, [34.5, 4.5, 4.5])


def test_priority_share_settles_in_priority_order_with_the_guarantee_for_the_rest() -> None:
    cfg = three_guns()  # no battery: 300 kW to distribute in steady state
    decisions = closed_loop(PriorityShare(cfg), cfg, 600, demand=(100.0, 400.0, 400.0))
    # G1 (priority 1) takes its 100; G2 the rest but G3's reserved 4.5 kW guarantee
    np.testing.assert_allclose(decisions[-1].gun_kw, [100.0, 195.5, 4.5], atol=1e-6)
    rises = np.diff(np.array([d.gun_kw for d in decisions]), axis=0)
    assert rises.max() <= 15.0 + 1e-9  # the ramp filter: 5 % of 300 kW per write
    # it gets there slowly: each write waits out the chargers' 10 s pause
    first = next(k for k, d in enumerate(decisions) if abs(d.gun_kw[1] - 195.5) < 1e-6)
    assert first > 100


def test_priority_share_guarantee_only_while_it_fits_and_unplugged_gets_nothing() -> None:
    cfg = three_guns(cap_kw=8.0)  # no battery: 8 kW fit one guarantee, not two
    pol = PriorityShare(cfg)
    d = pol.decide(observe(cfg, cap=8.0, grid=0.0, demand=(50.0, 50.0, 0.0), connected=(True, True, False)))
    np.testing.assert_allclose(d.gun_kw, [4.5, 0.0, 0.0])
    assert d.bess_kw == 0.0


def test_priority_share_decides_once_per_cycle() -> None:
    cfg = openems_station()
    pol = PriorityShare(cfg)
    pol.decide(observe(cfg, t=0.0, demand=(100.0, 0.0, 0.0), connected=(True, False, False), grid=0.0, dt=0.5))
    d = pol.decide(observe(cfg, t=0.5, demand=(100.0, 0.0, 0.0), connected=(True, False, False), grid=500.0,
                           dt=0.5))
    assert d.bess_kw == pytest.approx(-60.0)  # the 500 kW reading arrives between cycles: not yet acted on


def test_openems_pid_filter_by_hand() -> None:
    pid = PidFilter()
    assert pid.apply(0.0, 100.0, -200.0, 200.0) == pytest.approx(30.0)  # P: 0.3 * 100
    assert pid.apply(30.0, 100.0, -200.0, 200.0) == pytest.approx(48.0)  # 0.3*70 + 0.3*100 - 0.1*30
    assert pid.apply(48.0, 100.0, -200.0, 200.0) == pytest.approx(64.8)  # 0.3*52 + 0.3*170 - 0.1*18
    # the target is clipped to the device limits first (900 -> 200): 0.3*200 + 0.3*222 - 0.1*(0 - 48)
    assert pid.apply(0.0, 900.0, -200.0, 200.0) == pytest.approx(131.4)


# ---- acnportal: least laxity first ----------------------------------------------------------------------------


def test_llf_serves_least_laxity_first_up_to_each_sessions_maximum() -> None:
    cfg = three_guns()
    obs = observe(cfg, demand=(200.0, 100.0, 300.0), vmax=(200.0, 250.0, 400.0))
    obs.departure_s[:] = [3600.0, 1800.0, math.nan]
    obs.energy_wanted_kwh[:] = [50.0, 100.0, 10.0]
    pol = LeastLaxityFirst(cfg)
    # laxity: G1 3600 - 50/300 h = 3000 s, G2 1800 - 100/300 h = 600 s, G3 unknown departure: last
    np.testing.assert_allclose(pol.laxity_s(obs), [3000.0, 600.0, math.inf])
    d = pol.decide(obs)
    # G2 is given its maximum 250 (it draws 100: acnportal does not see the taper), G1 the 50 left, G3 none
    np.testing.assert_allclose(d.gun_kw, [50.0, 100.0, 0.0])
    assert d.bess_kw == 0.0


def test_llf_never_gives_more_than_the_energy_still_wanted_in_one_period() -> None:
    cfg = three_guns()
    obs = observe(cfg, demand=(200.0, 0.0, 0.0), connected=(True, False, False), dt=1.0)
    obs.departure_s[0] = 600.0
    obs.energy_wanted_kwh[0] = 0.01  # 36 kW for one second
    d = LeastLaxityFirst(cfg).decide(obs)
    np.testing.assert_allclose(d.gun_kw, [36.0, 0.0, 0.0])


# ---- uncontrolled ----------------------------------------------------------------------------------------------


def test_uncontrolled_gives_every_vehicle_its_demand_and_ignores_the_cap() -> None:
    cfg = three_guns()
    d = Uncontrolled(cfg).decide(observe(cfg, demand=(250.0, 350.0, 100.0), vmax=(400.0, 400.0, 80.0),
                                         connected=(True, True, True)))
    np.testing.assert_allclose(d.gun_kw, [250.0, 300.0, 80.0])  # gun rating 300, vehicle max 80
    assert d.grid_kw == pytest.approx(630.0) and d.grid_kw > 300.0
    d = Uncontrolled(cfg).decide(observe(cfg, demand=(250.0, 350.0, 100.0), connected=(False, True, False)))
    np.testing.assert_allclose(d.gun_kw, [0.0, 300.0, 0.0])


@pytest.mark.parametrize("name", ["equal-share", "priority-share", "llf"])
def test_capped_baselines_never_exceed_demand_or_the_budget_on_random_observations(name: str) -> None:
    cfg = three_guns(efficiency=0.95, aux_kw=5.0, margin=0.005)
    rng = np.random.default_rng(7)
    pol = POLICIES[name](cfg)
    for k in range(300):
        obs = observe(cfg, t=float(k), connected=tuple(rng.random(3) < 0.8), demand=tuple(rng.uniform(0, 400, 3)),
                      vmax=tuple(rng.uniform(20, 500, 3)), cap=float(rng.uniform(50, 600)), grid=0.0)
        obs.departure_s[:] = rng.uniform(k, k + 7200, 3)
        obs.energy_wanted_kwh[:] = rng.uniform(0, 80, 3)
        d = pol.decide(obs)
        assert np.all(d.gun_kw <= np.where(obs.connected, obs.demand_kw, 0.0) + 1e-9)
        assert np.all(d.gun_kw >= 0.0)
        if name != "priority-share":  # OpenEMS acts on the meter: it may overshoot a cap that just fell
            assert d.grid_kw <= with_margin(cfg, obs.import_cap_kw) + 1e-6
