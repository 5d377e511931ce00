"""Plant models: energy is conserved and the physical limits hold (pure, no I/O)."""

import pytest

from hil.plant import BatteryStorage, BessRating, GridMeter, MeterRating, ModuleFault, ModuleRating, PowerModule
from hil.plant import V2GOffer, Vehicle, car, truck


def test_vehicle_energy_conservation_and_cc_cv_shape() -> None:
    v = Vehicle(car("ev1", capacity_kwh=60.0, initial_soc=0.1, target_soc=0.97))
    currents, stored0 = [], v.soc * 60.0
    while not v.full and len(currents) < 20_000:
        i = v.accepted_current_a()
        currents.append(i)
        v.step(i, 1.0)
    stored = v.soc * 60.0 - stored0
    assert v.energy_in_kwh == pytest.approx(stored + v.heat_kwh, rel=1e-9)
    assert currents[0] == pytest.approx(250.0)  # CC phase at the BMS current limit
    assert currents[-1] < 0.2 * currents[0]  # CV tail tapers
    assert max(currents[len(currents) // 2 :]) <= currents[len(currents) // 2] + 1e-9  # falls monotonically late


def test_vehicle_never_exceeds_its_max_voltage_when_fed_what_it_asks() -> None:
    v = Vehicle(truck("t1", initial_soc=0.5, target_soc=1.0))
    for _ in range(5000):
        i = v.accepted_current_a()
        assert v.terminal_voltage_v(i) <= v.spec.max_voltage_v + 1e-6
        v.step(i, 2.0)


def test_v2g_discharge_respects_offer_and_floor() -> None:
    v = Vehicle(car("ev2", initial_soc=0.52, v2g=V2GOffer(max_discharge_kw=20.0, min_soc=0.5)))
    assert v.v2g_available_kw() == 20.0
    i = v.current_for_power(-20.0)
    assert v.terminal_voltage_v(i) * i / 1000.0 == pytest.approx(-20.0, rel=1e-9)
    while v.v2g_available_kw() > 0:
        v.step(i, 10.0)
    assert v.soc <= 0.5 + 1e-3
    soc = v.soc
    v.step(i, 10.0)  # below the floor the BMS refuses to give energy
    assert v.soc == soc
    no_offer = Vehicle(car("ev3", initial_soc=0.9))
    no_offer.step(-50.0, 10.0)
    assert no_offer.soc == 0.9


def test_module_ramp_limits_and_losses() -> None:
    rating = ModuleRating(rated_kw=40.0, max_current_a=134.0, efficiency=0.96, ramp_kw_per_s=400.0)
    m = PowerModule(rating)
    m.enabled, m.current_setpoint_a = True, 500.0  # above its own limit
    m.step(0.01, 400.0)
    assert m.output_current_a <= 400.0 * 1000 / 400.0 * 0.01 + 1e-9  # ramp: 4 kW in 10 ms at 400 V
    for _ in range(200):
        m.step(0.01, 400.0)
    assert m.output_current_a == pytest.approx(100.0, rel=1e-3)  # 40 kW / 400 V
    assert m.ac_power_kw - m.dc_power_kw == pytest.approx(40.0 * (1 / 0.96 - 1), rel=1e-3)
    assert rating.efficiency_at(4.0) < rating.efficiency_at(40.0) < rating.efficiency_at(20.0)  # peak at half load
    assert rating.max_current_at(200.0) == 134.0 and rating.max_current_at(1100.0) == 0.0
    m.inject_fault(ModuleFault.OVER_TEMPERATURE)
    m.step(0.01, 400.0)
    assert m.output_current_a == 0.0 and m.dc_power_kw == 0.0


def test_bess_conserves_energy_with_efficiencies_and_derates_at_bounds() -> None:
    b = BatteryStorage(BessRating(100.0, 50.0, 50.0, soc_min=0.1, soc_max=0.9, charge_efficiency=0.95,
                                  discharge_efficiency=0.94, time_constant_s=0.001), initial_soc=0.5)
    b.setpoint_kw = 50.0
    start = b.stored_kwh()
    for _ in range(360):
        b.step(1.0)
    assert start - b.stored_kwh() == pytest.approx(b.ac_discharged_kwh / 0.94, rel=1e-6)
    b.setpoint_kw = 200.0
    for _ in range(20_000):  # the derating makes the approach to soc_min asymptotic
        b.step(1.0)
        assert b.soc >= 0.1 - 1e-12
    assert b.discharge_limit_kw() < 0.01 * 50.0 and b.charge_limit_kw() == 50.0
    b.available = False
    b.setpoint_kw = -50.0
    b.step(1.0)
    assert b.power_kw == 0.0


def test_meter_is_delayed_and_counts_true_energy() -> None:
    m = GridMeter(MeterRating(delay_s=0.5, noise_kw=0.0))
    seen = {}
    for k in range(100):
        m.observe(k * 0.1, 100.0 if k >= 50 else -20.0)
        seen[k] = m.reading(k * 0.1)
    assert seen[52] == -20.0  # the step at t=5.0 is not visible until t=5.5
    assert seen[55] == 100.0
    assert m.import_kwh == pytest.approx(100.0 * 4.9 / 3600.0)
    assert m.export_kwh == pytest.approx(20.0 * 5.0 / 3600.0)
