"""The control-cycle stand-in of the flood test, and a reference copy of it in its own process.

Run as a script, this module is the *reference cycle*: the same PeriodicLoop, period, interpreter
settings and allocation-sized work as the station's cycle in the flood test, but with no MQTT link in the
process. Running side by side with the flood, it experiences what the machine imposes on any cycle (other
processes, a busy 2-core CI box) and nothing of what the flood does inside the station process (GIL
hand-overs, garbage collections, locks). The flood test compares the station's cycle against it::

    python tests/mqtt/cycle_load.py      # prints READY; on a line on stdin, stops and prints its stats (JSON)
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
from collections.abc import Iterator

from station.control.loop import LoopStats, PeriodicLoop
from station.dispatch import GridLimits

PERIOD_S = 0.02
GUNS = 64
DEMAND_KW = [float(10 + (i * 37) % 250) for i in range(GUNS)]
REFERENCE_LIMITS = GridLimits(400.0, 0.0, None, 100.0, "fallback", None)


def allocation_work(limits: GridLimits, demand_kw: list[float]) -> list[float]:
    """Allocation-sized pure-Python work (water-filling the import limit over 64 guns, 10 passes)."""
    budget = limits.import_limit_kw
    share = [0.0] * len(demand_kw)
    for _ in range(10):
        active = [i for i, d in enumerate(demand_kw) if share[i] < d]
        if not active or budget <= 1e-9:
            break
        each = budget / len(active)
        for i in active:
            give = min(each, demand_kw[i] - share[i])
            share[i] += give
            budget -= give
    return share


@contextlib.contextmanager
def service_runtime() -> Iterator[None]:
    """The garbage-collector settings the station service should apply once started (reported to the
    service owner; docs/mqtt.md, "Interpreter settings").

    Measured with the flood test on a busy 2-core box (20 ms period, 8-20 runs per variant):

    - CPython's defaults: two full (gen 2) collections per flood over the whole start-up heap (Numba,
      NumPy, pydantic, ...) stop every thread for 25-210 ms: 1-18 missed periods per run.
    - ``gc.collect(); gc.freeze()``: the start-up heap leaves the collector's view (collected first, so
      start-up garbage is not kept for good). A full collection still comes once per flood, 6-33 ms.
    - ``gc.set_threshold(700, 10, 1000)``: young collections as before (every 700 allocations, under a
      millisecond), full collections 100 times rarer. During a flood the ~10,000 acks waiting for their
      PUBACK in the MQTT client are long-lived young objects that trigger one; garbage in cycles is still
      freed young (paho builds one small reference cycle per received message, in
      ``MQTTMatcher.iter_match``; the next young collection frees it). No full collection in any flood.

    Tried and left out: a young threshold of 50,000 (each young collection then takes 7-25 ms), and a
    1 ms GIL switch interval instead of 5 ms (no difference measured once the collector was tamed).
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def stats_summary(stats: LoopStats) -> dict[str, float]:
    return {"ticks": stats.ticks, "overruns": stats.overruns, "p50_s": stats.percentile_lateness(0.5),
            "p99_s": stats.percentile_lateness(0.99), "max_s": stats.max_lateness_s}


def main() -> int:
    with service_runtime():
        loop = PeriodicLoop(PERIOD_S, lambda tick, deadline: allocation_work(REFERENCE_LIMITS, DEMAND_KW),
                            name="reference-cycle")
        loop.start()
        print("READY", flush=True)
        sys.stdin.readline()
        loop.stop()
    if loop.error is not None:
        raise loop.error
    print(json.dumps(stats_summary(loop.stats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
