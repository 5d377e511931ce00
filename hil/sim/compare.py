"""Every policy on one scenario, side by side, and the perfect-foresight bound.

The table compares what an operator and a grid operator care about: energy delivered, demand met, cap
violations, peak import, dispatch tracking error, V2G energy, cost, plus our result as a fraction of the
best any policy could have done knowing the whole future (the LP of ``hil.bound``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hil.sim.report import check_expectations, metrics
from hil.sim.run import SimResult, simulate

POLICY_ORDER = ["ours", "equal-share", "priority-share", "llf", "uncontrolled"]

COLUMNS = [
    ("policy", "policy", "{}"),
    ("energy_net_kwh", "net kWh to vehicles", "{:.0f}"),
    ("energy_delivered_kwh", "delivered kWh", "{:.0f}"),
    ("demand_met", "demand met", "{:.1%}"),
    ("sessions_short", "left short", "{}"),
    ("cap_violations", "cap violations", "{}"),
    ("cap_worst_excess_kw", "worst over cap kW", "{:.1f}"),
    ("peak_import_kw", "peak import kW", "{:.0f}"),
    ("tracking_rms_kw", "tracking RMS kW", "{:.1f}"),
    ("v2g_delivered_kwh", "export kWh (asked)", "{:.0f}"),
    ("cost", "cost", "{:.0f}"),
    ("bound_fraction", "of bound", "{:.1%}"),
    ("loose_bound_fraction", "of bound w/o reserve", "{:.1%}"),
]


def compare(scenario: Any, policies: list[str] | None = None, step_s: float | None = None,
            bound_step_s: float = 60.0) -> dict[str, Any]:
    from hil.bound import perfect_foresight

    cfg = scenario.station_config()
    tol = cfg.dispatch.settle_tolerance_kw
    runs: dict[str, SimResult] = {}
    rows = []
    for name in policies or POLICY_ORDER:
        res = simulate(scenario, name, step_s)
        runs[name] = res
        m = metrics(res, tol)
        m.pop("per_session")
        rows.append(m)
    plugs = scenario.plugs(cfg)
    # the bound under the station's own constraints (the BESS reserve kept outside dispatch windows, as
    # our controller must), and the looser bound for any policy (the baselines know no reserve)
    bound = perfect_foresight(cfg, plugs, scenario, step_s=bound_step_s, keep_reserve=True)
    loose = perfect_foresight(cfg, plugs, scenario, step_s=bound_step_s)
    best = float(bound.energy_delivered_kwh)
    for m in rows:
        m["bound_fraction"] = round(m["energy_net_kwh"] / best, 5) if best > 0 else None
        m["loose_bound_fraction"] = round(m["energy_net_kwh"] / loose.energy_delivered_kwh, 5)
    ours = next((m for m in rows if m["policy"] == "ours"), None)
    if ours is not None:
        ours["expectations"] = check_expectations(ours, scenario.expect)
    return {
        "scenario": scenario.name,
        "bound": {"energy_delivered_kwh": round(best, 3), "step_s": bound_step_s, "keeps_reserve": True,
                  "solve_s": round(bound.solve_s, 3), "status": bound.status},
        "loose_bound": {"energy_delivered_kwh": round(loose.energy_delivered_kwh, 3), "keeps_reserve": False,
                        "solve_s": round(loose.solve_s, 3), "status": loose.status},
        "policies": rows,
        "goal": goal(rows),
        "_runs": runs,
    }


def goal(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The goal of docs/benchmarks.md: ours >= every baseline on energy with zero cap violations, >= 97 %
    of the bound. Baselines that break the cap do not count as beaten-by-cheating: they are listed."""
    ours = next((m for m in rows if m["policy"] == "ours"), None)
    if ours is None:
        return {}
    others = [m for m in rows if m["policy"] != "ours"]
    return {
        "zero_cap_violations": ours["cap_violations"] == 0,
        "beats_every_baseline": all(ours["energy_net_kwh"] >= m["energy_net_kwh"] - 1e-6
                                    for m in others if m["cap_violations"] == 0),
        "baselines_breaking_the_cap": [m["policy"] for m in others if m["cap_violations"] > 0],
        "bound_fraction": ours.get("bound_fraction"),
        "at_least_97_percent": (ours.get("bound_fraction") or 0.0) >= 0.97,
    }


def markdown_table(result: dict[str, Any]) -> str:
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, rule]
    for m in result["policies"]:
        cells = []
        for key, _, fmt in COLUMNS:
            v = m.get(key)
            if key == "v2g_delivered_kwh":
                cells.append(f"{m['v2g_delivered_kwh']:.0f} ({m['v2g_asked_kwh']:.0f})")
            else:
                cells.append("-" if v is None else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    b = result["bound"]
    lo = result["loose_bound"]
    lines.append(f"\nPerfect-foresight bound: {b['energy_delivered_kwh']:.0f} kWh net to vehicles with the BESS "
                 f"reserve kept outside dispatch windows, {lo['energy_delivered_kwh']:.0f} kWh without it "
                 f"(LPs at {b['step_s']:g} s, solved in {b['solve_s']:.1f} s and {lo['solve_s']:.1f} s, {b['status']}).")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Grid power of every policy against the cap and target, and energy delivered per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, SimResult] = result["_runs"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 1]})
    first = next(iter(runs.values()))
    t_h = first.t_s / 3600.0
    for name, res in runs.items():
        ax.plot(t_h, res.grid_kw, lw=0.8, label=name)
    ax.plot(t_h, first.cap_kw, color="red", ls="--", lw=1.2, label="import cap")
    if np.any(~np.isnan(first.target_kw)):
        ax.plot(t_h, first.target_kw, color="orange", ls=":", lw=1.5, label="target")
    ax.set_xlabel("hours from start")
    ax.set_ylabel("grid kW")
    ax.set_title(f"{result['scenario']}: grid power by policy")
    ax.legend(fontsize=7)
    names = [m["policy"] for m in result["policies"]] + ["bound"]
    values = [m["energy_net_kwh"] for m in result["policies"]] + [result["bound"]["energy_delivered_kwh"]]
    colors = ["tab:red" if m["cap_violations"] else "tab:blue" for m in result["policies"]] + ["grey"]
    ax2.bar(names, values, color=colors)
    ax2.set_ylabel("net kWh to vehicles (red: broke the cap)")
    ax2.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    (out_dir / "compare.json").write_text(json.dumps(public, indent=2, allow_nan=False) + "\n")
    (out_dir / "compare.md").write_text(f"# {result['scenario']}\n\n" + markdown_table(result) + "\n")
    plot(result, out_dir / "compare.png")
