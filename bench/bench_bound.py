"""Perfect-foresight bound benchmark: LP size, build and solve time for each shipped scenario.

    .venv/bin/python -m bench.bench_bound                 # every hil/scenarios/*.yaml, 60 s steps
    .venv/bin/python -m bench.bench_bound day-24h --step 30

Prints a markdown table (and the machine's load average: the solve time is a single HiGHS run, so it
follows the load of a shared machine).
"""

from __future__ import annotations

import argparse
import os

from hil.bound import perfect_foresight
from hil.scenarios import SHIPPED_DIR, load_scenario, shipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="scenario names (default: every shipped scenario)")
    ap.add_argument("--step", type=float, default=60.0, help="LP time step in seconds (default 60)")
    args = ap.parse_args()
    names = args.names or [p.stem for p in shipped()]
    print(f"LP step {args.step:g} s; load average before: {os.getloadavg()[0]:.1f}\n")
    print("| scenario | hours | sessions | variables | rows | build s | solve s | bound kWh | status |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in names:
        scn = load_scenario(SHIPPED_DIR / f"{name}.yaml")
        cfg = scn.station_config()
        plugs = scn.plugs(cfg)
        res = perfect_foresight(cfg, plugs, scn, step_s=args.step)
        sessions = sum(1 for p in plugs if p.gun >= 0)
        print(f"| {name} | {scn.duration_s / 3600:.1f} | {sessions} | {res.n_vars:,} | {res.n_rows:,} | "
              f"{res.build_s:.2f} | {res.solve_s:.2f} | {res.energy_delivered_kwh:,.0f} | {res.status} |",
              flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
