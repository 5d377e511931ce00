"""Every point type and scaling through our driver over real TCP, on our simulator server:

* a test map (``maps/every-type.yaml``) with one point of each type, table, word order and scale kind
  (none, fixed, SunSpec ``_SF`` register) — read back exactly, written and verified;
* every readable point of each shipped map (module cabinet, SunSpec BESS, grid meter) against its own
  simulator;
* a write the device silently does not take -> ``ReadBackMismatch``; a write it takes -> no error;
* a device that answers late: within the timeout it is fine, beyond it a ``DeviceTimeout`` and the
  late answer is never taken for the next request's.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.device import DeviceConfig, ModbusDevice
from drivers.modbus.errors import DeviceTimeout, ReadBackMismatch
from drivers.modbus.health import Health, HealthPolicy
from drivers.modbus.link import TcpEndpoint
from drivers.modbus.regmap import Point, RegisterMap, load_map
from hil.devices.base import DeviceSim
from hil.devices.bess import BessSim
from hil.devices.cabinet import ModuleCabinetSim
from hil.devices.meter import MeterSim
from hil.plant.bess import BessRating
from hil.plant.meter import MeterRating
from tests.conftest import ManualClock as Clock

HERE = Path(__file__).resolve().parent
DEVICES = HERE.parents[1] / "config" / "devices"
EVERY = load_map(HERE / "maps" / "every-type.yaml")


class StaticSim(DeviceSim):
    """A device without physics: it holds what was forced or written (for the test map)."""

    def _advance(self, dt_s: float) -> None:
        pass

    def _refresh(self) -> None:
        pass


def device(sim: DeviceSim, regmap: RegisterMap, unit: int, timeout_s: float = 0.2) -> ModbusDevice:
    cfg = DeviceConfig(f"dev-{unit}", TcpEndpoint("127.0.0.1", sim.port), device_id=unit, timeout_s=timeout_s,
                       health=HealthPolicy(degraded_after=1, lost_after_s=5.0))
    return ModbusDevice(cfg, regmap, clock=Clock(), rng=lambda: 0.5)


EveryType = tuple[StaticSim, ModbusDevice]


@pytest.fixture
async def every_type() -> AsyncIterator[EveryType]:
    """The test map served by a :class:`StaticSim` on unit 3, and our driver connected to it (0.2 s timeout)."""
    sim = StaticSim(EVERY, [3]).start()
    dev = device(sim, EVERY, 3, timeout_s=0.2)
    yield sim, dev
    await dev.close()
    sim.stop()


VALUES: dict[str, Any] = {
    "u16_plain": 65534, "u16_scaled": 655.34, "s16_scaled": -3276.7, "u32_big": 4_000_000_000,
    "u32_little": 123_456_780, "s32_big": -2_000_000.123, "s32_little": -2_147_483_647, "f32_big": 49.98,
    "f32_little": -1.5e-3, "text": "HIL-42", "power_sf": -2, "sf_scaled": -123.45,
    "status": 0b1001, "alarms": (1 << 20) | 1, "input_s16": -40.5, "enable": True, "door_open": True,
}


def close_to(point: Point, got: Any, want: Any) -> bool:
    if isinstance(want, float) and point.type == "f32":
        return math.isclose(got, want, rel_tol=1e-6)
    if isinstance(want, float):
        return math.isclose(got, want, abs_tol=1e-9 + 1e-9 * abs(want))
    return bool(got == want)


async def test_every_type_table_word_order_and_scaling_reads_back_exactly(every_type: EveryType) -> None:
    sim, dev = every_type
    assert {p.type for p in EVERY.points.values()} == {"u16", "s16", "u32", "s32", "f32", "string", "bits16",
                                                       "bits32", "bool"}
    assert set(VALUES) == set(EVERY.points)
    sim.force("power_sf", VALUES["power_sf"])  # the scale factor first: sf_scaled is encoded with it
    for name, value in VALUES.items():
        sim.force(name, value)
    result = await dev.poll("all")
    assert result.error is None, result.error
    wrong = {n: (result.values[n], v) for n, v in VALUES.items()
             if result.values[n] is None or not close_to(EVERY.point(n), result.values[n], v)}
    assert wrong == {}
    assert {b.name for b in EVERY.point("alarms").active_bits(result.values["alarms"])} == {"low", "grid_lost"}
    assert {(f.code, f.party) for f in dev.faults()} == {("hot", "charger_hardware"), ("grid_lost", "grid_link")}
    assert len(dev.plan("all")) == 4  # one batched read per table


async def test_every_writable_type_is_written_verified_and_reaches_the_device(every_type: EveryType) -> None:
    sim, dev = every_type
    writable = [p for p in EVERY.points.values() if p.writable and p.name != "power_sf"]
    sim.force("power_sf", -2)
    for p in writable:
        want = {"u16_plain": 1234, "text": "OK", "enable": True}.get(p.name, VALUES[p.name])
        await dev.write(p.name, want)  # verify: true on each, so a mismatch would raise
        assert close_to(p, sim.value(p.name, 3), want), (p.name, sim.value(p.name, 3), want)
        assert dev.commanded[p.name] == want


async def test_a_write_the_device_does_not_take_is_a_read_back_mismatch(every_type: EveryType) -> None:
    sim, dev = every_type
    await dev.write("s16_scaled", 12.5)  # taken: no error
    sim.force("s16_scaled", 12.5)  # from now on the device keeps 12.5 whatever is written (a locked setpoint)
    with pytest.raises(ReadBackMismatch) as info:
        await dev.write("s16_scaled", -7.0)
    assert (info.value.point, info.value.written) == ("s16_scaled", -7.0)
    assert "wrote -7.0, read back 12.5" in str(info.value) and "dev-3" in str(info.value)
    assert dev.health.state is Health.OK  # the device answered both exchanges: a command problem, not a link one


async def test_a_late_device_within_the_timeout_is_fine_beyond_it_times_out_and_its_stale_answer_is_dropped(
        every_type: EveryType) -> None:
    sim, dev = every_type
    sim.force("u16_plain", 1)
    sim.knobs(3).delay_s = 0.05
    assert (await dev.read(["u16_plain"]))["u16_plain"] == 1
    sim.knobs(3).delay_s = 0.25  # beyond the 0.2 s timeout: its answer comes 50 ms after we gave up
    with pytest.raises(DeviceTimeout, match="no answer within 200 ms"):
        await dev.read(["u16_plain"])
    sim.force("u16_plain", 2)
    sim.knobs(3).delay_s = 0.1
    # sent at ~0.2 s, answered at ~0.3 s: the stale answer (value 1) arrives at ~0.25 s while this request
    # waits, and must not be taken for this one's
    assert (await dev.read(["u16_plain"]))["u16_plain"] == 2
    sim.force("u16_plain", 3)
    sim.knobs(3).delay_s = 0.0
    assert (await dev.read(["u16_plain"]))["u16_plain"] == 3  # nothing left over on the connection


def readable_values(sim: DeviceSim, unit: int) -> dict[str, Any]:
    return {n: sim.value(n, unit) for n, p in sim.regmap.points.items() if p.readable}


@pytest.mark.parametrize("kind", ["cabinet", "bess", "meter"])
async def test_every_point_of_the_shipped_maps_reads_what_the_simulator_holds(kind: str) -> None:
    if kind == "cabinet":
        regmap = load_map(DEVICES / "dc-module-40kw.yaml")
        sim: DeviceSim = ModuleCabinetSim(regmap, count=1, first_unit=5, load_voltage_v=600.0)
        unit = 5
    elif kind == "bess":
        regmap = load_map(DEVICES / "bess-sunspec.yaml")
        sim = BessSim(regmap, BessRating(capacity_kwh=500, max_charge_kw=250, max_discharge_kw=250), initial_soc=0.6)
        unit = sim.units[0]
    else:
        regmap = load_map(DEVICES / "grid-meter.yaml")
        sim = MeterSim(regmap, MeterRating(delay_s=0.0, noise_kw=0.0), base_load_kw=50.0)
        unit = sim.units[0]
    sim.start()
    dev = device(sim, regmap, unit)
    try:
        sim.step(1.0)
        want = readable_values(sim, unit)
        got = await dev.read(list(want))
        assert set(got) == set(want)
        wrong = {n: (got[n], v) for n, v in want.items() if not (got[n] == v or (
            isinstance(v, float) and isinstance(got[n], float) and math.isclose(got[n], v, rel_tol=1e-9)))}
        assert wrong == {}
        scaled = [n for n, p in regmap.points.items() if p.readable and isinstance(p.scale, str)]
        fixed = [n for n, p in regmap.points.items() if p.readable and isinstance(p.scale, int) and p.scale]
        assert scaled or fixed  # every shipped map has scaled points; they came back physical, as above
    finally:
        await dev.close()
        sim.stop()
