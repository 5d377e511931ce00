"""Benchmark: poll cycle of a cabinet of 24 power modules + BESS + grid meter through our Modbus driver,
and write-to-effect latency, with the simulators in their own processes (``station-hil device``).

    .venv/bin/python -m bench.bench_modbus              # 300 cycles, prints a markdown table
    .venv/bin/python -m bench.bench_modbus --cycles 100

* **poll cycle**: one read of every device's ``fast`` group (26 devices, one connection each, batched
  reads), all devices at once with ``asyncio.gather`` — what the station does every control period —
  side by side with the same reads one device after another (the baseline a naive loop would give).
* **raw client**: the same batched requests sent with pymodbus's own async client, one per device, no
  decoding, health or ages: the ratio against it is our driver's overhead.
* **write to effect**: ``write("current_limit", x)`` on one module (write + verify read-back), then
  reads of its ``current_limit`` point until it shows the new value; the simulator applies a write when
  it is received, so this is the time until the device holds the new setpoint. The module's *current*
  then ramps at its plant's rate (a physical figure, not a link one), which is not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus.device import DeviceConfig, ModbusDevice
from drivers.modbus.link import TcpEndpoint
from drivers.modbus.regmap import load_map

REPO = Path(__file__).resolve().parents[1]
DEVICES = REPO / "config" / "devices"
MODULES = 24


def start(kind: str, map_name: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    exe = Path(sys.executable).with_name("station-hil")
    proc = subprocess.Popen([str(exe), "device", kind, "--map", str(DEVICES / map_name), "--port", "0", *extra],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"{kind} simulator did not start: {line!r}")
    return proc, int(line.split()[1].rsplit(":", 1)[1])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def row(name: str, ms: list[float], base: float | None = None) -> str:
    p50 = statistics.median(ms)
    ratio = f"{p50 / base:.2f}x" if base else "-"
    return f"| {name} | {p50:.2f} | {pct(ms, 0.99):.2f} | {max(ms):.2f} | {ratio} |"


async def run(cycles: int) -> list[str]:
    procs = []
    try:
        cab, cab_port = start("module-cabinet", "dc-module-40kw.yaml", "--count", str(MODULES), "--unit", "1")
        bess, bess_port = start("bess", "bess-sunspec.yaml")
        meter, meter_port = start("meter", "grid-meter.yaml", "--load-kw", "300")
        procs = [cab, bess, meter]
        maps = {k: load_map(DEVICES / f) for k, f in
                (("m", "dc-module-40kw.yaml"), ("b", "bess-sunspec.yaml"), ("g", "grid-meter.yaml"))}
        devs = [ModbusDevice(DeviceConfig(f"dc-{u:02d}", TcpEndpoint("127.0.0.1", cab_port), device_id=u,
                                          timeout_s=0.5), maps["m"]) for u in range(1, MODULES + 1)]
        devs.append(ModbusDevice(DeviceConfig("bess", TcpEndpoint("127.0.0.1", bess_port), device_id=1,
                                              timeout_s=0.5), maps["b"]))
        devs.append(ModbusDevice(DeviceConfig("meter", TcpEndpoint("127.0.0.1", meter_port), device_id=1,
                                              timeout_s=0.5), maps["g"]))
        for d in devs:  # connect and learn scale factors before timing
            assert (await d.poll("fast")).error is None, d.name

        async def cycle_concurrent() -> None:
            results = await asyncio.gather(*(d.poll("fast") for d in devs))
            assert all(r.error is None for r in results)

        async def cycle_sequential() -> None:
            for d in devs:
                assert (await d.poll("fast")).error is None

        raw = []
        for d in devs:
            ep = d.config.endpoint
            c = AsyncModbusTcpClient(ep.host, port=ep.port, timeout=0.5, retries=0, reconnect_delay=0)
            await c.connect()
            raw.append((c, d.config.device_id, d.plan("fast")))

        async def raw_one(c: AsyncModbusTcpClient, unit: int, plan: list) -> None:
            for b in plan:
                fn = c.read_input_registers if b.table == "input" else c.read_holding_registers
                assert not (await fn(b.address, count=b.count, device_id=unit)).isError()

        async def cycle_raw() -> None:
            await asyncio.gather(*(raw_one(c, u, p) for c, u, p in raw))

        timings: dict[str, list[float]] = {"concurrent": [], "sequential": [], "raw": []}
        for _ in range(cycles):  # interleaved, so load changes hit all three alike
            for name, fn in (("concurrent", cycle_concurrent), ("sequential", cycle_sequential), ("raw", cycle_raw)):
                t = time.perf_counter()
                await fn()
                timings[name].append((time.perf_counter() - t) * 1000)

        module = devs[0]
        writes: list[float] = []
        for i in range(cycles):
            want = 10.0 + (i % 50)
            t = time.perf_counter()
            await module.write("current_limit", want)
            while abs((await module.read(["current_limit"]))["current_limit"] - want) > 0.05:
                pass
            writes.append((time.perf_counter() - t) * 1000)
        for c, _, _ in raw:
            c.close()
        for d in devs:
            await d.close()
        base = statistics.median(timings["raw"])
        blocks = sum(len(d.plan("fast")) for d in devs)
        return [
            f"Modbus poll cycle, {len(devs)} devices ({MODULES} modules + BESS + meter), {blocks} requests per "
            f"cycle, {cycles} cycles, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
            "",
            "| measure | p50 ms | p99 ms | max ms | vs raw pymodbus |",
            "|---|---:|---:|---:|---:|",
            row("poll cycle, all devices concurrently (our driver)", timings["concurrent"], base),
            row("poll cycle, one device after another (our driver)", timings["sequential"], base),
            row("same requests, pymodbus client only, concurrently", timings["raw"], None),
            row("write current_limit (+ verify) until the device holds it", writes, None),
        ]
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=300)
    args = ap.parse_args()
    print("\n".join(asyncio.run(run(args.cycles))))


if __name__ == "__main__":
    main()
