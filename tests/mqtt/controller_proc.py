"""A stand-in controller process for the store-and-forward test: the real link and outbox, fed by a
PeriodicLoop with telemetry built by station.telemetry at ``mqtt.telemetry_period_s``. Prints ``C <seq> ...`` once rows are committed
(durable), so the test knows exactly what the outbox accepted before it SIGKILLs this process.

    python tests/mqtt/controller_proc.py '<MqttConfig JSON>' <station id> <cycle period s>
"""

from __future__ import annotations

import sys
import threading
import time

from drivers.mqtt.link import MqttLink
from drivers.mqtt.outbox import Outbox
from station import telemetry as payloads
from station.config import MqttConfig
from station.control.loop import PeriodicLoop
from station.dispatch import GridLimits

LIMITS = GridLimits(400.0, 0.0, None, 100.0, "fallback", None)
GUNS = [payloads.GunSample("A1", True, "charging", 120.0, 240.0, 500.0, 0.42),
        payloads.GunSample("A2", True, "idle")]


def main() -> int:
    cfg = MqttConfig.model_validate_json(sys.argv[1])
    station_id, period_s = sys.argv[2], float(sys.argv[3])
    out = threading.Lock()

    def committed(seqs: list[int]) -> None:
        with out:
            sys.stdout.write("C " + " ".join(map(str, seqs)) + "\n")
            sys.stdout.flush()

    outbox = Outbox.from_config(cfg.outbox)
    link = MqttLink(cfg, station_id, outbox, on_committed=committed, firmware="test")
    link.start()

    pacer = payloads.TelemetryPacer(cfg.telemetry_period_s)

    def step(tick: int, deadline: float) -> None:
        if not pacer.due(deadline):
            return
        link.publish_telemetry(payloads.telemetry(
            time.time(), grid_kw=120.0 + tick % 7, limits=LIMITS, dispatch={"source": "fallback"},
            guns=GUNS, health={"grid": "ok", "C1": "ok"}, bess_kw=-10.0, bess_soc=0.6))

    print("STARTED", flush=True)
    PeriodicLoop(period_s, step).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
