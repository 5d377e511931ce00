"""Scenarios: what happens to a station over one run (format in docs/scenarios.md, schema in
docs/scenarios.schema.json). The shipped scenarios are the ``*.yaml`` files beside this module.

    scn = load_scenario("hil/scenarios/afternoon-peak.yaml")   # raises ScenarioError listing every issue
    cfg = scn.station_config()
    for plug in scn.plugs(cfg): ...                             # vehicles with their guns, by arrival
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hil.scenarios.arrivals import Plug
from hil.scenarios.model import DispatchEvent, Expectations, FaultEvent, MeterSpec, Scenario, Tariff
from hil.scenarios.validate import (ScenarioError, cross_check, load_scenario, parse_scenario_yaml, read_scenario_yaml,
                                    validate_scenario)

SHIPPED_DIR = Path(__file__).resolve().parent


def shipped() -> list[Path]:
    """The scenario files shipped with the package."""
    return sorted(SHIPPED_DIR.glob("*.yaml"))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (exported to docs/scenarios.schema.json)."""
    schema = Scenario.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Scenario"
    return schema


__all__ = [
    "DispatchEvent", "Expectations", "FaultEvent", "MeterSpec", "Plug", "Scenario", "ScenarioError", "Tariff",
    "cross_check", "json_schema", "load_scenario", "parse_scenario_yaml", "read_scenario_yaml", "shipped", "validate_scenario",
]
