"""Horizon planner benchmark: time per re-plan for the megawatt hub (config/megawatt-hub.yaml), horizon
1 h and 4 h at 1-minute steps, two SoC grids; the pure-Python reference of the same solve side by side;
cold and cached start-up.

    .venv/bin/python -m bench.bench_plan            # prints markdown tables
    .venv/bin/python -m bench.bench_plan --quick    # fewer repeats
    .venv/bin/python -m bench.bench_plan --sim      # our policy on the shipped scenarios, with and without
                                                    # the planner (docs/planner.md, "Measured in the simulator")

A re-plan is ``Planner.plan(obs, schedule)`` end to end - forecast, solve, the kernel's settings - on a
busy afternoon: both truck guns, ten 600 kW guns and six car guns charging, an arrival profile above
the 2 MW cap, and a 1 MW export window 50 minutes ahead (so every step before it may pre-charge: the
solve's most expensive case). The re-plans walk through 30 minutes of the run (the window coming
closer), each timed several times; the table gives the median and the worst of the per-re-plan medians.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from station.config import StationConfig, load_config
from station.control.observation import Observation
from station.plan import Planner, Window, reference

HUB = Path(__file__).resolve().parent.parent / "config" / "megawatt-hub.yaml"
START_HOUR = 15.0
# a typical day of the hub at the grid side (kW): quiet night, a midday rise, the afternoon peak
PROFILE = [300, 200, 150, 150, 150, 200, 400, 800, 1200, 1400, 1500, 1600,
           1800, 2000, 2400, 2800, 3200, 3000, 2600, 2000, 1500, 1000, 700, 400]
WINDOW = Window(start_s=3000.0, end_s=4800.0, import_limit_kw=2000.0, export_limit_kw=1200.0, target_kw=-1000.0)


def hub(horizon_s: float, soc_levels: int) -> StationConfig:
    return with_planner(load_config(HUB), horizon_s=horizon_s, step_s=60.0, soc_levels=soc_levels,
                        arrival_profile_kw=[float(x) for x in PROFILE])


def busy(cfg: StationConfig, t_s: float) -> Observation:
    """The afternoon at ``t_s``: sessions started at 0 and partly served, the BESS at 60 %."""
    obs = Observation.for_station(cfg)
    obs.t_s = t_s
    obs.bess_available, obs.bess_soc = True, 0.6
    assert cfg.bess is not None
    obs.bess_max_charge_kw, obs.bess_max_discharge_kw = cfg.bess.max_charge_kw, cfg.bess.max_discharge_kw
    obs.import_cap_kw, obs.export_cap_kw, obs.aux_load_kw = cfg.import_cap_kw, 0.0, cfg.grid.aux_load_kw
    for g, gun in enumerate(cfg.guns()):
        if gun.id.startswith("T"):
            kw, kwh, dwell = 1200.0, 450.0, 2700.0
        elif gun.id.startswith("P") and int(gun.id[1:]) <= 10:
            kw, kwh, dwell = 350.0, 90.0, 1800.0 + 120.0 * g
        elif gun.id.startswith("V") and int(gun.id[1:]) <= 6:
            kw, kwh, dwell = 55.0, 40.0, 5400.0
        else:
            continue
        obs.connected[g] = True
        obs.demand_kw[g] = obs.vehicle_max_kw[g] = kw
        obs.energy_wanted_kwh[g] = max(kwh - kw * t_s / 3600.0 * 0.6, 5.0)
        obs.departure_s[g] = dwell
    return obs


def per_replan_ms(cfg: StationConfig, repeats: int, replans: int) -> tuple[float, float, int]:
    """(median, worst) over re-plans of the median time of ``repeats`` runs of each; and the step count."""
    planner = Planner(cfg, start_hour=START_HOUR)
    planner.plan(busy(cfg, 0.0), [WINDOW])  # compile (or load the cache) before timing
    medians = []
    for i in range(replans):
        obs = busy(cfg, 60.0 * i * 30 / max(replans - 1, 1))
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            planner.plan(obs, [WINDOW])
            runs.append(time.perf_counter() - t)
        medians.append(statistics.median(runs))
    return statistics.median(medians) * 1e3, max(medians) * 1e3, planner.steps


def reference_ms(cfg: StationConfig) -> float:
    planner = Planner(cfg, start_hour=START_HOUR)
    planner.plan(busy(cfg, 0.0), [WINDOW])
    assert planner.problem is not None
    t = time.perf_counter()
    reference.solve(planner.problem)
    return (time.perf_counter() - t) * 1e3


def startup(cache: str) -> float:
    """Seconds from a fresh interpreter to the first plan of the hub (imports included)."""
    code = (
        "import time; t = time.perf_counter(); "
        "from bench.bench_plan import hub, busy, WINDOW, START_HOUR; from station.plan import Planner; "
        "cfg = hub(14400.0, 101); Planner(cfg, start_hour=START_HOUR).plan(busy(cfg, 0.0), [WINDOW]); "
        "print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                env=os.environ | {"NUMBA_CACHE_DIR": cache}).stdout)


SCENARIOS = ("afternoon-peak", "v2g-evening", "truck-depot", "day-24h")
SIM_KEYS = ("energy_delivered_kwh", "sessions_short", "cap_violations", "tracking_rms_kw", "v2g_fraction",
            "bess_final_soc")


def with_planner(cfg: StationConfig, **update: object) -> StationConfig:
    planner = cfg.control.planner.model_copy(update=update)
    return cfg.model_copy(update=dict(control=cfg.control.model_copy(update=dict(planner=planner))))


def sim_table() -> None:
    """Our policy on each shipped scenario: the kernel alone, the planner at its defaults, and the planner
    with ``leveling: 1`` and the typical-day profile above; outcome and wall time of each run."""
    from hil.scenarios import load_scenario
    from hil.sim import run as sim
    from hil.sim.report import metrics
    from station.control.decide import Controller

    variants = {
        "kernel alone": lambda cfg, hour: Controller(cfg),
        "planner (default)": lambda cfg, hour: Controller(cfg, planner=Planner(cfg, start_hour=hour)),
        "planner, leveling 1 + profile": lambda cfg, hour: Controller(cfg, planner=Planner(
            with_planner(cfg, leveling=1.0, arrival_profile_kw=[float(x) for x in PROFILE]), start_hour=hour)),
    }
    print(f"Our policy on the shipped scenarios, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print("| scenario | policy | wall | " + " | ".join(SIM_KEYS) + " |")
    print("|---|---|---:|" + "---:|" * len(SIM_KEYS))
    root = Path(__file__).resolve().parent.parent / "hil" / "scenarios"
    original = sim.make_policy
    try:
        for name in SCENARIOS:
            scenario = load_scenario(root / f"{name}.yaml")
            for label, build in variants.items():
                sim.make_policy = lambda policy, cfg, *, start_hour=0.0, build=build: build(cfg, start_hour)
                t = time.perf_counter()
                m = metrics(sim.simulate(scenario, "ours"))
                cells = [("-" if m[k] is None else f"{m[k]:.3f}" if isinstance(m[k], float) else str(m[k]))
                         for k in SIM_KEYS]
                print(f"| {name} | {label} | {time.perf_counter() - t:.1f} s | " + " | ".join(cells) + " |", flush=True)
    finally:
        sim.make_policy = original


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sim", action="store_true", help="the shipped scenarios with and without the planner")
    args = ap.parse_args()
    if args.sim:
        sim_table()
        return
    repeats, replans = (3, 4) if args.quick else (7, 11)
    load = os.getloadavg()[0]
    print(f"Horizon planner on the megawatt hub, per re-plan (median of {repeats} runs per re-plan, "
          f"{replans} re-plans over 30 min), {os.cpu_count()} CPUs, load average {load:.1f}, "
          f"Python {sys.version.split()[0]}\n")
    print("| horizon | steps | SoC grid points | Numba: median | Numba: worst re-plan | pure-Python reference |"
          " ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for horizon_s in (3600.0, 14400.0):
        for levels in (101, 201):
            cfg = hub(horizon_s, levels)
            med, worst, steps = per_replan_ms(cfg, repeats, replans)
            ref = reference_ms(cfg)
            print(f"| {horizon_s / 3600:g} h | {steps} | {levels} | {med:.2f} ms | {worst:.2f} ms | {ref:,.0f} ms "
                  f"| {ref / med:,.0f}x |")
    cold, cached = [], []
    for _ in range(3 if not args.quick else 1):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(startup(cache))
            cached.append(startup(cache))
    print()
    print("| start-up to the first plan (4 h, 101 points) | seconds (median) |")
    print("|---|---:|")
    print(f"| cold (empty NUMBA_CACHE_DIR: import + compile) | {statistics.median(cold):.2f} |")
    print(f"| cached (NUMBA_CACHE_DIR populated) | {statistics.median(cached):.2f} |")
    if math.isfinite(load):
        print(f"\nload average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
