"""``station-hil bms``: simulated vehicles on CAN buses (by default channels of the software hub).

``--channel A1`` runs one vehicle; ``--channel A1,A2,...`` runs one per channel in this process (each on
its own bus and thread; the benchmark uses it to put 32 vehicles on the bench). Prints one JSON line per
simulator event (phase changes with SoC, BEM sent, CEM received, ...; with ``"channel"``) and a final
``{"summary": ...}`` line per vehicle when all sessions are over (``--exit-when-done``) or on SIGTERM.
Fault knobs: ``--knob NAME=VALUE`` (repeatable, applied to every vehicle), see
:class:`hil.bms.simulator.FaultKnobs`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable

HELP = "simulated vehicle BMS (GB/T 27930) on CAN, driven by the vehicle plant model"

VEHICLES = ("car", "fast_car", "truck")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channel", required=True, help="CAN channel(s), comma-separated, e.g. A1 or A1,A2")
    parser.add_argument("--interface", default="socketcand")
    parser.add_argument("--host", default="127.0.0.1", help="socketcand hub host")
    parser.add_argument("--port", type=int, default=29536, help="socketcand hub port")
    parser.add_argument("--vehicle", choices=VEHICLES, default="car")
    parser.add_argument("--id", default="LHILSIM0000000001", help="vehicle id (sent as VIN)")
    parser.add_argument("--capacity-kwh", type=float, default=None)
    parser.add_argument("--soc", type=float, default=0.3, help="initial SoC 0..1")
    parser.add_argument("--target-soc", type=float, default=0.9)
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--exit-when-done", action="store_true", help="exit once every session is over")


def run(args: argparse.Namespace) -> int:
    import can

    from drivers.can.bus import bms_filters, open_bus
    from drivers.can.runner import CanRunner
    from hil.bms.simulator import BmsSimulator, FaultKnobs, Phase
    from hil.plant import vehicle as plant
    from station.config import CanLink

    channels = [c for c in args.channel.split(",") if c]
    try:
        knobs = FaultKnobs.parse(args.knob)
        factory = getattr(plant, args.vehicle)
        extra = {} if args.capacity_kwh is None else {"capacity_kwh": args.capacity_kwh}
        specs = [factory(args.id if len(channels) == 1 else f"{args.id[:12]}{c}", initial_soc=args.soc,
                         target_soc=args.target_soc, **extra) for c in channels]
    except (ValueError, TypeError) as exc:
        print(f"station-hil bms: {exc}", file=sys.stderr)
        return 2
    options = {"host": args.host, "port": args.port} if args.interface == "socketcand" else {}
    out_lock = threading.Lock()
    finished: set[str] = set()
    all_done = threading.Event()
    stop_requested = threading.Event()
    runners: list[tuple[str, BmsSimulator, CanRunner]] = []

    def printer(channel: str) -> Callable[[list[dict[str, object]]], None]:
        def on_events(entries: list[dict[str, object]]) -> None:
            with out_lock:
                for entry in entries:
                    print(json.dumps({**entry, "channel": channel}), flush=True)
                    if entry.get("event") == "phase" and entry.get("new") == Phase.DONE.value:
                        finished.add(channel)
                        if len(finished) == len(channels):
                            all_done.set()
        return on_events

    for channel, spec in zip(channels, specs):
        try:
            bus = open_bus(CanLink(interface=args.interface, channel=channel, options=options),
                           can_filters=bms_filters())
        except can.CanError as exc:
            print(f"station-hil bms: {exc}", file=sys.stderr)
            return 2
        sim = BmsSimulator(plant.Vehicle(spec), knobs)
        runners.append((channel, sim, CanRunner(bus, sim, clock=time.monotonic, on_events=printer(channel),
                                                name=f"bms-{channel}")))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop_requested.set())
    for _, _, runner in runners:
        runner.start()
    with out_lock:
        print(json.dumps({"event": "ready", "channels": channels}), flush=True)
    while not stop_requested.wait(0.2):
        if not all(r.running for _, _, r in runners) or (args.exit_when_done and all_done.is_set()):
            break
    for channel, sim, runner in runners:
        runner.stop()
        runner.bus.shutdown()
        v = sim.vehicle
        summary = {"channel": channel, "phase": sim.phase.value, "soc": round(v.soc, 4),
                   "energy_in_kwh": round(v.energy_in_kwh, 4), "restarts": sim.record.restarts,
                   "frames_in": runner.frames_in, "frames_out": runner.frames_out,
                   "error_frames": runner.error_frames,
                   "cst": sim.cst.set_fields() if sim.cst else None,
                   "cem": sim.cem.set_fields() if sim.cem else None,
                   "csd_energy_kwh": sim.csd.energy_kwh if sim.csd else None}
        with out_lock:
            print(json.dumps({"summary": summary}), flush=True)
    return 0 if all(r.error is None for _, _, r in runners) else 1
