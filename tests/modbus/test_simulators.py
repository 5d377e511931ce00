"""Device simulators over real TCP, read with clients that are not ours: pymodbus's stock client,
pysunspec2's SunSpec client, mbpoll, and the ``station-hil device`` command as a subprocess."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from drivers.modbus.regmap import load_map
from hil.devices.bess import BessSim
from hil.devices.cabinet import ModuleCabinetSim
from hil.devices.meter import MeterSim
from hil.plant.bess import BessRating
from hil.plant.meter import MeterRating
from hil.plant.modules import ModuleFault

REPO = Path(__file__).resolve().parents[2]
DEVICES = REPO / "config" / "devices"
BESS_RATING = BessRating(capacity_kwh=500, max_charge_kw=250, max_discharge_kw=250)


def s16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def client(port: int, timeout: float = 1.0) -> ModbusTcpClient:
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)
    assert c.connect()
    return c


@pytest.fixture
def cabinet() -> Iterator[ModuleCabinetSim]:
    sim = ModuleCabinetSim(load_map(DEVICES / "dc-module-40kw.yaml"), count=3, first_unit=4, load_voltage_v=600.0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def bess() -> Iterator[BessSim]:
    sim = BessSim(load_map(DEVICES / "bess-sunspec.yaml"), BESS_RATING, initial_soc=0.6)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def meter() -> Iterator[MeterSim]:
    sim = MeterSim(load_map(DEVICES / "grid-meter.yaml"), MeterRating(delay_s=0.0, noise_kw=0.0), base_load_kw=50.0)
    sim.start()
    yield sim
    sim.stop()


# --------------------------------------------------------------------------- values, writes, plant


def test_cabinet_serves_modules_on_consecutive_units_and_ramps_to_the_command(cabinet: ModuleCabinetSim) -> None:
    c = client(cabinet.port)
    try:
        assert c.write_registers(0, [7000, 500, 1], device_id=5).isError() is False  # 700 V, 50.0 A, on
        assert cabinet.last_written("current_limit", unit=5) == pytest.approx(50.0)
        assert cabinet.module(5).enabled and cabinet.module(5).current_setpoint_a == pytest.approx(50.0)
        cabinet.step(0.01)
        first = s16(c.read_input_registers(1, count=1, device_id=5).registers[0]) / 10
        for _ in range(100):
            cabinet.step(0.01)
        settled = c.read_input_registers(0, count=4, device_id=5).registers
        assert 0 < first < 50.0
        assert settled[0] == 6000  # measured voltage 600.0 V (the load)
        assert s16(settled[1]) / 10 == pytest.approx(50.0, abs=0.2)
        assert (settled[2] << 16 | settled[3]) == pytest.approx(30000, abs=150)  # 600 V x 50 A
        # the other modules were not commanded
        assert c.read_input_registers(1, count=1, device_id=4).registers == [0]
        assert c.read_holding_registers(0, count=3, device_id=6).registers == [0, 0, 0]
    finally:
        c.close()


def test_unknown_unit_and_undefined_and_read_only_addresses(cabinet: ModuleCabinetSim, bess: BessSim) -> None:
    c = client(cabinet.port)
    try:
        assert c.read_holding_registers(0, count=1, device_id=7).exception_code == 0x0B  # past the 3 modules
        assert c.read_input_registers(10, count=2, device_id=4).exception_code == 2  # a hole in the map
    finally:
        c.close()
    c = client(bess.port)
    try:
        assert c.write_register(40081, 1000, device_id=1).exception_code == 2  # soc is read-only
        assert bess.writes == []
    finally:
        c.close()


def test_module_fault_bits_come_from_the_plant_and_reset_over_modbus(cabinet: ModuleCabinetSim) -> None:
    c = client(cabinet.port)
    try:
        c.write_registers(0, [7000, 500, 1], device_id=4)
        cabinet.step(0.5)
        cabinet.inject_fault(4, ModuleFault.OVER_TEMPERATURE | ModuleFault.FAN_FAILURE)
        cabinet.step(0.01)
        regs = c.read_input_registers(1, count=6, device_id=4).registers
        assert regs[4] == 0b100001 and regs[0] == 0  # fault word; a tripped module stops at once
        assert c.write_register(4, 1, device_id=4).isError() is False  # fault_reset
        assert c.read_input_registers(5, count=1, device_id=4).registers == [0]
    finally:
        c.close()


def test_bess_follows_a_setpoint_in_percent_of_w_max_and_soc_integrates(bess: BessSim) -> None:
    c = client(bess.port)
    try:
        regs = c.read_holding_registers(40000, count=4, device_id=1).registers
        assert regs == [0x5375, 0x6E53, 1, 66]  # 'SunS', model 1, length 66
        assert c.read_holding_registers(40081, count=1, device_id=1).registers == [600]  # 60.0 % at sf -1
        assert c.write_register(40139, 0b10, device_id=1).isError() is False  # discharge allowed
        assert c.write_register(40146, 4000, device_id=1).isError() is False  # 40.00 % of 250 kW
        for _ in range(50):
            bess.step(0.1)
        power = s16(c.read_holding_registers(40117, count=1, device_id=1).registers[0]) * 10  # w_sf 1
        assert power == pytest.approx(100_000, rel=0.01)
        for _ in range(36):
            bess.step(100.0)  # one hour at 100 kW: 100/0.96 kWh out of 500
        soc = c.read_holding_registers(40081, count=1, device_id=1).registers[0] / 10
        assert soc == pytest.approx(60.0 - 100 / 0.96 / 500 * 100, abs=0.3)
        c.write_register(40139, 0b01, device_id=1)  # only charging allowed now: a + setpoint holds at 0
        bess.step(5.0)
        assert abs(s16(c.read_holding_registers(40117, count=1, device_id=1).registers[0])) < 10
    finally:
        c.close()


def test_bess_setpoint_reverts_after_its_lease(bess: BessSim) -> None:
    c = client(bess.port)
    try:
        c.write_register(40149, 5, device_id=1)  # revert after 5 s
        c.write_register(40139, 0b11, device_id=1)
        c.write_register(40146, (-2000) & 0xFFFF, device_id=1)  # charge at 20 %
        bess.step(4.0)
        assert bess.battery.setpoint_kw == pytest.approx(-50.0)
        bess.step(1.5)
        assert c.read_holding_registers(40146, count=1, device_id=1).registers == [0]
        assert bess.battery.setpoint_kw == 0.0
    finally:
        c.close()


def test_meter_reports_the_sum_of_its_sources(meter: MeterSim) -> None:
    meter.add_source("modules", lambda: 230.0)
    meter.add_source("bess", lambda: -80.0)
    meter.step(0.1)
    c = client(meter.port)
    try:
        regs = c.read_holding_registers(40088, count=5, device_id=1).registers
        assert s16(regs[0]) == 2000 and s16(regs[4]) == 2  # 200 kW at w_sf 2
        assert [s16(r) for r in regs[1:4]] == [667, 667, 667]
        for _ in range(36):
            meter.step(100.0)
        e = c.read_holding_registers(40116, count=2, device_id=1).registers
        assert (e[0] << 16 | e[1]) == pytest.approx(200_000, rel=0.01)  # Wh imported in an hour
    finally:
        c.close()


# --------------------------------------------------------------------------- fault knobs


def test_silent_unit_times_out_while_its_neighbour_answers(cabinet: ModuleCabinetSim) -> None:
    cabinet.knobs(5).silent = True
    c = client(cabinet.port, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):
            c.read_input_registers(0, count=1, device_id=5)
        assert not c.read_input_registers(0, count=1, device_id=4).isError()
        cabinet.clear_faults()
        assert not c.read_input_registers(0, count=1, device_id=5).isError()
    finally:
        c.close()


def test_late_answers(meter: MeterSim) -> None:
    meter.knobs().delay_s = 0.3
    c = client(meter.port, timeout=2.0)
    try:
        t0 = time.perf_counter()
        assert not c.read_holding_registers(40088, count=1, device_id=1).isError()
        assert time.perf_counter() - t0 >= 0.3
    finally:
        c.close()
    c = client(meter.port, timeout=0.1)
    try:
        with pytest.raises(ModbusIOException):
            c.read_holding_registers(40088, count=1, device_id=1)
    finally:
        c.close()


def test_exception_code_per_point(bess: BessSim) -> None:
    bess.set_exception("soc", 4)
    bess.set_exception(40139, 6)
    c = client(bess.port)
    try:
        assert c.read_holding_registers(40080, count=3, device_id=1).exception_code == 4
        assert c.write_register(40139, 1, device_id=1).exception_code == 6
        assert not c.read_holding_registers(40082, count=2, device_id=1).isError()
    finally:
        c.close()


def test_corrupt_frames_reach_the_wire(meter: MeterSim) -> None:
    meter.knobs().corrupt = True
    request = bytes.fromhex("0001 0000 0006 01 03 9c58 0001")  # read holding 40024, 1 register
    with socket.create_connection(("127.0.0.1", meter.port), timeout=2) as s:
        s.sendall(request)
        data = s.recv(256)
    assert data and data[:2] != b"\x00\x01"  # bytes arrive, but not an answer to transaction 1
    c = client(meter.port, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):
            c.read_holding_registers(40088, count=1, device_id=1)
    finally:
        c.close()


def test_forced_values_out_of_range_and_fault_bits(bess: BessSim) -> None:
    bess.force("soc", 123.4)
    bess.set_alarms(1 << 22)  # ground fault
    c = client(bess.port)
    try:
        assert c.read_holding_registers(40081, count=1, device_id=1).registers == [1234]
        assert c.read_holding_registers(40096, count=2, device_id=1).registers == [0x0040, 0x0000]
        bess.step(1.0)  # the plant does not overwrite a forced value
        assert c.read_holding_registers(40081, count=1, device_id=1).registers == [1234]
        bess.release("soc")
        assert c.read_holding_registers(40081, count=1, device_id=1).registers == [600]
        c.write_register(40090, 1, device_id=1)  # alarm reset
        bess.step(0.1)
        assert c.read_holding_registers(40096, count=2, device_id=1).registers == [0, 0]
    finally:
        c.close()


# --------------------------------------------------------------------------- other clients


def test_pysunspec2_scans_the_bess() -> None:
    import sunspec2.modbus.client as ss

    sim = BessSim(load_map(DEVICES / "bess-sunspec.yaml"), BESS_RATING, initial_soc=0.42).start()
    dev = ss.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=sim.port, timeout=2)
    try:
        dev.scan()
        assert {1, 802, 124} <= {k for k in dev.models if isinstance(k, int)}
        assert dev.models[1][0].Mn.value == "station-hil"
        assert dev.models[802][0].SoC.cvalue == pytest.approx(42.0)
        assert dev.models[802][0].WHRtg.cvalue == pytest.approx(500_000)
        assert dev.models[124][0].WChaMax.cvalue == pytest.approx(250_000)
    finally:
        dev.close()
        sim.stop()


def test_mbpoll_reads_the_meter(meter: MeterSim) -> None:
    mbpoll = shutil.which("mbpoll")
    assert mbpoll, "mbpoll is missing: apt-get install -y mbpoll (.ci/setup --dev installs it)"
    meter.base_load_kw = 123.0
    meter.step(0.1)
    out = subprocess.run(
        [mbpoll, "-m", "tcp", "-a", "1", "-0", "-r", "40088", "-c", "1", "-t", "4", "-1", "-p",
         str(meter.port), "-o", "2", "127.0.0.1"],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[40088]: \t1230" in out.stdout


def test_station_hil_device_command_serves_a_meter() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("station-hil")
    proc = subprocess.Popen(
        [str(exe), "device", "meter", "--map", str(DEVICES / "grid-meter.yaml"), "--port", str(port),
         "--load-kw", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 20
        value = None
        while time.monotonic() < deadline and value is None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            c = ModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)
            if c.connect():
                r = c.read_holding_registers(40088, count=1, device_id=1)
                if not r.isError():
                    value = s16(r.registers[0]) * 100  # W at w_sf 2
            c.close()
        assert value == pytest.approx(120_000, abs=4000)  # the meter plant adds noise
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
