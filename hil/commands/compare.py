"""``station-hil compare SCENARIO --out DIR``: every policy and the perfect-foresight bound, side by side."""

from __future__ import annotations

import argparse
import sys

from hil.commands import add_scenario_arguments, load

HELP = "run ours and the peers' baselines on a scenario, with the perfect-foresight LP bound"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_scenario_arguments(p, "compare.md, compare.json, compare.png")
    p.add_argument("--policies", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--bound-step", type=float, default=60.0, help="time step of the bound's LP (default 60 s)")


def run(args: argparse.Namespace) -> int:
    from hil.sim.compare import compare, markdown_table, write

    scn = load(args)
    if scn is None:
        return 2
    policies = args.policies.split(",") if args.policies else None
    try:
        result = compare(scn, policies, args.step, args.bound_step)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write(result, args.out)
    print(markdown_table(result))
    g = result["goal"]
    if g:
        print(f"\ngoal: zero cap violations {g['zero_cap_violations']}, beats every baseline "
              f"{g['beats_every_baseline']}, {100 * (g['bound_fraction'] or 0):.1f} % of the bound "
              f"(>= 97 %: {g['at_least_97_percent']})")
    print(f"wrote {args.out}/compare.md, compare.json, compare.png")
    return 0
