"""Helpers of the scenario tests: a small valid scenario on the megawatt hub, built as data (no files)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hil.scenarios import Scenario, validate_scenario

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"
HUB = CONFIG_DIR / "megawatt-hub.yaml"

BASE: dict[str, Any] = {
    "name": "unit",
    "station": "megawatt-hub.yaml",  # relative to CONFIG_DIR, the base_dir the helpers pass
    "start": "2026-07-15T14:00:00+08:00",
    "duration_s": 14400,
    "arrivals": [
        {"id": "car-1", "kind": "car", "at": 0, "dwell_s": 1800},
        {"id": "truck-1", "kind": "truck", "at": "14:30", "dwell_s": 2700, "guns": ["T1", "T2"]},
    ],
    "random_arrivals": {
        "seed": 7,
        "rates": [{"from": "14:00", "per_hour": 20}, {"from": "16:00", "per_hour": 10}],
        "mix": [{"weight": 1, "kind": "fast_car", "dwell_s": [1200, 2400]}],
    },
    "dispatch": [{"at": "15:00", "valid_s": 1800, "import_limit_kw": 0, "export_limit_kw": 1100, "target_kw": -1000}],
    "faults": [{"at": 600, "duration_s": 60, "kind": "module_fault", "target": "C1.M03"}],
    "tariff": {"periods": [{"from": "08:00", "price_per_kwh": 0.7}, {"from": "22:00", "price_per_kwh": 0.3}]},
    "expect": {"max_cap_violations": 0, "min_bound_fraction": 0.97},
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def build(data: dict[str, Any]) -> Scenario:
    """A scenario from data; fails the test with every issue if it is not valid."""
    scn, issues = validate_scenario(data, CONFIG_DIR)
    errors = [str(i) for i in issues if i.severity == "error"]
    assert scn is not None and not errors, errors
    return scn


def errors_of(data: dict[str, Any]) -> list[str]:
    _, issues = validate_scenario(data, CONFIG_DIR)
    return [str(i) for i in issues if i.severity == "error"]
