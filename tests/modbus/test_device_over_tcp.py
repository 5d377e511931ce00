"""Our Modbus driver against our device simulators over real TCP: reconnection with the setpoints
re-applied before the device counts as healthy, a silent and a corrupting device, plant faults with the
map's attribution. Time for health and ages is the injected clock; the only real waits are the driver's
own request timeouts (0.2 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.modbus.device import DeviceConfig, ModbusDevice
from drivers.modbus.errors import DeviceException, DeviceTimeout
from drivers.modbus.health import Health, HealthPolicy
from drivers.modbus.link import TcpEndpoint
from drivers.modbus.regmap import load_map
from hil.devices.cabinet import ModuleCabinetSim
from hil.plant.modules import ModuleFault
from tests.conftest import ManualClock as Clock

DEVICES = Path(__file__).resolve().parents[2] / "config" / "devices"
UNIT = 4


def cabinet(port: int = 0) -> ModuleCabinetSim:
    sim = ModuleCabinetSim(load_map(DEVICES / "dc-module-40kw.yaml"), count=2, first_unit=UNIT, load_voltage_v=600.0)
    sim.start(port=port)
    return sim


def device(port: int, clock: Clock) -> ModbusDevice:
    cfg = DeviceConfig("module-4", TcpEndpoint("127.0.0.1", port), device_id=UNIT, timeout_s=0.2,
                       health=HealthPolicy(degraded_after=1, lost_after_s=1.0), backoff_min_s=0.5, backoff_max_s=2.0)
    return ModbusDevice(cfg, load_map(DEVICES / "dc-module-40kw.yaml"), clock=clock, rng=lambda: 0.5)


async def test_reconnect_re_applies_the_last_setpoints_before_the_device_is_healthy_again() -> None:
    clock = Clock()
    sim = cabinet()
    port = sim.port
    dev = device(port, clock)
    try:
        await dev.write("voltage_setpoint", 720.0)
        await dev.write("current_limit", 55.5)
        await dev.write("output_enable", 1)
        assert sim.module(UNIT).current_setpoint_a == pytest.approx(55.5) and sim.module(UNIT).enabled
        assert (await dev.poll("fast")).error is None and dev.health.state is Health.OK

        sim.stop()  # the device goes away (power cycle): its next incarnation knows nothing of our commands
        clock.t += 0.1
        assert (await dev.poll("fast")).error is not None
        assert dev.health.state is Health.LOST  # the connection itself failed: lost at once
        sim = cabinet(port)
        assert sim.last_written("current_limit", unit=UNIT) is None and not sim.module(UNIT).enabled

        still_backing_off = await dev.poll("fast")
        assert still_backing_off.error is not None and "backoff" in str(still_backing_off.error)
        assert sim.last_written("current_limit", unit=UNIT) is None  # nothing sent before the backoff ends
        clock.t += 2.0
        assert (await dev.poll("fast")).error is None
        assert sim.last_written("voltage_setpoint", unit=UNIT) == pytest.approx(720.0)
        assert sim.last_written("current_limit", unit=UNIT) == pytest.approx(55.5)
        assert sim.module(UNIT).enabled and sim.module(UNIT).current_setpoint_a == pytest.approx(55.5)
        events = [e for _, e, _ in dev.journal]
        assert events.index("reapplied", events.index("connected", 1)) < len(events) - 1
        last_ok = max(i for i, (_, e, d) in enumerate(dev.journal) if e == "health" and d == "ok")
        last_reapply = max(i for i, (_, e, _) in enumerate(dev.journal) if e == "reapplied")
        assert last_reapply < last_ok  # re-applied first, healthy after
        assert dev.health.state is Health.OK and dev.restores == 2
    finally:
        await dev.close()
        sim.stop()


async def test_silent_device_degrades_then_is_lost_with_aged_values_and_comes_back() -> None:
    clock = Clock()
    sim = cabinet()
    dev = device(sim.port, clock)
    try:
        assert (await dev.poll("fast")).error is None
        before = dev.reading("measured_voltage")
        sim.knobs(UNIT).silent = True
        clock.t += 0.1
        assert (await dev.poll("fast")).error is not None
        assert dev.health.state is Health.DEGRADED
        clock.t += 1.0
        await dev.poll("fast")
        snap = dev.snapshot()
        assert snap.health is Health.LOST and "measured_voltage" in snap.stale
        assert snap.readings["measured_voltage"] == before  # last good value kept, with its time
        assert snap.readings["measured_voltage"].age_s(clock()) == pytest.approx(1.1)
        sim.knobs(UNIT).silent = False
        clock.t += 3.0
        assert (await dev.poll("fast")).error is None
        assert dev.health.state is Health.OK and "measured_voltage" not in dev.snapshot().stale
    finally:
        await dev.close()
        sim.stop()


async def test_corrupt_answers_and_exceptions_are_clear_errors_and_plant_faults_carry_the_maps_attribution() -> None:
    clock = Clock()
    sim = cabinet()
    dev = device(sim.port, clock)
    try:
        sim.knobs(UNIT).corrupt = True
        result = await dev.poll("fast")
        assert result.error is not None and result.values == {}
        # pymodbus drops a frame that is not Modbus/TCP (bad protocol id) and waits on: a timeout, not garbage
        assert isinstance(result.error, DeviceTimeout) and "module-4" in str(result.error)
        # ... and it closes the connection under it, which the driver counts as lost at once
        assert dev.health.state is Health.LOST and not dev.link.connected
        assert dev.reading("measured_voltage") is None  # nothing from a garbled exchange is stored
        sim.knobs(UNIT).corrupt = False
        clock.t += 2.0
        assert (await dev.poll("fast")).error is None

        sim.set_exception("power_limit", 2, unit=UNIT)  # ILLEGAL DATA ADDRESS: a map/device mismatch
        with pytest.raises(DeviceException) as info:
            await dev.write("power_limit", 20000)
        assert info.value.name == "ILLEGAL DATA ADDRESS" and info.value.points == ("power_limit",)
        assert dev.health.state is Health.OK  # the device answered: the link is fine
        sim.set_exception("current_limit", 4, unit=UNIT)  # SERVER DEVICE FAILURE: the device itself is unwell
        with pytest.raises(DeviceException) as info:
            await dev.write("current_limit", 10.0)
        assert info.value.name == "SERVER DEVICE FAILURE" and "current_limit" in str(info.value)
        assert dev.health.state is Health.DEGRADED  # counts against its health (codes 4, 10, 11)
        assert dev.commanded["current_limit"] == 10.0  # still commanded: goes out again on the next restore

        sim.inject_fault(UNIT, ModuleFault.OUTPUT_OVER_CURRENT | ModuleFault.FAN_FAILURE)
        assert (await dev.poll("fast")).error is None
        assert {(f.device, f.code, f.party, f.reaction) for f in dev.faults()} == {
            ("module-4", "output_over_current", "vehicle", "stop_gun"),
            ("module-4", "fan_failure", "charger_hardware", "derate")}
    finally:
        await dev.close()
        sim.stop()
