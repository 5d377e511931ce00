"""``station-hil device KIND --map FILE --port N [--unit U] [--count N]``: one Modbus device simulator.

KIND is ``module-cabinet`` (``--count`` modules on unit ids ``--unit`` .. ``--unit + count - 1``),
``bess`` or ``meter``. The physics step on a real timer (``--step`` seconds, absolute deadlines); the
simulator prints one ``listening HOST:PORT`` line once it accepts connections and runs until SIGINT or
SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

HELP = "one Modbus device simulator (module-cabinet, bess, meter) on a register map"

KINDS = ("module-cabinet", "bess", "meter")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--map", required=True, help="register map YAML (config/devices/*.yaml)")
    p.add_argument("--port", type=int, required=True, help="TCP port (0: any free port, printed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--unit", type=int, default=1, help="unit id (first module's for a cabinet)")
    p.add_argument("--count", type=int, default=1, help="modules in a cabinet")
    p.add_argument("--step", type=float, default=0.05, help="physics step in seconds")
    p.add_argument("--soc", type=float, default=0.6, help="initial BESS SoC 0..1")
    p.add_argument("--load-kw", type=float, default=0.0, help="meter: power through the meter (+ import)")


def build(args: argparse.Namespace):  # -> DeviceSim
    from drivers.modbus.regmap import load_map
    from hil.plant.bess import BessRating
    from hil.plant.meter import MeterRating

    regmap = load_map(args.map)
    if args.kind == "module-cabinet":
        from hil.devices.cabinet import ModuleCabinetSim

        return ModuleCabinetSim(regmap, count=args.count, first_unit=args.unit)
    if args.kind == "bess":
        from hil.devices.bess import BessSim

        return BessSim(regmap, BessRating(capacity_kwh=500, max_charge_kw=250, max_discharge_kw=250),
                       initial_soc=args.soc, unit=args.unit)
    from hil.devices.meter import MeterSim

    return MeterSim(regmap, MeterRating(), unit=args.unit, base_load_kw=args.load_kw)


def run(args: argparse.Namespace) -> int:
    from drivers.modbus.regmap import MapError

    try:
        sim = build(args)
        sim.start(args.host, args.port)
    except (MapError, ValueError, OSError, RuntimeError) as exc:
        print(f"station-hil device: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"listening {args.host}:{sim.port} {args.kind} units {sim.units[0]}..{sim.units[-1]}", flush=True)
    deadline = time.monotonic()
    try:
        while not stop.is_set():
            deadline += args.step
            sim.step(args.step)
            stop.wait(max(0.0, deadline - time.monotonic()))
    finally:
        sim.stop()
    return 0
