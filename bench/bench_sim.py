"""Offline simulator benchmark: wall time of a 24 h day of the megawatt hub at 1 s steps (target <= 30 s),
per policy, with the time per simulated step.

    .venv/bin/python -m bench.bench_sim                 # day-24h, every policy
    .venv/bin/python -m bench.bench_sim --policies ours # just ours

Numba kernels are compiled (or loaded from the cache) by a warm-up run on the demo scenario first, so
the figures are the simulation itself, not start-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from hil.scenarios import load_scenario
from hil.sim.run import simulate

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "hil" / "scenarios" / "day-24h.yaml"))
    ap.add_argument("--policies", default="ours,equal-share,priority-share,llf,uncontrolled")
    args = ap.parse_args(argv)
    warm = load_scenario(ROOT / "hil" / "scenarios" / "demo.yaml")
    scn = load_scenario(args.scenario)
    print(f"Offline simulation of {scn.name} ({scn.duration_s / 3600:g} h at {scn.step_s:g} s), "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.1f} at start\n")
    print("| policy | steps | wall s | us per step |")
    print("|---|---:|---:|---:|")
    for name in args.policies.split(","):
        simulate(warm, name)  # compile or load the kernels
        t = time.perf_counter()
        res = simulate(scn, name)
        wall = time.perf_counter() - t
        print(f"| {name} | {len(res.t_s)} | {wall:.1f} | {wall / len(res.t_s) * 1e6:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
