"""Station file validation: the shipped files pass; each kind of mistake is named by key path and rule."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from station.config import (
    ConfigError,
    cross_checks_skipped,
    json_schema,
    load_config,
    parse_module_ranges,
    read_yaml,
    validate_config,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "station.yaml"
HUB = REPO / "config" / "megawatt-hub.yaml"


def demo() -> dict[str, Any]:
    return copy.deepcopy(read_yaml(DEMO))


def errors_of(data: dict[str, Any]) -> list[str]:
    _, issues = validate_config(data)
    return [str(i) for i in issues if i.severity == "error"]


def test_shipped_stations_are_valid_and_as_described() -> None:
    cfg = load_config(DEMO)
    assert len(cfg.guns()) == 4 and cfg.bess is not None
    hub = load_config(HUB)
    guns = hub.guns()
    assert len(guns) >= 12
    assert max(g.max_power_kw for g in guns if g.id.startswith("P")) == 600
    assert any(g.bidirectional for g in guns)
    assert hub.bess is not None and hub.bess.capacity_kwh >= 1000  # MWh-class
    assert sum(g.max_power_kw for g in guns) > 3 * hub.import_cap_kw  # cap well below the sum of the guns
    allowed = hub.module_gun_matrix()
    assert any(sum(row) > 1 for row in allowed)  # a shared cabinet with a switch matrix


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["dispensers"][1]["guns"][0].__setitem__("max_current_a", 0), "dispensers[1].guns[0].max_current_a: must be > 0"),
        (lambda d: d["grid"].__setitem__("import_limit_kw", "400"), "grid.import_limit_kw: must be a number"),
        (lambda d: d["grid"].__setitem__("imprt_limit_kw", 1), "grid.imprt_limit_kw: unknown key"),
        (lambda d: d["bess"].__setitem__("reserve_soc", 1.5), "bess.reserve_soc: must be <= 1"),
        (lambda d: d["station"].__setitem__("id", "Demo 01"), "station.id: must match"),
        (lambda d: d.pop("grid"), "grid: is required"),
        (lambda d: d["cabinets"][0]["modbus"].__setitem__("transport", "udp"), "cabinets[0].modbus: transport must be one of"),
        (lambda d: d["switch_matrix"][0].__setitem__("modules", "6-1"), "switch_matrix[0].modules: '6-1' must be an ascending range"),
        (lambda d: d["dispensers"][0]["guns"][0].__setitem__("cooling", "water"), "dispensers[0].guns[0].cooling: must be one of"),
    ],
)
def test_field_errors_name_key_path_and_rule(mutate: Any, expected: str) -> None:
    d = demo()
    mutate(d)
    errs = errors_of(d)
    assert any(e.startswith(expected) for e in errs), errs


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["dispensers"][1]["guns"][0].__setitem__("id", "A1"), "dispensers[1].guns[0].id: duplicate gun id 'A1'"),
        (lambda d: d["switch_matrix"][0].__setitem__("cabinet", "C9"), "switch_matrix[0].cabinet: refers to unknown cabinet 'C9'"),
        (lambda d: d["switch_matrix"][0].__setitem__("guns", ["A1", "Z9"]), "switch_matrix[0].guns[1]: refers to unknown gun 'Z9'"),
        (lambda d: d["switch_matrix"][0].__setitem__("modules", "1-13"), "switch_matrix[0].modules: module 13 does not exist"),
        (lambda d: d["dispensers"][0]["guns"][0].__setitem__("max_power_kw", 600), "dispensers[0].guns[0].max_power_kw: 600 kW exceeds what its reachable modules deliver (480 kW)"),
        (lambda d: d["dispensers"][0]["guns"][1]["can"].__setitem__("channel", "A1"), "dispensers[0].guns[1].can.channel: CAN channel 'A1' is already used"),
        (lambda d: d["bess"]["modbus"].__setitem__("port", 15020), "bess.modbus.unit_id: unit id 1 on tcp://127.0.0.1:15020 is already used by cabinets[0].modbus"),
        (lambda d: d["meters"][0]["modbus"].update(port=15020, unit_id=12), "meters[0].modbus.unit_id: unit id 12"),
        (lambda d: d["bess"].__setitem__("reserve_soc", 0.01), "bess.reserve_soc: must lie between soc_min and soc_max"),
        (lambda d: d["dispensers"][0]["guns"][0].__setitem__("bidirectional", True), "dispensers[0].guns[0].max_discharge_kw: must be > 0 for a bidirectional gun"),
        (lambda d: d["grid"].__setitem__("meter", "nope"), "grid.meter: refers to unknown meter 'nope'"),
        (lambda d: d["dispatch"].__setitem__("fallback_import_limit_kw", 900), "dispatch.fallback_import_limit_kw: must not exceed the grid import cap"),
        (lambda d: d["grid"].__setitem__("aux_load_kw", 500), "grid.aux_load_kw: must be below the import cap"),
    ],
)
def test_site_cross_checks(mutate: Any, expected: str) -> None:
    d = demo()
    mutate(d)
    errs = errors_of(d)
    assert any(e.startswith(expected) for e in errs), errs


def test_all_errors_are_reported_at_once() -> None:
    d = demo()
    d["switch_matrix"][0]["cabinet"] = "C9"
    d["dispensers"][1]["guns"][0]["id"] = "A1"
    d["bess"]["reserve_soc"] = 0.01
    assert len(errors_of(d)) >= 3


def test_unknown_keys_do_not_hide_cross_check_errors() -> None:
    """A misspelt key (stage 1) and a duplicate CAN channel (stage 2) in one file: one run lists both."""
    d = demo()
    d["grid"]["extra"] = 1
    d["cabinets"][0]["modbus"]["extra"] = 2  # inside a tagged union (transport: tcp)
    d["dispensers"][0]["guns"][1]["can"]["channel"] = "A1"
    errs = errors_of(d)
    assert "grid.extra: unknown key" in errs
    assert "cabinets[0].modbus.extra: unknown key" in errs
    assert any(e.startswith("dispensers[0].guns[1].can.channel: CAN channel 'A1' is already used") for e in errs), errs
    cfg, issues = validate_config(d)
    assert cfg is None and not cross_checks_skipped(issues)


def test_other_field_errors_leave_cross_checks_unrun_and_say_so(tmp_path: Path) -> None:
    """A value out of range is not replaced by a guess to cross-check the site: check-config says the
    cross-checks come after the field errors are fixed."""
    d = demo()
    d["dispensers"][0]["guns"][0]["max_current_a"] = -5
    d["dispensers"][0]["guns"][1]["can"]["channel"] = "A1"
    cfg, issues = validate_config(d)
    assert cfg is None and cross_checks_skipped(issues)
    assert [str(i) for i in issues] == ["dispensers[0].guns[0].max_current_a: must be > 0"]
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(d))
    run = subprocess.run([sys.executable, "-m", "station.cli", "check-config", str(f)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "max_current_a: must be > 0" in run.stderr and "cross-checks run once the field errors" in run.stderr


def test_module_range_syntax() -> None:
    assert parse_module_ranges("1-3, 5,7-8") == [1, 2, 3, 5, 7, 8]
    for bad in ("", "0-2", "3-1", "a", "1-3,2"):
        with pytest.raises(ValueError):
            parse_module_ranges(bad)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("station:\n  id: x\n grid: [\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_config(f)


def test_exported_schema_is_current_and_validates_the_shipped_files() -> None:
    committed = json.loads((REPO / "docs" / "config.schema.json").read_text())
    assert committed == json_schema(), "run: station check-config x --schema > docs/config.schema.json"
    import jsonschema  # dev extra
    for f in (DEMO, HUB):
        jsonschema.validate(yaml.safe_load(f.read_text()), committed)


def test_check_config_cli(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "station.cli", "check-config", str(HUB)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "mw-hub-01" in ok.stdout and "configuration OK" in ok.stdout
    assert len(ok.stdout.splitlines()) <= 40  # one screen
    d = demo()
    d["grid"]["typo"] = 1
    d["switch_matrix"][0]["cabinet"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(d))
    res = subprocess.run([sys.executable, "-m", "station.cli", "check-config", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "grid.typo: unknown key" in res.stderr and "switch_matrix[0].cabinet: must be a string" in res.stderr


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@given(st.data())
def test_no_mutation_of_a_station_file_crashes_validation(data: st.DataObject) -> None:
    d = demo()
    for _ in range(data.draw(st.integers(1, 4))):
        paths = [p for p in _paths(d) if p]
        path = data.draw(st.sampled_from(paths))
        parent = d
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(path[-1])
        else:
            parent[path[-1]] = data.draw(JUNK)
    cfg, issues = validate_config(d)  # must not raise
    assert cfg is not None or any(i.severity == "error" for i in issues)
    for i in issues:
        assert i.path and i.rule


def test_a_modbus_endpoint_without_transport_says_what_is_missing() -> None:
    data = read_yaml(REPO / "config" / "station.yaml")
    del data["cabinets"][0]["modbus"]["transport"]
    cfg, issues = validate_config(data)
    assert cfg is None
    assert [(i.path, i.rule) for i in issues] == [("cabinets[0].modbus", "transport is required (tcp or rtu)")]
