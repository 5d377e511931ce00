"""kW onto SunSpec model 124 against the battery simulator over TCP: the plant takes the power asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.modbus.device import DeviceConfig, ModbusDevice
from drivers.modbus.errors import PointError
from drivers.modbus.link import TcpEndpoint
from drivers.modbus.regmap import load_map
from drivers.modbus.sunspec import command_bess_kw, power_percent
from hil.devices.bess import BessSim
from hil.plant.bess import BessRating

MAP = Path(__file__).resolve().parents[2] / "config" / "devices" / "bess-sunspec.yaml"


def test_power_percent_is_relative_to_wchamax_and_signed() -> None:
    assert power_percent(125.0, 250_000.0) == pytest.approx(50.0)
    assert power_percent(-25.0, 250_000.0) == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="WChaMax must be > 0"):
        power_percent(1.0, 0.0)


async def test_battery_takes_the_commanded_kw_both_ways_and_refuses_beyond_wchamax() -> None:
    regmap = load_map(MAP)
    sim = BessSim(regmap, BessRating(capacity_kwh=500, max_charge_kw=250, max_discharge_kw=250), initial_soc=0.6)
    sim.start()
    dev = ModbusDevice(DeviceConfig("bess", TcpEndpoint("127.0.0.1", sim.port), device_id=sim.unit), regmap)
    try:
        assert sim.commanded_kw() == 0.0
        assert await command_bess_kw(dev, 125.0) == pytest.approx(50.0)
        assert sim.commanded_kw() == pytest.approx(125.0, abs=0.05)
        await command_bess_kw(dev, -60.0)
        assert sim.commanded_kw() == pytest.approx(-60.0, abs=0.05)  # charging: the other direction bit works
        with pytest.raises(PointError, match="p_setpoint"):
            await command_bess_kw(dev, 300.0)  # 120 % of WChaMax: refused, not clamped
        assert sim.commanded_kw() == pytest.approx(-60.0, abs=0.05)  # and nothing changed
    finally:
        await dev.close()
        sim.stop()
