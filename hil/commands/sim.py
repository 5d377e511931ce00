"""``station-hil sim SCENARIO --out DIR``: one scenario, one policy, on a simulated clock."""

from __future__ import annotations

import argparse
import sys

from hil.commands import add_scenario_arguments, load

HELP = "run a scenario offline with the plant models; write report.json, timeseries.csv, power.png"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_scenario_arguments(p, "report.json, timeseries.csv, power.png")
    p.add_argument("--policy", default="ours",
                   help="ours (default) or a baseline: equal-share, priority-share, llf, uncontrolled")


def run(args: argparse.Namespace) -> int:
    from hil.sim.report import write_report
    from hil.sim.run import simulate

    scn = load(args)
    if scn is None:
        return 2
    try:
        res = simulate(scn, args.policy, args.step)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = scn.station_config()
    m = write_report(res, args.out, scn.expect, cfg.dispatch.settle_tolerance_kw)
    print(summary(m))
    print(f"wrote {args.out}/report.json, timeseries.csv, power.png")
    return 0 if m["passed"] else 1


def summary(m: dict) -> str:
    lines = [
        f"{m['scenario']} / {m['policy']}: {m['duration_s'] / 3600:.1f} h at {m['step_s']:g} s in {m['wall_s']:.1f} s",
        f"  sessions {m['sessions']} (turned away {m['turned_away']}, left short {m['sessions_short']}), "
        f"delivered {m['energy_delivered_kwh']:.0f} of {m['energy_requested_kwh']:.0f} kWh "
        f"({100 * m['demand_met']:.1f} %)",
        f"  peak import {m['peak_import_kw']:.0f} kW, cap violations {m['cap_violations']} "
        f"(worst +{m['cap_worst_excess_kw']:.1f} kW), BESS out/in {m['bess_discharged_kwh']:.0f}/"
        f"{m['bess_charged_kwh']:.0f} kWh",
    ]
    if m["tracking_rms_kw"] is not None:
        lines.append(f"  dispatch tracking RMS {m['tracking_rms_kw']:.1f} kW (worst {m['tracking_worst_kw']:.0f} kW),"
                     f" export {m['v2g_delivered_kwh']:.0f} of {m['v2g_asked_kwh']:.0f} kWh asked")
    if m["cost"] is not None:
        lines.append(f"  energy cost {m['cost']:.2f}")
    for e in m["expectations"]:
        state = {True: "PASS", False: "FAIL", None: "----"}[e["pass"]]
        note = f" - {e['note']}" if "note" in e else ""
        lines.append(f"  {state} {e['expect']} {e['threshold']} (got {e['value']}){note}")
    return "\n".join(lines)
