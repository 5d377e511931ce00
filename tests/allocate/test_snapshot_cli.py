"""`station allocate`: the snapshot format, its defaults, its errors, and the decision as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from station.allocate import allocate
from station.allocate.snapshot import decision_json, parse_snapshot
from station.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "docs" / "examples" / "snapshot-minimal.json"


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "station.cli", "allocate", *args], input=stdin,
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_minimal_snapshot_from_the_issue_works_with_defaults() -> None:
    proc = run_cli(str(MINIMAL))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["guns"] == [
        {"id": "A1", "power_kw": 300.0, "bound_by": "vehicle", "demand_kw": 300.0, "module_cap_kw": None,
         "state": {"under_s": 0.0, "draw_cap_kw": None}}
    ]
    # no efficiencies given: lossless, grid = guns + aux - bess; the BESS recharges from the headroom
    assert out["grid_import_kw"] == pytest.approx(300.0 + 0.0 - out["bess_kw"])
    assert out["bess_kw"] == pytest.approx(-500.0)
    assert out["unserved_kw"] == 0.0


def test_stdin_and_explain() -> None:
    snap = json.loads(MINIMAL.read_text())
    snap["grid"]["import_limit_kw"] = 100
    snap["bess"]["available"] = False
    proc = run_cli("-", "--explain", stdin=json.dumps(snap))
    assert proc.returncode == 0, proc.stderr
    assert "A1" in proc.stdout and "100.0 kW of   300.0 asked" in proc.stdout and "the grid cap" in proc.stdout


def test_bad_snapshot_lists_every_error_with_its_key_path() -> None:
    bad = {"dt_s": 0, "grid": {"import_limit_kw": "800"}, "guns": [{"id": "A", "demand_kw": -1, "typo": 1}]}
    proc = run_cli("-", stdin=json.dumps(bad))
    assert proc.returncode == 1
    assert "dt_s: must be > 0" in proc.stderr
    assert "grid.import_limit_kw: must be a number" in proc.stderr
    assert "guns[0].demand_kw: must be >= 0" in proc.stderr
    assert "guns[0].typo: unknown key" in proc.stderr
    proc = run_cli("-", stdin="{not json")
    assert proc.returncode == 1 and "not JSON" in proc.stderr


def test_module_references_are_checked() -> None:
    snap = {"dt_s": 1, "grid": {"import_limit_kw": 100}, "guns": [{"id": "A"}],
            "modules": [{"id": "M1", "rated_kw": 40, "guns": ["B"]}]}
    with pytest.raises(ConfigError, match="unknown gun 'B'"):
        parse_snapshot(snap)


def test_snapshot_with_modules_target_and_both_engines_agree() -> None:
    snap = {
        "dt_s": 0.1,
        "grid": {"import_limit_kw": 300, "export_limit_kw": 200, "target_kw": -100},
        "bess": {"soc": 0.3, "capacity_kwh": 200, "max_charge_kw": 50, "max_discharge_kw": 50},
        "guns": [{"id": "A", "demand_kw": 120, "priority": 1},
                 {"id": "B", "demand_kw": 0, "v2g_available_kw": 80, "priority": 2}],
        "modules": [{"id": f"M{i}", "rated_kw": 40, "guns": ["A", "B"], "gun": "A" if i < 3 else None}
                    for i in range(6)],
    }
    inp = parse_snapshot(snap)
    a, b = decision_json(inp, allocate(inp)), decision_json(inp, allocate(inp, "reference"))
    assert a["grid_import_kw"] == pytest.approx(b["grid_import_kw"])
    assert [g["power_kw"] for g in a["guns"]] == pytest.approx([g["power_kw"] for g in b["guns"]])
    assert a["modules"] == b["modules"]
    # export target -100: the BESS gives its 50 first, then B discharges all it offered (free modules
    # are switched to it at once), and only then is A's charging curtailed
    assert a["grid_import_kw"] == pytest.approx(-100.0)
    assert a["bess_kw"] == pytest.approx(50.0)
    assert [g["power_kw"] for g in a["guns"]] == pytest.approx([30.0, -80.0])
    assert [g["bound_by"] for g in a["guns"]] == ["grid", "vehicle"]
    assert "tracking" in a["flags"] and "v2g_active" in a["flags"]
    assert [m["gun"] for m in a["modules"]] == ["A", "A", "A", "B", "B", None]
