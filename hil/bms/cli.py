"""``station-hil bms``: one simulated vehicle on a CAN bus (by default a channel of the software hub).

Prints one JSON line per simulator event (phase changes with SoC, BEM sent, CEM received, ...) and a final
``{"summary": ...}`` line when the session is over (``--exit-when-done``) or on SIGTERM/SIGINT.
Fault knobs: ``--knob NAME=VALUE`` (repeatable), see :class:`hil.bms.simulator.FaultKnobs`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

HELP = "simulated vehicle BMS (GB/T 27930) on a CAN bus, driven by the vehicle plant model"

VEHICLES = ("car", "fast_car", "truck")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channel", required=True, help="CAN channel, e.g. the gun id A1")
    parser.add_argument("--interface", default="socketcand")
    parser.add_argument("--host", default="127.0.0.1", help="socketcand hub host")
    parser.add_argument("--port", type=int, default=29536, help="socketcand hub port")
    parser.add_argument("--vehicle", choices=VEHICLES, default="car")
    parser.add_argument("--id", default="LHILSIM0000000001", help="vehicle id (sent as VIN)")
    parser.add_argument("--capacity-kwh", type=float, default=None)
    parser.add_argument("--soc", type=float, default=0.3, help="initial SoC 0..1")
    parser.add_argument("--target-soc", type=float, default=0.9)
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--exit-when-done", action="store_true", help="exit once the session is over")


def run(args: argparse.Namespace) -> int:
    import can

    from drivers.can.bus import bms_filters
    from drivers.can.runner import CanRunner
    from hil.bms.simulator import BmsSimulator, FaultKnobs, Phase
    from hil.plant import vehicle as plant

    try:
        knobs = FaultKnobs.parse(args.knob)
        factory = getattr(plant, args.vehicle)
        extra = {} if args.capacity_kwh is None else {"capacity_kwh": args.capacity_kwh}
        spec = factory(args.id, initial_soc=args.soc, target_soc=args.target_soc, **extra)
    except (ValueError, TypeError) as exc:
        print(f"station-hil bms: {exc}", file=sys.stderr)
        return 2
    sim = BmsSimulator(plant.Vehicle(spec), knobs)
    options = {"host": args.host, "port": args.port} if args.interface == "socketcand" else {}
    try:
        bus = can.Bus(interface=args.interface, channel=args.channel, can_filters=bms_filters(), **options)
    except (can.CanError, OSError) as exc:
        print(f"station-hil bms: cannot open {args.interface} {args.channel}: {exc}", file=sys.stderr)
        return 2
    finished = threading.Event()  # the session is over (the simulator reached DONE)
    stop_requested = threading.Event()
    out_lock = threading.Lock()

    def on_events(entries: list[dict[str, object]]) -> None:
        with out_lock:
            for entry in entries:
                print(json.dumps(entry), flush=True)
                if entry.get("event") == "phase" and entry.get("new") == Phase.DONE.value:
                    finished.set()

    runner = CanRunner(bus, sim, clock=time.monotonic, on_events=on_events, name=f"bms-{args.channel}")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop_requested.set())
    runner.start()
    print(json.dumps({"event": "ready", "channel": args.channel}), flush=True)
    while not stop_requested.wait(0.2):
        if not runner.running or (args.exit_when_done and finished.is_set()):
            break
    runner.stop()
    bus.shutdown()
    v = sim.vehicle
    summary = {"phase": sim.phase.value, "soc": round(v.soc, 4), "energy_in_kwh": round(v.energy_in_kwh, 4),
               "restarts": sim.record.restarts, "charger_messages": sim.record.charger_messages,
               "cst": sim.cst.set_fields() if sim.cst else None,
               "cem": sim.cem.set_fields() if sim.cem else None,
               "csd_energy_kwh": sim.csd.energy_kwh if sim.csd else None}
    print(json.dumps({"summary": summary}), flush=True)
    return 0 if runner.error is None else 1
