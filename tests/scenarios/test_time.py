"""Scenario time: wall-time instants, daily step functions across midnight, tariff lookup."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.scenarios.timing import DAY_S, DailySteps, RunClock, check_at, wall_seconds
from tests.scenarios.helpers import base, build

CST = timezone(timedelta(hours=8))


def test_wall_time_is_the_first_such_time_at_or_after_the_start() -> None:
    clock = RunClock(datetime(2026, 7, 15, 22, 30, tzinfo=CST))
    assert clock.at_s("22:30") == 0
    assert clock.at_s("23:00") == 1800
    assert clock.at_s("23:00:30") == 1830
    assert clock.at_s("00:15") == 6300  # after midnight: the next day
    assert clock.at_s("22:29:59") == DAY_S - 1  # just before the start: tomorrow
    assert clock.at_s("7:05") == 8 * 3600 + 35 * 60
    assert clock.at_s(125) == 125.0 and clock.at_s(0.5) == 0.5


def test_wall_time_uses_the_start_offset() -> None:
    d = base()
    d["start"] = "2026-07-15T06:00:00Z"  # 14:00 in Shanghai, but the file's local time is UTC
    d["dispatch"][0]["at"] = "07:00"
    d["arrivals"][1]["at"] = "06:30"
    scn = build(d)
    assert scn.at_s("07:00") == 3600 and scn.clock.local_sod(0) == 6 * 3600
    scn8 = build(base())
    assert scn8.start == datetime(2026, 7, 15, 14, 0, tzinfo=CST)
    assert scn8.at_s("15:00") == 3600


def test_at_and_wall_time_rules() -> None:
    assert wall_seconds("23:59:59") == DAY_S - 1 and wall_seconds("00:00") == 0
    for bad in ("24:00", "12:60", "12:30:60", "1230", "12:3", " 12:30", "-1:00"):
        with pytest.raises(ValueError):
            wall_seconds(bad)
    for bad_at in (-1, math.nan, math.inf, True, "noon", None, [1]):
        with pytest.raises(ValueError):
            check_at(bad_at)
    assert check_at(3) == 3.0 and check_at("18:30") == "18:30"


def test_departure_wall_time_is_after_the_arrival_across_midnight() -> None:
    d = base()
    d["start"] = "2026-07-15T20:00:00+08:00"
    d["dispatch"] = []
    d["tariff"] = None
    d["random_arrivals"] = None
    d["faults"] = []
    d["arrivals"] = [{"id": "night", "kind": "car", "at": "23:30", "departure": "01:00"},
                     {"id": "early", "kind": "car", "at": "20:10", "departure": "20:05"}]
    scn = build(d)
    plugs = {p.spec.vehicle_id: p.spec for p in scn.plugs(scn.station_config())}
    assert (plugs["night"].arrival_s, plugs["night"].departure_s) == (3.5 * 3600, 5 * 3600)
    assert plugs["early"].departure_s - plugs["early"].arrival_s == DAY_S - 300  # 20:05 the next evening


def test_tariff_lookup_across_midnight() -> None:
    d = base()
    d["start"] = "2026-07-15T21:00:00+08:00"
    d["duration_s"] = 2 * 86400
    d["dispatch"] = []
    d["arrivals"] = []
    d["tariff"] = {"periods": [{"from": "08:00", "price_per_kwh": 0.68}, {"from": "10:00", "price_per_kwh": 1.12},
                               {"from": "22:00", "price_per_kwh": 0.3}],
                   "export_price_per_kwh": 0.453}
    scn = build(d)
    h = 3600.0
    assert scn.price_at(0) == 1.12  # 21:00
    assert scn.price_at(1 * h - 1) == 1.12 and scn.price_at(1 * h) == 0.3  # 22:00
    assert scn.price_at(3 * h) == 0.3  # 00:00: the last period wraps past midnight
    assert scn.price_at(10 * h) == 0.3  # 07:00
    assert scn.price_at(11 * h) == 0.68  # 08:00
    assert scn.price_at(13 * h) == 1.12  # 10:00
    assert scn.price_at(24 * h + 13 * h) == 1.12  # the same the next day
    assert scn.export_price_at(5 * h) == 0.453
    d["tariff"] = None
    scn = build(d)
    assert math.isnan(scn.price_at(0)) and math.isnan(scn.export_price_at(0))
    d["tariff"] = {"periods": [{"from": "06:00", "price_per_kwh": 0.5}]}
    scn = build(d)
    assert scn.price_at(0) == 0.5 and scn.price_at(9 * h) == 0.5 and math.isnan(scn.export_price_at(0))


@given(st.lists(st.integers(0, 86399), min_size=1, max_size=6, unique=True),
       st.floats(0, 86399.5), st.floats(0, 3 * DAY_S), st.floats(0, 3 * DAY_S))
def test_daily_step_segments_tile_the_interval(bounds: list[int], start_sod: float, a: float, b: float) -> None:
    bounds.sort()
    steps = DailySteps(bounds, list(range(len(bounds))))
    start = datetime(2026, 7, 15, tzinfo=CST) + timedelta(seconds=start_sod)
    clock = RunClock(start)
    t0, t1 = min(a, b), max(a, b)
    pieces = list(steps.segments(clock, t0, t1))
    if t1 == t0:
        assert pieces == []
        return
    assert pieces[0][0] == t0 and pieces[-1][1] == t1
    for (s0, e0, _), (s1, _, _) in zip(pieces, pieces[1:]):
        assert e0 == s1 and s0 < e0
    for s, e, v in pieces:
        mid = (s + e) / 2
        assert steps.at(clock.local_sod(mid)) == v  # the value in force inside the piece
    # a new piece starts only at a boundary
    for s, _, _ in pieces[1:]:
        assert min(abs(clock.local_sod(s) - bd) % DAY_S for bd in bounds) < 1e-6 or \
            min(DAY_S - abs(clock.local_sod(s) - bd) for bd in bounds) < 1e-6
    assert len(pieces) <= len(bounds) * (math.ceil((t1 - t0) / DAY_S) + 1) + 1
