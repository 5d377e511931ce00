"""Scenario files: the shipped ones load and do what they claim; every mistake is named by key path and rule;
the exported JSON Schema is current."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hil.scenarios import (ScenarioError, json_schema, load_scenario, parse_scenario_yaml, read_scenario_yaml,
                           shipped)
from hil.scenarios.arrivals import fits
from station.config import StationConfig
from tests.scenarios.helpers import REPO, base, build, errors_of

SHIPPED = {p.stem: p for p in shipped()}


def test_the_four_scenarios_of_the_issue_are_shipped() -> None:
    assert {"afternoon-peak", "v2g-evening", "truck-depot", "day-24h", "demo"} <= set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_scenario_loads_and_fits_its_station(name: str, hub: StationConfig) -> None:
    scn = load_scenario(SHIPPED[name])
    assert scn.name == name
    cfg = scn.station_config()
    if name == "demo":  # the quick default of station-hil sim, on the 4-gun demo station
        assert cfg.station.id == "demo-01"
    else:
        assert cfg == hub  # the four scenarios of the issue run on the megawatt hub
    plugs = scn.plugs(cfg)
    guns = cfg.guns()
    assert len(plugs) >= 2 * len(guns)
    assert [p.spec.arrival_s for p in plugs] == sorted(p.spec.arrival_s for p in plugs)
    assert len({p.spec.vehicle_id for p in plugs}) == len(plugs)
    assert all(0 <= p.spec.arrival_s < scn.duration_s for p in plugs)
    occupied: dict[int, float] = {}
    for p in plugs:
        if p.gun < 0:
            continue
        assert fits(guns[p.gun], p.spec)
        assert p.spec.v2g is None or guns[p.gun].bidirectional
        assert occupied.get(p.gun, 0.0) <= p.spec.arrival_s, f"{p.spec.vehicle_id} plugged into a busy gun"
        occupied[p.gun] = p.spec.departure_s
    assert sum(p.gun < 0 for p in plugs) <= 0.2 * len(plugs)  # the station is busy, not hopeless
    assert scn.expect.max_cap_violations == 0
    assert scn.expect.min_bound_fraction == 0.97


def _requested_kwh(scn: Any) -> float:
    cfg = scn.station_config()
    return sum((p.spec.target_soc - p.spec.initial_soc) * p.spec.capacity_kwh for p in scn.plugs(cfg) if p.gun >= 0)


def test_afternoon_peak_asks_far_more_than_the_cap_and_starts_with_a_full_battery() -> None:
    scn = load_scenario(SHIPPED["afternoon-peak"])
    cfg = scn.station_config()
    assert scn.bess_initial_soc is not None and scn.bess_initial_soc >= 0.85
    # what the vehicles plugged in at 15:00 would take at once, each at its own peak within its gun
    t = scn.at_s("15:00")
    from hil.scenarios.arrivals import peak_kw

    on = [p for p in scn.plugs(cfg) if p.gun >= 0 and p.spec.arrival_s <= t < p.spec.departure_s]
    asked = sum(min(peak_kw(p.spec), cfg.guns()[p.gun].max_power_kw) for p in on)
    assert asked > 2 * cfg.import_cap_kw
    # more energy asked than the connection alone delivers in the run
    assert _requested_kwh(scn) > cfg.import_cap_kw * scn.duration_s / 3600


def test_v2g_evening_asks_one_megawatt_for_half_an_hour_and_is_feasible() -> None:
    scn = load_scenario(SHIPPED["v2g-evening"])
    cfg = scn.station_config()
    (ev,) = scn.dispatch
    assert ev.target_kw == -1000 and ev.valid_s == 1800 and ev.import_limit_kw == 0
    assert ev.announced is not None and scn.at_s(ev.announced) < scn.at_s(ev.at)
    start = scn.at_s(ev.at)
    guns = cfg.guns()
    on = [p for p in scn.plugs(cfg) if p.gun >= 0 and p.spec.arrival_s <= start and p.spec.departure_s > start + 1800]
    v2g_kw = sum(min(p.spec.v2g.max_discharge_kw, guns[p.gun].max_discharge_kw) for p in on if p.spec.v2g)
    assert cfg.bess is not None
    assert v2g_kw >= 900  # the vehicles alone carry most of it ...
    assert v2g_kw + cfg.bess.max_discharge_kw >= -ev.target_kw + cfg.grid.aux_load_kw + 500  # ... with room to charge
    assert scn.expect.min_v2g_fraction is not None and scn.expect.max_response_s is not None


def test_truck_depot_is_megawatt_trucks() -> None:
    scn = load_scenario(SHIPPED["truck-depot"])
    cfg = scn.station_config()
    trucks = [p for p in scn.plugs(cfg) if p.spec.kind == "truck"]
    assert len(trucks) >= 12
    assert all(300 <= p.spec.capacity_kwh <= 600 or p.spec.capacity_kwh == 282 for p in trucks)
    on_mw = [p for p in trucks if p.gun >= 0 and cfg.guns()[p.gun].max_power_kw >= 1000]
    assert len(on_mw) >= 6
    assert any(f.kind == "module_fault" and f.target.startswith("C1.") for f in scn.faults)


def test_day_24h_has_a_tariff_and_two_dispatch_events() -> None:
    scn = load_scenario(SHIPPED["day-24h"])
    assert scn.duration_s == 86400 and scn.at_s("00:00") == 0
    assert len(scn.dispatch) == 2
    prices = {scn.price_at(h * 3600.0) for h in range(24)}
    assert len(prices) >= 3  # valley, flat, peak (China-style time of use)
    assert scn.price_at(3 * 3600) < scn.price_at(9 * 3600) < scn.price_at(10.5 * 3600)
    assert scn.export_price_at(0) > 0


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.__setitem__("bogus", 1), "bogus: unknown key"),
        (lambda d: d["arrivals"][0].__setitem__("capacity", 80), "arrivals[0].capacity: unknown key"),
        (lambda d: d["random_arrivals"]["mix"][0].__setitem__("colour", "red"), "random_arrivals.mix[0].colour: unknown key"),
        (lambda d: d["expect"].__setitem__("min_demand", 0.9), "expect.min_demand: unknown key"),
        (lambda d: d.pop("start"), "start: is required"),
        (lambda d: d.__setitem__("duration_s", "3600"), "duration_s: must be a number"),
        (lambda d: d.__setitem__("duration_s", -5), "duration_s: must be > 0"),
        (lambda d: d["faults"][0].__setitem__("duration_s", 0), "faults[0].duration_s: must be > 0"),
        (lambda d: d["dispatch"][0].__setitem__("valid_s", -60), "dispatch[0].valid_s: must be > 0"),
        (lambda d: d["arrivals"][0].__setitem__("dwell_s", -1), "arrivals[0].dwell_s: must be > 0"),
        (lambda d: d["arrivals"][0].__setitem__("initial_soc", 1.5), "arrivals[0].initial_soc: must be <= 1"),
        (lambda d: d["arrivals"][0].__setitem__("kind", "bus"), "arrivals[0].kind: must be one of"),
        (lambda d: d["arrivals"][0].__setitem__("at", -10), "arrivals[0].at: must be seconds from the start"),
        (lambda d: d["arrivals"][0].__setitem__("at", "25:00"), "arrivals[0].at: must be seconds from the start"),
        (lambda d: d["arrivals"][0].__setitem__("at", True), "arrivals[0].at: must be seconds from the start"),
        (lambda d: d["faults"][0].__setitem__("kind", "fire"), "faults[0].kind: must be one of"),
        (lambda d: d.__setitem__("start", "2026-07-15T14:00:00"), "start: must include a UTC offset"),
        (lambda d: d["tariff"]["periods"][0].__setitem__("from", "8am"), "tariff.periods[0].from: must be wall time"),
        (lambda d: d["random_arrivals"]["rates"][1].__setitem__("per_hour", -1), "random_arrivals.rates[1].per_hour: must be >= 0"),
        (lambda d: d["random_arrivals"]["mix"][0].__setitem__("dwell_s", [2400, 1200]), "random_arrivals.mix[0].dwell_s: must be a number or a range [low, high]"),
        (lambda d: d["random_arrivals"]["mix"][0].__setitem__("initial_soc", [0.5, 1.2]), "random_arrivals.mix[0].initial_soc: must be >= 0 and <= 1"),
        (lambda d: d["random_arrivals"]["mix"][0].__setitem__("weight", 0), "random_arrivals.mix[0].weight: must be > 0"),
        (lambda d: d["dispatch"][0].__setitem__("target_kw", "x"), "dispatch[0].target_kw: must be a number"),
        (lambda d: d["expect"].__setitem__("max_cap_violations", 0.5), "expect.max_cap_violations: must be an integer"),
    ],
)
def test_field_errors_name_key_path_and_rule(mutate: Any, expected: str) -> None:
    d = base()
    mutate(d)
    errs = errors_of(d)
    assert any(e.startswith(expected) for e in errs), errs


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["arrivals"][1].__setitem__("guns", ["T1", "X9"]), "arrivals[1].guns[1]: refers to unknown gun 'X9'"),
        (lambda d: d["arrivals"][1].__setitem__("guns", ["T1", "T1"]), "arrivals[1].guns[1]: lists gun 'T1' twice"),
        (lambda d: d["random_arrivals"]["mix"][0].__setitem__("guns", ["V1"]),
         "random_arrivals.mix[0].guns[0]: gun 'V1' (150-750 V) cannot charge this vehicle (up to 860 V"),
        (lambda d: d["arrivals"][0].update(v2g={"max_discharge_kw": 60}, guns=["P5"]),
         "arrivals[0].guns[0]: gun 'P5' is not bidirectional: a V2G vehicle needs one"),
        (lambda d: d["dispatch"][0].__setitem__("at", "18:00"),
         'dispatch[0].at: "18:00" is 4.00 h after the start, outside the run (duration 4 h)'),
        (lambda d: d["dispatch"][0].__setitem__("at", "13:00"), 'dispatch[0].at: "13:00" is 23.00 h after the start'),
        (lambda d: d["faults"][0].__setitem__("at", 14400), "faults[0].at: 14400 s is 4.00 h after the start"),
        (lambda d: d["arrivals"][0].__setitem__("at", 20000), "arrivals[0].at: 20000 s is 5.56 h after the start"),
        (lambda d: d["dispatch"][0].__setitem__("announced", "15:10"), "dispatch[0].announced: must not be after at"),
        (lambda d: d["dispatch"][0].__setitem__("export_limit_kw", 1500),
         "dispatch[0].export_limit_kw: must not exceed the station's grid.export_limit_kw (1200 kW)"),
        (lambda d: d["dispatch"][0].__setitem__("target_kw", -1150),
         "dispatch[0].target_kw: asks 1150 kW export, above export_limit_kw (1100 kW)"),
        (lambda d: d["dispatch"][0].update(import_limit_kw=500, target_kw=800),
         "dispatch[0].target_kw: 800 kW import is above the import limit in force (500 kW)"),
        (lambda d: d["faults"][0].__setitem__("target", "C9.M01"), "faults[0].target: refers to unknown module 'C9.M01' (e.g. 'C1.M01')"),
        (lambda d: d["faults"][0].update(kind="gun_unavailable", target="Q1"), "faults[0].target: refers to unknown gun 'Q1'"),
        (lambda d: d["faults"][0].update(kind="vehicle_stops_drawing", target=None), "faults[0].target: is required for vehicle_stops_drawing"),
        (lambda d: d["faults"][0].update(kind="bess_unavailable", target="B2"), "faults[0].target: refers to unknown BESS 'B2' (e.g. 'B')"),
        (lambda d: d["faults"][0].update(kind="meter_frozen", target="aux"), "faults[0].target: refers to unknown meter 'aux'"),
        (lambda d: d["arrivals"][1].__setitem__("id", "car-1"), "arrivals[1].id: duplicate vehicle id 'car-1' (also at arrivals[0])"),
        (lambda d: d["arrivals"][0].__setitem__("id", "rnd-0001"), "arrivals[0].id: 'rnd-...' names the random arrivals"),
        (lambda d: d["arrivals"][0].__setitem__("departure", 900), "arrivals[0]: give dwell_s or departure, not both"),
        (lambda d: d["arrivals"][1].update(dwell_s=None, departure=1000), "arrivals[1].departure: must be after the arrival (1800 s)"),
        (lambda d: d["arrivals"][0].update(initial_soc=0.9, target_soc=0.8), "arrivals[0].initial_soc: must be below target_soc (0.8)"),
        (lambda d: d["arrivals"][0].update(taper_start_soc=0.9), "arrivals[0].taper_start_soc: must be below taper_end_soc (0.85)"),
        (lambda d: d["arrivals"][0].update(max_voltage_v=400), "arrivals[0]: car-1: max_voltage_v must exceed the full-pack"),
        (lambda d: d["random_arrivals"]["mix"][0].update(initial_soc=[0.2, 0.85], target_soc=[0.8, 0.9]),
         "random_arrivals.mix[0].initial_soc: must be below target_soc (0.8)"),
        (lambda d: d["random_arrivals"]["rates"][1].__setitem__("from", "13:00"),
         "random_arrivals.rates[1].from: must be later than the previous entry (14:00)"),
        (lambda d: d["tariff"]["periods"].append({"from": "22:00", "price_per_kwh": 1}),
         "tariff.periods[2].from: must be later than the previous entry (22:00)"),
        (lambda d: d.__setitem__("bess_initial_soc", 0.99), "bess_initial_soc: must lie between the station's bess.soc_min (0.05) and bess.soc_max (0.95)"),
        (lambda d: d.__setitem__("step_s", 30) or d.__setitem__("duration_s", 10), "step_s: must not exceed duration_s (10 s)"),
        (lambda d: d.__setitem__("station", "nowhere.yaml"), "station: no such file:"),
    ],
)
def test_cross_checks_name_key_path_and_rule(mutate: Any, expected: str) -> None:
    d = base()
    mutate(d)
    errs = errors_of(d)
    assert any(e.startswith(expected) for e in errs), errs


def test_every_error_is_reported_at_once() -> None:
    d = base()
    d["duration_s"] = -1
    d["arrivals"][0]["typo"] = 1
    d["faults"][0]["kind"] = "fire"
    errs = errors_of(d)
    assert len(errs) == 3, errs
    d = base()
    d["arrivals"][1]["guns"] = ["X1"]
    d["dispatch"][0]["at"] = 99999
    d["faults"][0]["target"] = "nope"
    assert len(errors_of(d)) == 3


def test_base_scenario_is_valid() -> None:
    scn = build(base())
    assert scn.name == "unit" and scn.meter.delay_s == 0.2 and scn.meter.noise_kw == 0.5 and scn.meter.seed == 0
    assert scn.step_s == 1.0 and scn.bess_initial_soc is None


def test_load_scenario_raises_with_the_file_and_every_issue(tmp_path: Any) -> None:
    text = (SHIPPED["truck-depot"]).read_text().replace("duration_s: 14400", "duration_s: -1", 1)
    text = text.replace("station: ../../config/megawatt-hub.yaml", f"station: {REPO}/config/megawatt-hub.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "\nsurprise: 1\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    assert {str(i) for i in info.value.issues} == {"duration_s: must be > 0", "surprise: unknown key"}
    assert str(bad) in str(info.value)


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario_yaml("name: x\narrivals: [1, 2\n", "s.yaml")
    assert str(info.value.issues[0]).startswith("line 3, column 1: YAML syntax")


def test_unquoted_times_stay_wall_times() -> None:
    """YAML 1.1 reads an unquoted 18:30 as the base-60 integer 1110 (but 08:30 as a string): not here."""
    data = parse_scenario_yaml("at: 18:30\nfrom: 08:30\nn: 12\nx: 1.5\nstart: 2026-07-15T14:00:00+08:00\n")
    assert data == {"at": "18:30", "from": "08:30", "n": 12, "x": 1.5, "start": "2026-07-15T14:00:00+08:00"}
    d = parse_scenario_yaml(
        "name: y\nstation: megawatt-hub.yaml\nstart: 2026-07-15T14:00:00+08:00\nduration_s: 7200\n"
        "dispatch: [{at: 15:30, valid_s: 60, import_limit_kw: 1000}]\n"
    )
    assert build(d).at_s(d["dispatch"][0]["at"]) == 5400


# ------------------------------------------------------------------------------------------- schema


def test_exported_schema_is_current_and_validates_the_shipped_files() -> None:
    committed = json.loads((REPO / "docs" / "scenarios.schema.json").read_text())
    assert committed == json_schema(), (
        "regenerate: python -c 'import json; from hil.scenarios import json_schema; "
        "print(json.dumps(json_schema(), indent=2))' > docs/scenarios.schema.json")
    import jsonschema  # dev extra

    jsonschema.Draft202012Validator.check_schema(committed)
    for path in SHIPPED.values():
        jsonschema.validate(read_scenario_yaml(path), committed)
    d = base()
    jsonschema.validate(d, committed)
    d["arrivals"][0]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, committed)
