"""Vehicles of a run: the seeded arrival model is deterministic and follows its rates and mix; the gun
assignment follows its rules (preference, compatibility, V2G on bidirectional guns, turned away when full)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.scenarios import Plug, Scenario
from hil.scenarios.arrivals import fits
from station.config import StationConfig
from tests.scenarios.helpers import base, build


def scenario(arrivals: list[dict[str, Any]], **extra: Any) -> Scenario:
    d = base()
    d["arrivals"] = arrivals
    d["random_arrivals"] = None
    d["faults"] = []
    d.update(extra)
    return build(d)


def guns_of(scn: Scenario, cfg: StationConfig) -> dict[str, str]:
    ids = cfg.gun_ids()
    return {p.spec.vehicle_id: ids[p.gun] if p.gun >= 0 else "-" for p in scn.plugs(cfg)}


def random_only(seed: int = 7, rates: list[dict[str, Any]] | None = None, mix: list[dict[str, Any]] | None = None,
                duration_s: float = 14400) -> Scenario:
    d = base()
    d["arrivals"] = []
    d["duration_s"] = duration_s
    d["dispatch"] = []
    d["faults"] = []
    d["random_arrivals"] = {
        "seed": seed,
        "rates": rates or [{"from": "00:00", "per_hour": 20}],
        "mix": mix or [{"weight": 1, "kind": "fast_car", "dwell_s": [1200, 2400]}],
    }
    return build(d)


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_plugs_other_seed_other_plugs(hub: StationConfig) -> None:
    a, b = random_only(seed=7), random_only(seed=7)
    assert a.plugs(hub) == b.plugs(hub)
    assert a.plugs(hub) == a.plugs(hub)  # no hidden state between calls
    c = random_only(seed=8)
    times = lambda s: [p.spec.arrival_s for p in s.plugs(hub)]  # noqa: E731
    assert times(c) != times(a)
    assert c.plugs(hub) != a.plugs(hub)


def test_a_longer_run_only_adds_vehicles_at_the_end(hub: StationConfig) -> None:
    short = [p.spec for p in random_only(duration_s=3600).plugs(hub)]
    long = [p.spec for p in random_only(duration_s=7200).plugs(hub)]
    assert len(long) > len(short) > 0
    assert long[: len(short)] == short


def test_changing_the_rates_moves_vehicles_but_keeps_who_they_are(hub: StationConfig) -> None:
    mix = [{"weight": 1, "kind": "fast_car", "capacity_kwh": [70, 110], "dwell_s": [1200, 2400]},
           {"weight": 1, "kind": "car", "capacity_kwh": [50, 80], "dwell_s": 3000}]
    slow = random_only(rates=[{"from": "00:00", "per_hour": 10}], mix=mix).plugs(hub)
    fast = random_only(rates=[{"from": "00:00", "per_hour": 40}], mix=mix).plugs(hub)
    who = lambda ps: [(p.spec.vehicle_id, p.spec.capacity_kwh, p.spec.max_voltage_v) for p in ps]  # noqa: E731
    assert who(fast)[: len(slow)] == who(slow)
    assert [p.spec.arrival_s for p in fast[: len(slow)]] != [p.spec.arrival_s for p in slow]


# ------------------------------------------------------------------------------------------ arrival model


def test_arrival_counts_follow_the_daily_rates(hub: StationConfig) -> None:
    """A Poisson process: the count in each period is near rate x hours (5 sigma), none in a zero-rate period."""
    rates = [{"from": "02:00", "per_hour": 0}, {"from": "06:00", "per_hour": 60}, {"from": "18:00", "per_hour": 15}]
    scn = random_only(rates=rates, duration_s=7 * 86400,
                      mix=[{"weight": 1, "kind": "car", "dwell_s": 1}])  # 1 s stays: no gun is ever busy
    local_hours = [(scn.clock.local_sod(p.spec.arrival_s) / 3600.0) for p in scn.plugs(hub)]
    per_period = Counter("night" if 2 <= h < 6 else "day" if 6 <= h < 18 else "evening" for h in local_hours)
    assert per_period["night"] == 0
    # seven whole days hold 7 x 12 h of "day" and 7 x 8 h of "evening" (18:00-02:00)
    for key, expected in (("day", 60 * 84), ("evening", 15 * 56)):
        assert abs(per_period[key] - expected) < 5 * math.sqrt(expected), (key, per_period[key], expected)


def test_mix_weights_spans_and_v2g_share(hub: StationConfig) -> None:
    mix = [
        {"weight": 3, "kind": "fast_car", "capacity_kwh": [75, 110], "initial_soc": [0.1, 0.3],
         "target_soc": [0.8, 0.9], "dwell_s": [1200, 2400]},
        {"weight": 1, "kind": "car", "capacity_kwh": 60, "dwell_s": 1,
         "v2g": {"share": 0.4, "max_discharge_kw": 40, "min_soc": 0.55}},
    ]
    plugs = random_only(rates=[{"from": "00:00", "per_hour": 400}], mix=mix, duration_s=86400).plugs(hub)
    n = len(plugs)
    fast = [p.spec for p in plugs if p.spec.max_voltage_v == 860.0]
    cars = [p.spec for p in plugs if p.spec.max_voltage_v == 460.0]
    assert len(fast) + len(cars) == n
    assert abs(len(fast) / n - 0.75) < 5 * math.sqrt(0.75 * 0.25 / n)
    assert all(75 <= s.capacity_kwh <= 110 and 0.1 <= s.initial_soc <= 0.3 and 0.8 <= s.target_soc <= 0.9 for s in fast)
    assert all(1200 <= s.departure_s - s.arrival_s <= 2400 and s.v2g is None for s in fast)
    assert min(s.capacity_kwh for s in fast) < 80 and max(s.capacity_kwh for s in fast) > 105  # the span is used
    assert all(s.capacity_kwh == 60 and s.initial_soc == 0.2 and s.target_soc == 0.9 for s in cars)  # kind defaults
    offered = [s.v2g for s in cars if s.v2g is not None]
    assert abs(len(offered) / len(cars) - 0.4) < 5 * math.sqrt(0.4 * 0.6 / len(cars))
    assert all(o.max_discharge_kw == 40 and o.min_soc == 0.55 for o in offered)
    assert [p.spec.vehicle_id for p in plugs[:3]] == ["rnd-0001", "rnd-0002", "rnd-0003"]


def test_explicit_arrivals_with_overrides_and_departure_times(hub: StationConfig) -> None:
    scn = scenario([
        {"id": "t", "kind": "truck", "at": "14:10", "departure": "15:00", "capacity_kwh": 513, "initial_soc": 0.1,
         "target_soc": 0.85, "max_current_a": 1200, "internal_resistance_ohm": 0.02},
        {"id": "c", "kind": "car", "at": 30, "v2g": {"max_discharge_kw": 50, "min_soc": 0.6}},
    ])
    c, t = scn.plugs(hub)
    assert (t.spec.arrival_s, t.spec.departure_s) == (600.0, 3600.0)
    assert (t.spec.capacity_kwh, t.spec.initial_soc, t.spec.target_soc) == (513, 0.1, 0.85)
    assert (t.spec.max_current_a, t.spec.internal_resistance_ohm, t.spec.kind) == (1200, 0.02, "truck")
    assert c.spec.arrival_s == 30 and c.spec.departure_s == math.inf  # no dwell, no departure: stays to the end
    assert c.spec.v2g is not None and (c.spec.v2g.max_discharge_kw, c.spec.v2g.min_soc) == (50, 0.6)


# ------------------------------------------------------------------------------------------ gun assignment


def car(vid: str, at: float = 0, dwell: float = 3600, **kw: Any) -> dict[str, Any]:
    return {"id": vid, "kind": "car", "at": at, "dwell_s": dwell, **kw}


def test_preference_list_in_order_then_the_best_fitting_gun(hub: StationConfig) -> None:
    scn = scenario([car("a", guns=["P3", "P2"]), car("b", guns=["P3", "P2"]), car("c", guns=["P3", "P2"]),
                    car("d"), {"id": "tr", "kind": "truck", "at": 0, "dwell_s": 3600}])
    got = guns_of(scn, hub)
    assert (got["a"], got["b"]) == ("P3", "P2")
    # fallback: a 400 V car (~105 kW) takes the smallest gun that covers it, unidirectional first: P5
    assert got["c"] == "P5" and got["d"] == "P6"
    assert got["tr"] == "T1"  # a truck (~1.2 MW) on the first megawatt gun


def test_a_gun_is_free_again_when_its_vehicle_has_left(hub: StationConfig) -> None:
    scn = scenario([car("a", at=0, dwell=600, guns=["P3"]), car("b", at=599, guns=["P3"]), car("c", at=600, guns=["P3"])])
    assert guns_of(scn, hub) == {"a": "P3", "b": "P5", "c": "P3"}


def test_incompatible_guns_are_never_used_and_full_means_turned_away(hub: StationConfig) -> None:
    big = [f"{p}{i}" for p, n in (("P", 12), ("T", 2)) for i in range(1, n + 1)]
    fill = [car(f"fill-{g}", guns=[g]) for g in big]
    scn = scenario([*fill, {"id": "f", "kind": "fast_car", "at": 10, "dwell_s": 600},
                    car("slow", at=20)])
    got = guns_of(scn, hub)
    assert got["f"] == "-"  # 860 V pack: the free 750 V V-guns cannot charge it
    assert got["slow"] == "V1"  # a 400 V car fits them
    scn = scenario([car(f"c{i}") for i in range(23)])
    got = guns_of(scn, hub)
    assert sorted(got.values())[0] == "-" and sum(v == "-" for v in got.values()) == 1
    assert len(set(got.values())) == 23  # 22 guns, each once, and the one turned away


def test_v2g_vehicles_sit_on_bidirectional_guns(hub: StationConfig) -> None:
    offer = {"max_discharge_kw": 60, "min_soc": 0.5}
    scn = scenario([car("plain"), car("v2g", v2g=offer), car("v2g-pref", v2g=offer, guns=["V3"])])
    got = guns_of(scn, hub)
    bidi = {g.id for g in hub.guns() if g.bidirectional}
    assert got["plain"] not in bidi and got["v2g"] in bidi and got["v2g-pref"] == "V3"
    # every bidirectional gun busy: a V2G car still charges on a unidirectional gun, without its offer
    fill = [car(f"fill-{g}", guns=[g], v2g=offer) for g in sorted(bidi)]
    scn = scenario([*fill, car("late", at=5, v2g=offer)])
    late = next(p for p in scn.plugs(hub) if p.spec.vehicle_id == "late")
    assert hub.guns()[late.gun].id == "P5" and late.spec.v2g is None


def test_v2g_vehicles_of_a_mix_skip_unidirectional_preferences(hub: StationConfig) -> None:
    mix = [{"weight": 1, "kind": "car", "dwell_s": 1, "guns": ["P5", "P1"],
            "v2g": {"share": 0.5, "max_discharge_kw": 40}}]
    plugs = random_only(rates=[{"from": "00:00", "per_hour": 30}], mix=mix).plugs(hub)
    ids = hub.gun_ids()
    got = Counter((p.spec.v2g is not None, ids[p.gun]) for p in plugs)
    assert set(got) == {(True, "P1"), (False, "P5")}


def test_gun_unavailable_at_arrival_is_not_offered(hub: StationConfig) -> None:
    scn = scenario([car("a", at=100, guns=["P3"]), car("b", at=400, guns=["P3"], dwell=60)],
                   faults=[{"at": 0, "duration_s": 300, "kind": "gun_unavailable", "target": "P3"}])
    assert guns_of(scn, hub) == {"a": "P5", "b": "P3"}


@settings(max_examples=60)
@given(st.lists(st.tuples(st.sampled_from(["car", "fast_car", "truck"]), st.integers(0, 7200), st.integers(60, 7200),
                          st.booleans(), st.lists(st.sampled_from(["T1", "P1", "P5", "P12", "V1", "V8"]),
                                                  max_size=3, unique=True)),
                max_size=60))
def test_assignment_invariants(vehicles: list[tuple[str, int, int, bool, list[str]]]) -> None:
    """Whatever arrives: a gun holds one vehicle at a time, vehicles fit their gun, V2G offers sit on bidirectional
    guns, preferred guns are taken when free, and a vehicle is turned away only when no compatible gun is free."""
    arrivals = []
    for i, (kind, at, dwell, v2g, prefs) in enumerate(vehicles):
        if kind != "car":
            prefs = [g for g in prefs if not g.startswith("V")]  # 750 V guns cannot take 840-860 V packs
        if v2g:
            prefs = [g for g in prefs if g in ("P1", "V1", "V8")]
        arrivals.append({"id": f"v{i}", "kind": kind, "at": at, "dwell_s": dwell, "guns": prefs,
                         **({"v2g": {"max_discharge_kw": 50}} if v2g else {})})
    scn = scenario(arrivals)
    cfg = scn.station_config()
    guns = cfg.guns()
    plugs = scn.plugs(cfg)
    assert len(plugs) == len(vehicles)
    busy_until = [0.0] * len(guns)
    index = {g.id: i for i, g in enumerate(guns)}
    prefs_of = {a["id"]: [index[gid] for gid in a["guns"]] for a in arrivals}
    for p in plugs:
        t = p.spec.arrival_s
        free = [g for g in range(len(guns)) if busy_until[g] <= t and fits(guns[g], p.spec)]
        if p.gun < 0:
            assert not free
            continue
        assert p.gun in free and (p.spec.v2g is None or guns[p.gun].bidirectional)
        offered = any(a["id"] == p.spec.vehicle_id and "v2g" in a for a in arrivals)
        eligible = [g for g in prefs_of[p.spec.vehicle_id] if g in free and (not offered or guns[g].bidirectional)]
        if eligible:
            assert p.gun == eligible[0]
        busy_until[p.gun] = p.spec.departure_s


def test_plug_is_a_frozen_value(hub: StationConfig) -> None:
    p = scenario([car("a")]).plugs(hub)[0]
    assert isinstance(p, Plug) and p.gun >= 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.gun = 3  # type: ignore[misc]
