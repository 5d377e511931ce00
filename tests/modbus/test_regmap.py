"""Register-map model and validation: the shipped maps load, and every broken map names key path + rule."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.regmap import MapError, load_map, parse_map, resolve_map_path
from station.config import load_config

REPO = Path(__file__).resolve().parents[2]
DEVICES = REPO / "config" / "devices"

BASE: dict[str, Any] = {
    "device": "test",
    "poll_groups": {"fast": {"period_s": 0.1}},
    "points": {
        "voltage": {"address": 0, "table": "holding", "type": "u16", "scale": -1, "access": "rw", "verify": True},
        "energy": {"address": 1, "table": "input", "type": "u32", "poll": "fast"},
    },
}


def with_points(**points: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["points"].update(points)
    return data


def issues(data: Any) -> list[str]:
    with pytest.raises(MapError) as exc:
        parse_map(data)
    return [str(i) for i in exc.value.issues]


# --------------------------------------------------------------------------- shipped maps


@pytest.mark.parametrize("name", ["dc-module-40kw", "bess-sunspec", "grid-meter"])
def test_shipped_maps_load(name: str) -> None:
    m = load_map(DEVICES / f"{name}.yaml")
    assert m.device == name
    assert all(p.name == key for key, p in m.points.items())


def test_module_map_has_the_points_the_station_needs() -> None:
    m = load_map(DEVICES / "dc-module-40kw.yaml")
    for name in ("voltage_setpoint", "current_limit", "output_enable"):
        p = m.points[name]
        assert (p.table, p.access, p.verify) == ("holding", "rw", True)
    for name in ("measured_voltage", "measured_current", "measured_power", "temperature", "fault_word"):
        assert m.points[name].table == "input"
    faults = m.points["fault_word"].fault_bits()
    assert faults[0].name == "over_temperature" and faults[0].reaction == "derate"
    assert faults[3].attributed_to == "vehicle"
    assert m.poll_groups["fast"].period_s == 0.1


def test_sunspec_maps_lay_out_the_model_chain() -> None:
    bess = load_map(DEVICES / "bess-sunspec.yaml")
    assert bess.sunspec is not None
    assert [(m.id, hdr) for m, hdr, _ in bess.sunspec.model_spans()] == [(1, 40002), (802, 40070), (124, 40134)]
    assert bess.sunspec.end_address == 40160
    assert bess.points["soc"].scale == "soc_sf" and bess.points["p_setpoint"].writable
    meter = load_map(DEVICES / "grid-meter.yaml")
    assert meter.sunspec is not None and meter.sunspec.end_address == 40177


@pytest.mark.parametrize("station", ["station.yaml", "megawatt-hub.yaml"])
def test_every_map_a_station_refers_to_exists_and_loads(station: str) -> None:
    path = REPO / "config" / station
    cfg = load_config(path)
    refs = [c.map for c in cfg.cabinets] + [cfg.bess.map if cfg.bess else None] + [m.map for m in cfg.meters]
    refs = [r for r in refs if r]
    assert len(refs) >= 3
    for ref in refs:
        assert load_map(resolve_map_path(path, ref)).points


def test_active_bits_names_set_bits() -> None:
    m = load_map(DEVICES / "dc-module-40kw.yaml")
    fw = m.points["fault_word"]
    assert [b.name for b in fw.active_bits(0b1001)] == ["over_temperature", "output_over_current"]
    assert fw.active_bits(None) == []


# --------------------------------------------------------------------------- validation errors


def test_minimal_map_is_valid() -> None:
    m = parse_map(BASE)
    assert m.points["energy"].size == 2 and m.points["energy"].end == 3
    assert m.word_order == "big" and m.max_gap == 8


def test_undefined_scale_factor_point() -> None:
    data = with_points(soc={"address": 10, "table": "holding", "type": "u16", "scale": "soc_sf"})
    assert issues(data) == ["points.soc.scale: SunSpec scale-factor point 'soc_sf' is not defined"]


def test_scale_factor_point_must_be_s16_and_unscaled() -> None:
    data = with_points(
        soc={"address": 10, "table": "holding", "type": "u16", "scale": "soc_sf"},
        soc_sf={"address": 11, "table": "holding", "type": "u16"},
    )
    assert issues(data) == ["points.soc.scale: scale-factor point 'soc_sf' must be of type s16, not u16"]
    data["points"]["soc_sf"] = {"address": 11, "table": "holding", "type": "s16", "scale": 1}
    assert issues(data) == ["points.soc_sf.scale: a scale-factor point is not itself scaled"]


def test_overlapping_registers_in_one_table() -> None:
    data = with_points(power={"address": 2, "table": "input", "type": "s32"})
    assert issues(data) == ["points.power.address: input registers 2..3 overlap 'energy' (1..2)"]


def test_same_address_in_different_tables_is_fine() -> None:
    data = with_points(flag={"address": 0, "table": "coil", "type": "bool", "access": "rw"})
    assert parse_map(data).points["flag"].table == "coil"


def test_address_out_of_range() -> None:
    data = with_points(
        far={"address": 70000, "table": "holding", "type": "u16"},
        edge={"address": 65535, "table": "input", "type": "u32"},
    )
    assert issues(data) == [
        "points.far.address: must be within 0..65535",
        "points.edge.address: 2 register(s) from 65535 run past 65535",
    ]


def test_string_needs_length_and_only_strings_have_one() -> None:
    data = with_points(
        serial={"address": 20, "table": "input", "type": "string"},
        count={"address": 30, "table": "input", "type": "u16", "length": 2},
    )
    assert issues(data) == [
        "points.serial.length: is required for a string (registers, 2 characters each)",
        "points.count.length: only strings have a length",
    ]


def test_bit_index_out_of_range_and_duplicate_bit_names() -> None:
    data = with_points(
        faults={"address": 5, "table": "input", "type": "bits16",
                "bits": {0: {"name": "hot"}, 16: {"name": "cold"}, 3: {"name": "hot"}}},
    )
    assert issues(data) == [
        "points.faults.bits[16]: bit index must be within 0..15 for bits16",
        "points.faults.bits[3].name: 'hot' already names bit 0",
    ]


def test_fault_bit_needs_attribution_and_reaction_together() -> None:
    data = with_points(
        faults={"address": 5, "table": "input", "type": "bits32",
                "bits": {31: {"name": "hot", "reaction": "derate"}, 2: {"name": "x", "attributed_to": "aliens",
                                                                         "reaction": "stop_gun"}}},
    )
    got = issues(data)
    assert "points.faults.bits[31]: a fault bit needs both attributed_to and reaction" in got
    assert any(i.startswith("points.faults.bits[2].attributed_to: must be one of") for i in got)


def test_access_and_table_rules() -> None:
    data = with_points(
        meas={"address": 7, "table": "input", "type": "u16", "access": "rw"},
        cmd={"address": 8, "table": "holding", "type": "u16", "access": "w", "verify": True, "poll": "fast"},
        reg_bool={"address": 9, "table": "holding", "type": "bool"},
        coil_u16={"address": 1, "table": "coil", "type": "u16"},
    )
    assert issues(data) == [
        "points.meas.access: 'input' is read-only: access must be r",
        "points.cmd.verify: read-back needs access rw",
        "points.cmd.poll: a write-only point cannot be polled",
        "points.reg_bool.type: bool lives in a coil or discrete table, not in 'holding'",
        "points.coil_u16.type: a coil holds single bits: type must be bool",
    ]


def test_unknown_poll_group_word_order_on_16_bit_and_bad_range() -> None:
    data = with_points(
        a={"address": 10, "table": "holding", "type": "u16", "poll": "medium", "word_order": "little"},
        b={"address": 11, "table": "holding", "type": "u16", "range": {"min": 5, "max": 1}},
        c={"address": 12, "table": "holding", "type": "u16", "range": {}},
    )
    assert issues(data) == [
        "points.a.word_order: only 32-bit types have a word order",
        "points.a.poll: poll group 'medium' is not defined in poll_groups",
        "points.b.range: min must not exceed max",
        "points.c.range: needs min, max or both",
    ]


def test_field_errors_name_the_key_path() -> None:
    data = with_points(x={"address": "12", "table": "register", "type": "u64", "colour": "red"})
    data["poll_groups"]["slow"] = {"period_s": 0}
    got = issues(data)
    assert "points.x.address: must be an integer" in got
    assert any(i.startswith("points.x.table: must be one of") for i in got)
    assert any(i.startswith("points.x.type: must be one of") for i in got)
    assert "points.x.colour: unknown key" in got
    assert "poll_groups.slow.period_s: must be > 0" in got


def test_point_names_are_lower_snake_case() -> None:
    data = with_points(**{"Bad-Name": {"address": 10, "table": "holding", "type": "u16"}})
    assert any(i.startswith("points.Bad-Name") and "must match" in i for i in issues(data))


def test_sunspec_points_must_sit_in_a_model_body() -> None:
    data = {
        "device": "ss",
        "sunspec": {"base": 40000, "models": [{"id": 1, "length": 66}, {"id": 124, "length": 24}]},
        "points": {
            "mn": {"address": 40004, "table": "holding", "type": "string", "length": 16},
            "header": {"address": 40070, "table": "holding", "type": "u16"},  # model 124's ID register
            "after_end": {"address": 40096, "table": "holding", "type": "u16"},
            "inp": {"address": 40072, "table": "input", "type": "u16"},
        },
    }
    assert issues(data) == [
        "points.header.address: 40070..40070 is not inside a SunSpec model body",
        "points.after_end.address: 40096..40096 is not inside a SunSpec model body",
        "points.inp.table: SunSpec points are holding registers",
    ]
    data["sunspec"]["models"][0]["id"] = 802
    assert "sunspec.models[0].id: the first SunSpec model must be the common model 1" in issues(data)


def test_all_errors_are_collected_at_once() -> None:
    data = with_points(
        soc={"address": 10, "table": "holding", "type": "u16", "scale": "soc_sf"},
        serial={"address": 20, "table": "input", "type": "string"},
    )
    assert len(issues(data)) == 2


def test_load_map_reports_yaml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: x\npoints: {a: [\n")
    with pytest.raises(MapError) as exc:
        load_map(bad)
    assert exc.value.issues[0].rule.startswith("YAML syntax") and str(bad) in str(exc.value)
    with pytest.raises(MapError) as exc:
        load_map(tmp_path / "nope.yaml")
    assert exc.value.issues[0].path == "(file)"


def test_top_level_must_be_a_mapping() -> None:
    assert issues(["points"]) == ["(top level): must be a mapping"]
