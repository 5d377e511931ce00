"""RTU over a serial line, through the same register maps: socat pty pair, pymodbus RTU server on one end
(SimDevice datastore filled from the map by the codec), our driver on the other."""

from __future__ import annotations

import asyncio
import os
import re
import select
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus import codec
from drivers.modbus.device import DeviceConfig, ModbusDevice
from drivers.modbus.errors import DeviceException
from drivers.modbus.health import Health, HealthPolicy
from drivers.modbus.link import SerialEndpoint
from drivers.modbus.regmap import RegisterMap, load_map
from tests.conftest import REPO, ManualClock as Clock

UNIT = 7
BAUD = 115200


@pytest.fixture
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals from socat (the 'cable'); killed after the test."""
    proc = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    out = b""
    deadline = time.monotonic() + 10
    while len(ptys := re.findall(rb"PTY is (\S+)", out)) < 2 or b"starting data transfer" not in out:
        left = deadline - time.monotonic()
        assert left > 0 and proc.poll() is None, f"socat did not report two ptys: {out!r}"
        if select.select([proc.stderr], [], [], left)[0]:
            out += os.read(proc.stderr.fileno(), 4096)
    ptys = [p.decode() for p in ptys]
    try:
        yield ptys[0], ptys[1]
    finally:
        proc.terminate()
        proc.wait(5)


@dataclass
class Module:
    regmap: RegisterMap
    device: SimDevice


def module_device(regmap: RegisterMap, values: dict[str, object], device_id: int = UNIT) -> SimDevice:
    """A SimDevice whose registers hold ``values`` encoded by the codec (input table only up to 9, so the
    string at input 16 is an ILLEGAL DATA ADDRESS)."""
    holding = [0] * 10
    inputs = [0] * 10
    for name, value in values.items():
        p = regmap.point(name)
        words = codec.encode(regmap, p, value)
        table = holding if p.table == "holding" else inputs
        table[p.address:p.address + len(words)] = words
    return SimDevice(id=device_id, simdata=(
        [SimData(0, count=8, values=False, datatype=DataType.BITS)],
        [SimData(0, count=8, values=False, datatype=DataType.BITS)],
        [SimData(0, values=holding, datatype=DataType.REGISTERS)],
        [SimData(0, values=inputs, datatype=DataType.REGISTERS)],
    ))


@pytest.fixture
def regmap() -> RegisterMap:
    return load_map(REPO / "config/devices/dc-module-40kw.yaml")


@pytest.fixture
async def server(pty_pair: tuple[str, str], regmap: RegisterMap) -> AsyncIterator[ModbusSerialServer]:
    measured = {"measured_voltage": 812.3, "measured_current": -45.6, "measured_power": -37040,
                "fault_word": 0b10001, "status_word": 0b11, "temperature": 41.5, "dc_energy_out": 123456789}
    srv = ModbusSerialServer(module_device(regmap, measured), port=pty_pair[0], baudrate=BAUD)
    await srv.serve_forever(background=True)
    yield srv
    await srv.shutdown()


async def test_rtu_poll_write_verify_exception_and_loss(server: ModbusSerialServer, pty_pair: tuple[str, str],
                                                        regmap: RegisterMap) -> None:
    clock = Clock()
    dev = ModbusDevice(DeviceConfig("dc-rtu", SerialEndpoint(pty_pair[1], baudrate=BAUD), device_id=UNIT,
                                    timeout_s=0.2, health=HealthPolicy(lost_after_s=1.0)), regmap, clock=clock)
    try:
        fast = await dev.poll("fast")
        assert fast.error is None
        assert fast.values == {"measured_voltage": pytest.approx(812.3), "measured_current": pytest.approx(-45.6),
                               "measured_power": -37040, "fault_word": 0b10001, "status_word": 0b11}
        assert dev.health.state is Health.OK
        assert {(f.code, f.party, f.reaction) for f in dev.faults()} == {
            ("over_temperature", "charger_hardware", "derate"), ("input_phase_loss", "charger_hardware", "stop_station")}
        slow = await dev.poll("slow")
        assert slow.values["dc_energy_out"] == 123456789  # u32, low word first, over RTU
        assert slow.values["temperature"] == pytest.approx(41.5)

        await dev.write("current_limit", -88.8)  # verified by read-back (the map says so)
        assert (await dev.read(["current_limit"]))["current_limit"] == pytest.approx(-88.8)

        with pytest.raises(DeviceException) as info:
            await dev.read(["serial_number"])
        assert info.value.name == "ILLEGAL DATA ADDRESS" and info.value.points == ("serial_number",)
        assert "dc-rtu" in str(info.value) and "serial_number" in str(info.value)
        assert dev.health.state is Health.OK  # the device answered: the line is fine

        await server.shutdown()  # the line goes quiet; the pty stays open
        clock.t += 0.1
        assert (await dev.poll("fast")).error is not None
        assert dev.health.state is Health.DEGRADED
        clock.t += 1.0
        await dev.poll("fast")
        assert dev.health.state is Health.LOST
        assert dev.reading("measured_voltage").age_s(clock()) == pytest.approx(1.1)
        assert dev.reading("measured_voltage").is_stale(clock())
    finally:
        await dev.close()


async def test_several_devices_share_one_rs485_line(pty_pair: tuple[str, str], regmap: RegisterMap) -> None:
    """Three device ids on one line: two modules that answer and a third id the server does not hold (it
    answers SERVER DEVICE FAILURE). One serial client serves all of them, concurrent polls (connecting at
    the same time) are serialised on the wire and each gets its own values, the failing device does not
    disturb the others, and the port closes with the last device."""
    from drivers.modbus import link as link_mod

    a = module_device(regmap, {"measured_voltage": 700.0, "measured_current": 12.5, "fault_word": 0})
    b = module_device(regmap, {"measured_voltage": 650.5, "measured_current": -30.0, "fault_word": 0b1}, UNIT + 1)
    srv = ModbusSerialServer([a, b], port=pty_pair[0], baudrate=BAUD, ignore_missing_devices=True)
    await srv.serve_forever(background=True)
    clock = Clock()
    line = SerialEndpoint(pty_pair[1], baudrate=BAUD)
    devs = [ModbusDevice(DeviceConfig(f"dc-{uid}", line, device_id=uid, timeout_s=0.2,
                                      health=HealthPolicy(degraded_after=1, lost_after_s=1.0)), regmap, clock=clock)
            for uid in (UNIT, UNIT + 1, UNIT + 2)]
    try:
        results = await asyncio.gather(*(d.poll("fast") for d in devs))
        assert [r.error is None for r in results] == [True, True, False]
        assert (results[0].values["measured_voltage"], results[0].values["measured_current"]) == (
            pytest.approx(700.0), pytest.approx(12.5))
        assert (results[1].values["measured_voltage"], results[1].values["measured_current"]) == (
            pytest.approx(650.5), pytest.approx(-30.0))
        assert [f.code for f in devs[1].faults()] == ["over_temperature"] and devs[0].faults() == ()
        assert isinstance(results[2].error, DeviceException) and "dc-9" in str(results[2].error)
        # never heard from, so it stays lost and lets go of the line: the port stays open for the others
        assert [d.health.state for d in devs] == [Health.OK, Health.OK, Health.LOST]
        shared = link_mod._LINES[pty_pair[1]]
        assert shared.opened == 1 and len(shared.users) == 2 and not devs[2].link.connected

        await devs[0].write("current_limit", 42.0)  # verified by read-back on the shared line
        assert (await devs[0].read(["current_limit"]))["current_limit"] == pytest.approx(42.0)
        assert (await devs[1].read(["current_limit"]))["current_limit"] == pytest.approx(0.0)  # not b's register

        with pytest.raises(ValueError, match="same baudrate"):
            await ModbusDevice(DeviceConfig("dc-odd", SerialEndpoint(pty_pair[1], baudrate=9600), device_id=20),
                               regmap, clock=clock).link.connect()
    finally:
        for d in devs:
            await d.close()
        await srv.shutdown()
    assert pty_pair[1] not in link_mod._LINES  # closed with the last device
