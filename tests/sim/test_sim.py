"""The offline simulator end to end: metrics against hand-computed cases, small scenarios through the real
loader, determinism, and the command's outputs and exit codes."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hil.scenarios import load_scenario
from hil.sim.report import check_expectations, metrics
from hil.sim.run import SessionRecord, SimResult, simulate
from hil.sim.timeline import Window

ROOT = Path(__file__).resolve().parents[2]


def result(grid: list[float], cap: float = 100.0, target: list[float] | None = None, price: float = math.nan,
           windows: list[Window] | None = None, sessions: list[SessionRecord] | None = None) -> SimResult:
    n = len(grid)
    return SimResult(
        scenario="hand", policy="test", step_s=60.0, gun_ids=["A"], t_s=np.arange(n) * 60.0, grid_kw=np.array(grid),
        meter_kw=np.array(grid), cap_kw=np.full(n, cap), export_cap_kw=np.full(n, 50.0),
        target_kw=np.array(target if target is not None else [math.nan] * n), bess_kw=np.zeros(n),
        bess_soc=np.full(n, 0.5), gun_kw=np.zeros((n, 1)), price=np.full(n, price), export_price=np.full(n, 0.2),
        sessions=sessions or [], windows=windows or [])


def test_metrics_of_a_hand_computed_run() -> None:
    """Four 1-minute steps: 90, 101.5, 100.5, -30 kW against a 100 kW cap, price 1.0, export 0.2."""
    r = result([90.0, 101.5, 100.5, -30.0], price=1.0)
    m = metrics(r)
    assert m["cap_violations"] == 1  # 101.5 is over by more than the 1 kW tolerance, 100.5 is not
    assert m["cap_worst_excess_kw"] == pytest.approx(1.5)
    assert m["peak_import_kw"] == pytest.approx(101.5)
    assert m["grid_import_kwh"] == pytest.approx((90 + 101.5 + 100.5) / 60, abs=1e-3)
    assert m["grid_export_kwh"] == pytest.approx(0.5, abs=1e-3)
    assert m["cost"] == pytest.approx(round((90 + 101.5 + 100.5) / 60 * 1.0 - 0.5 * 0.2, 2))


def test_tracking_response_and_export_of_a_hand_computed_window() -> None:
    """A window asks -40 kW for 4 steps; the grid goes 0, -30, -41, -39 (tolerance 5 kW)."""
    w = Window(start_s=60.0, end_s=300.0, import_limit_kw=0.0, export_limit_kw=50.0, target_kw=-40.0)
    grid = [10.0, 0.0, -30.0, -41.0, -39.0, 5.0]
    target = [math.nan, -40.0, -40.0, -40.0, -40.0, math.nan]
    m = metrics(result(grid, target=target, windows=[w]), settle_tolerance_kw=5.0)
    errors = np.array([40.0, 10.0, -1.0, 1.0])
    assert m["tracking_rms_kw"] == pytest.approx(float(np.sqrt(np.mean(errors**2))), abs=1e-3)
    assert m["tracking_worst_kw"] == pytest.approx(40.0)
    d = m["dispatch"][0]
    assert d["response_s"] == 120.0 and d["settle_s"] == 120.0  # first inside at t=180 s, stays inside
    assert d["export_asked_kwh"] == pytest.approx(40 * 4 / 60, abs=1e-3)
    assert d["export_delivered_kwh"] == pytest.approx((30 + 41 + 39) / 60, abs=1e-3)
    assert m["v2g_fraction"] == pytest.approx(110 / 160, abs=1e-3)  # from kWh rounded to Wh


def test_sessions_and_expectations() -> None:
    full = SessionRecord("a", "A", "car", 0, 600, 50.0, 0.2, 0.8, final_soc=0.8, charged_kwh=31.0)
    short = SessionRecord("b", "A", "car", 0, 600, 50.0, 0.2, 0.8, final_soc=0.5, charged_kwh=15.5)
    away = SessionRecord("c", "", "car", 0, 600, 50.0, 0.2, 0.8, final_soc=0.2)
    m = metrics(result([10.0], sessions=[full, short, away]))
    assert (m["sessions"], m["turned_away"], m["sessions_short"]) == (2, 1, 1)
    assert m["energy_requested_kwh"] == pytest.approx(60.0)
    assert m["energy_delivered_kwh"] == pytest.approx(45.0)
    assert m["demand_met"] == pytest.approx(0.75)
    checks = check_expectations(m, {"min_demand_met": 0.8, "max_sessions_short": 1, "min_bound_fraction": 0.97})
    assert [c["pass"] for c in checks] == [False, True, None]


def write_scenario(tmp: Path, body: str) -> Path:
    path = tmp / "s.yaml"
    path.write_text(f"station: {ROOT / 'config' / 'station.yaml'}\nstart: 2026-07-15T10:00:00+08:00\n" + body)
    return path


def test_one_car_under_a_generous_cap_gets_exactly_what_it_asked(tmp_path: Path) -> None:
    """60 kWh pack from 20 % to 80 %: 36 kWh requested, all delivered, terminal energy = stored + I^2R
    heat, grid energy = terminal energy + module losses (the BESS is kept idle: full and unavailable)."""
    scn = load_scenario(write_scenario(tmp_path, """name: one-car
duration_s: 7200
bess_initial_soc: 0.95
meter: {noise_kw: 0}
faults: [{at: 0, duration_s: 7200, kind: bess_unavailable, target: B}]
arrivals: [{id: only, kind: car, at: 0, dwell_s: 7000, capacity_kwh: 60, initial_soc: 0.2, target_soc: 0.8, guns: [A1]}]
"""))
    res = simulate(scn)
    m = metrics(res)
    s = res.sessions[0]
    assert (m["sessions"], m["sessions_short"]) == (1, 0)
    assert m["energy_requested_kwh"] == pytest.approx(36.0)
    assert m["energy_delivered_kwh"] == pytest.approx(36.0, abs=1e-6)
    assert s.final_soc == pytest.approx(0.8, abs=2e-3)
    assert m["bess_discharged_kwh"] == 0.0 and m["bess_charged_kwh"] == 0.0
    aux_kwh = scn.station_config().grid.aux_load_kw * 2
    losses = m["grid_import_kwh"] - aux_kwh - s.charged_kwh
    assert 0.0 < losses < s.charged_kwh * 0.06  # modules at 96 % nominal, a bit worse at light load
    assert m["cap_violations"] == 0


def test_two_cars_on_one_gun_list_the_second_is_turned_away(tmp_path: Path) -> None:
    scn = load_scenario(write_scenario(tmp_path, """name: turned-away
duration_s: 600
arrivals:
  - {id: first, kind: car, at: 0, dwell_s: 600, guns: [A1, A2, B1, B2]}
  - {id: second, kind: car, at: 10, dwell_s: 600, guns: [A1, A2, B1, B2]}
  - {id: third, kind: car, at: 20, dwell_s: 600, guns: [A1, A2, B1, B2]}
  - {id: fourth, kind: car, at: 30, dwell_s: 600, guns: [A1, A2, B1, B2]}
  - {id: fifth, kind: car, at: 40, dwell_s: 600}
"""))
    m = metrics(simulate(scn))
    assert (m["sessions"], m["turned_away"]) == (4, 1)
    assert [s["vehicle"] for s in m["per_session"] if s["turned_away"]] == ["fifth"]


def test_same_scenario_same_report() -> None:
    scn = load_scenario(ROOT / "hil" / "scenarios" / "demo.yaml")
    a, b = metrics(simulate(scn)), metrics(simulate(scn))
    for m in (a, b):
        m.pop("wall_s")
    assert a == b


def test_sim_command_writes_its_outputs_and_fails_on_a_missed_expectation(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, """name: strict
duration_s: 900
arrivals: [{id: big, kind: fast_car, at: 0, dwell_s: 900, capacity_kwh: 100, initial_soc: 0.1, target_soc: 0.9}]
expect: {min_demand_met: 0.99, max_cap_violations: 0}
""")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "hil.cli", "sim", str(path), "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 1, run.stderr  # 15 minutes cannot take 80 kWh into one car
    assert "FAIL min_demand_met" in run.stdout and "PASS max_cap_violations" in run.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False
    assert [e["pass"] for e in report["expectations"]] == [False, True]
    rows = list(csv.DictReader((out / "timeseries.csv").open()))
    assert len(rows) == 900 and set(rows[0]) >= {"t_s", "grid_kw", "cap_kw", "bess_soc", "gun_A1_kw"}
    assert (out / "power.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sim_command_reports_a_bad_scenario_with_its_key_path(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, "name: bad\nduration_s: -5\n")
    run = subprocess.run([sys.executable, "-m", "hil.cli", "sim", str(path), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 2
    assert "duration_s" in run.stderr and not (tmp_path / "o").exists()
