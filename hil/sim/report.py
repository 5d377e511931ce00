"""Scorekeeping of a simulation run: the metrics of ``report.json``, the expectations, CSV and plot.

Definitions (documented for users in docs/simulation.md):

* energy requested/delivered per session: stored in the pack towards the driver's target SoC;
  a session *left short* ended more than 1 % of capacity below its target; vehicles turned away (no
  compatible gun free) are counted separately and are not "short" (no policy could serve them);
* charged kWh: at the vehicle terminals; net kWh: charged minus V2G discharged, at the terminals (what the
  perfect-foresight bound maximises, and what the comparison ranks policies by);
* a *cap violation* is a step whose true grid import exceeds the import cap in force by more than
  ``CAP_TOLERANCE_KW`` (the meter's noise level); the worst excess is reported without tolerance;
* dispatch tracking error: grid minus target over every step that has a target, from the first step of
  the window (response included); *response time* of a window: seconds from its start to the first step
  inside ``settle_tolerance_kw`` of its target (or under its cap), *settle time*: to the step after
  which it stays inside;
* V2G: export energy delivered during windows with an export target vs the energy asked.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hil.sim.run import SimResult

CAP_TOLERANCE_KW = 1.0


def metrics(res: SimResult, settle_tolerance_kw: float = 20.0) -> dict[str, Any]:
    dt_h = res.step_s / 3600.0
    grid = res.grid_kw
    plugged = [s for s in res.sessions if not s.turned_away]
    requested = sum(s.requested_kwh for s in plugged)
    delivered = sum(s.delivered_kwh for s in plugged)
    over = grid - res.cap_kw
    exp_over = -grid - res.export_cap_kw
    has_target = ~np.isnan(res.target_kw)
    err = (grid - res.target_kw)[has_target]
    imp = np.maximum(grid, 0.0)
    exp = np.maximum(-grid, 0.0)
    cost = math.nan
    if not np.all(np.isnan(res.price)):
        cost = float(np.nansum(res.price * imp) * dt_h - np.nansum(res.export_price * exp) * dt_h)
    windows = [_window_metrics(res, w, settle_tolerance_kw) for w in res.windows]
    asked = sum(w["export_asked_kwh"] for w in windows)
    got = sum(w["export_delivered_kwh"] for w in windows)
    return {
        "scenario": res.scenario,
        "policy": res.policy,
        "step_s": res.step_s,
        "duration_s": float(len(grid) * res.step_s),
        "wall_s": round(res.wall_s, 3),
        "sessions": len(plugged),
        "turned_away": len(res.sessions) - len(plugged),
        "energy_requested_kwh": round(requested, 3),
        "energy_delivered_kwh": round(delivered, 3),
        "energy_charged_kwh": round(sum(s.charged_kwh for s in plugged), 3),
        "energy_net_kwh": round(sum(s.charged_kwh - s.discharged_kwh for s in plugged), 3),
        "demand_met": round(delivered / requested, 5) if requested > 0 else 1.0,
        "sessions_short": sum(1 for s in plugged if s.left_short),
        "peak_import_kw": round(float(grid.max(initial=0.0)), 3),
        "cap_violations": int(np.count_nonzero(over > CAP_TOLERANCE_KW)),
        "cap_worst_excess_kw": round(float(max(0.0, over.max(initial=0.0))), 3),
        "export_cap_violations": int(np.count_nonzero(exp_over > CAP_TOLERANCE_KW)),
        "grid_import_kwh": round(float(imp.sum() * dt_h), 3),
        "grid_export_kwh": round(float(exp.sum() * dt_h), 3),
        "tracking_rms_kw": round(float(np.sqrt(np.mean(err**2))), 3) if err.size else None,
        "tracking_worst_kw": round(float(np.abs(err).max()), 3) if err.size else None,
        "v2g_asked_kwh": round(asked, 3),
        "v2g_delivered_kwh": round(got, 3),
        "v2g_fraction": round(got / asked, 5) if asked > 0 else None,
        "vehicle_v2g_kwh": round(sum(s.discharged_kwh for s in plugged), 3),
        "bess_discharged_kwh": round(float(np.maximum(res.bess_kw, 0).sum() * dt_h), 3),
        "bess_charged_kwh": round(float(np.maximum(-res.bess_kw, 0).sum() * dt_h), 3),
        "bess_final_soc": round(float(res.bess_soc[-1]), 5) if len(res.bess_soc) else None,
        "cost": None if math.isnan(cost) else round(cost, 2),
        "dispatch": windows,
        "per_session": [_session(s) for s in res.sessions],
    }


def _session(s: Any) -> dict[str, Any]:
    return {
        "vehicle": s.vehicle_id, "kind": s.kind, "gun": s.gun or None, "arrival_s": s.arrival_s,
        "departure_s": s.departure_s, "requested_kwh": round(s.requested_kwh, 3),
        "delivered_kwh": round(s.delivered_kwh, 3), "charged_kwh": round(s.charged_kwh, 3),
        "v2g_kwh": round(s.discharged_kwh, 3), "initial_soc": s.initial_soc,
        "final_soc": None if math.isnan(s.final_soc) else round(s.final_soc, 5), "target_soc": s.target_soc,
        "left_short": s.left_short, "turned_away": s.turned_away,
    }


def _window_metrics(res: SimResult, w: Any, tol: float) -> dict[str, Any]:
    t = res.t_s
    inside = (t >= w.start_s) & (t < w.end_s)
    idx = np.flatnonzero(inside)
    out: dict[str, Any] = {"start_s": w.start_s, "end_s": w.end_s, "import_limit_kw": w.import_limit_kw,
                           "export_limit_kw": w.export_limit_kw,
                           "target_kw": None if math.isnan(w.target_kw) else w.target_kw,
                           "response_s": None, "settle_s": None, "tracking_rms_kw": None,
                           "export_asked_kwh": 0.0, "export_delivered_kwh": 0.0}
    if idx.size == 0:
        return out
    g = res.grid_kw[idx]
    ok = np.abs(g - w.target_kw) <= tol if not math.isnan(w.target_kw) else g <= w.import_limit_kw + CAP_TOLERANCE_KW
    first = np.flatnonzero(ok)
    if first.size:
        out["response_s"] = float(t[idx[first[0]]] - w.start_s)
    bad = np.flatnonzero(~ok)
    if bad.size == 0:
        out["settle_s"] = 0.0
    elif bad[-1] + 1 < idx.size:
        out["settle_s"] = float(t[idx[bad[-1] + 1]] - w.start_s)
    dt_h = res.step_s / 3600.0
    if not math.isnan(w.target_kw):
        out["tracking_rms_kw"] = round(float(np.sqrt(np.mean((g - w.target_kw) ** 2))), 3)
        if w.target_kw < 0:
            out["export_asked_kwh"] = round(-w.target_kw * idx.size * dt_h, 3)
            out["export_delivered_kwh"] = round(float(np.maximum(-g, 0.0).sum() * dt_h), 3)
    return out


# expectation key -> (metric, comparison)
EXPECTATIONS = {
    "min_demand_met": ("demand_met", ">="),
    "max_cap_violations": ("cap_violations", "<="),
    "max_cap_excess_kw": ("cap_worst_excess_kw", "<="),
    "max_tracking_rms_kw": ("tracking_rms_kw", "<="),
    "max_tracking_worst_kw": ("tracking_worst_kw", "<="),
    "min_v2g_fraction": ("v2g_fraction", ">="),
    "max_sessions_short": ("sessions_short", "<="),
    "max_response_s": ("worst_response_s", "<="),
    "min_bound_fraction": ("bound_fraction", ">="),
}


def check_expectations(m: dict[str, Any], expect: Any) -> list[dict[str, Any]]:
    """Pass/fail per ``expect:`` threshold. A metric that cannot be computed (e.g. no export asked) fails."""
    values = dict(m)
    responses = [w["settle_s"] for w in m.get("dispatch", [])]
    values["worst_response_s"] = (None if any(r is None for r in responses) else max(responses, default=0.0))
    raw = expect.model_dump(exclude_none=True) if hasattr(expect, "model_dump") else dict(expect or {})
    out = []
    for key, threshold in raw.items():
        metric, op = EXPECTATIONS[key]
        value = values.get(metric)
        if value is None and metric == "bound_fraction":  # needs the LP bound: station-hil compare
            out.append({"expect": key, "metric": metric, "threshold": threshold, "value": None, "pass": None,
                        "note": "evaluated by station-hil compare"})
            continue
        if value is None:
            ok = False
        else:
            ok = value >= threshold if op == ">=" else value <= threshold
        out.append({"expect": key, "metric": metric, "threshold": threshold, "value": value, "pass": bool(ok)})
    return out


def write_timeseries(res: SimResult, path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t_s", "grid_kw", "meter_kw", "cap_kw", "export_cap_kw", "target_kw", "bess_kw", "bess_soc",
                    *[f"gun_{g}_kw" for g in res.gun_ids]])
        for k in range(len(res.t_s)):
            row = [res.t_s[k], res.grid_kw[k], res.meter_kw[k], res.cap_kw[k], res.export_cap_kw[k], res.target_kw[k],
                   res.bess_kw[k], res.bess_soc[k], *res.gun_kw[k]]
            w.writerow(["" if isinstance(x, float) and math.isnan(x) else f"{x:.3f}" for x in map(float, row)])


def plot_power(res: SimResult, path: Path, title: str = "") -> None:
    """Stacked power: guns (by dispenser group) and BESS discharge above zero, with grid, cap and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_h = res.t_s / 3600.0
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    groups: dict[str, np.ndarray] = {}
    for i, gid in enumerate(res.gun_ids):
        key = gid.rstrip("0123456789") or gid
        groups[key] = groups.get(key, 0) + np.maximum(res.gun_kw[:, i], 0.0)
    layers = list(groups.values())
    labels = [f"guns {k}*" for k in groups]
    ax.stackplot(t_h, *layers, labels=labels, alpha=0.8)
    v2g = np.minimum(res.gun_kw, 0.0).sum(axis=1)
    if np.any(v2g < 0):
        ax.fill_between(t_h, v2g, 0, color="tab:purple", alpha=0.6, label="V2G discharge")
    ax.plot(t_h, res.bess_kw, color="tab:green", lw=1.0, label="BESS (+ discharge)")
    ax.plot(t_h, res.grid_kw, color="black", lw=1.0, label="grid (true)")
    ax.plot(t_h, res.cap_kw, color="red", lw=1.2, ls="--", label="import cap")
    if np.any(~np.isnan(res.target_kw)):
        ax.plot(t_h, res.target_kw, color="orange", lw=1.5, ls=":", label="dispatch target")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("kW")
    ax.set_title(title or f"{res.scenario} - {res.policy}")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    ax2.plot(t_h, res.bess_soc, color="tab:green")
    ax2.set_ylabel("BESS SoC")
    ax2.set_xlabel("hours from start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(res: SimResult, out_dir: Path, expect: Any, settle_tolerance_kw: float,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    m = metrics(res, settle_tolerance_kw)
    m.update(extra or {})
    m["expectations"] = check_expectations(m, expect)
    m["passed"] = all(e["pass"] is not False for e in m["expectations"])
    (out_dir / "report.json").write_text(json.dumps(m, indent=2, allow_nan=False, default=_json_default) + "\n")
    write_timeseries(res, out_dir / "timeseries.csv")
    plot_power(res, out_dir / "power.png")
    return m


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x).__name__)
