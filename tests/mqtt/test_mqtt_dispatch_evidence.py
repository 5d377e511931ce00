"""Dispatch evidence from measured grid power: each figure worked out by hand from the definitions in
station/dispatch/evidence.py, on trajectories small enough to check on paper."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest

from station.dispatch import DispatchManager
from station.dispatch.evidence import Asked, ResponseMeter, _split_trapezoid
from tests.conftest import REPO
from tests.mqtt.setpoints import DEMO, NOW, encode, setpoint

T0 = 1000.0
SP = {"id": "x", "seq": 1}


def meter(asked: Asked, initial: float | None, samples: list[tuple[float, float]], **kw: float) -> ResponseMeter:
    m = ResponseMeter(asked, T0, initial, tolerance_kw=kw.get("tol", 20.0), change_threshold_kw=5.0,
                      max_gap_s=kw.get("gap", 5.0))
    for t, p in samples:
        m.add(T0 + t, p)
    return m


def test_target_response_figures() -> None:
    """From +100 kW to a -30 kW target (ramp 100 kW/s), 1 s samples."""
    trace = [(1, 100.0), (2, 50.0), (3, 0.0), (4, -30.0), (5, -30.0), (6, -40.0), (7, -30.0), (8, -30.0)]
    r = meter(Asked(200.0, 50.0, -30.0, 100.0), 100.0, trace).report(T0 + 8, "expired", SP)
    assert r["change_needed"] is True
    assert r["time_to_first_change_s"] == 2.0  # first sample >= 5 kW away from 100
    assert r["time_to_settle_s"] == 4.0  # within 20 kW of -30 from t=4 to the end
    # reference: 100 -> -30 at 100 kW/s, i.e. 0 at t=1 and -30 from t=1.3 on
    errors = [100, 80, 30, 0, 0, 10, 0, 0]
    assert r["tracking_rms_kw"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 8))
    assert r["tracking_worst_kw"] == 100.0
    assert r["in_band_fraction"] == pytest.approx(4 / 7)  # in band at the start of [4,5] [5,6] [6,7] [7,8]
    assert r["energy_imported_kwh"] == pytest.approx((75 + 25) / 3600)
    assert r["energy_exported_kwh"] == pytest.approx((15 + 30 + 35 + 35 + 30) / 3600)
    assert r["energy_asked_export_kwh"] == pytest.approx(30 * 8 / 3600)
    assert r["energy_asked_import_kwh"] == 0.0
    assert r["energy_over_limit_kwh"] == 0.0
    assert (r["samples"], r["unmeasured_s"]) == (8, 0.0)


def test_limits_only_response_closing_band_and_over_limit_energy() -> None:
    """300 kW import, asked to stay under 200 kW with a 50 kW/s ramp: the band closes in from 300."""
    trace = [(0, 300.0), (1, 280.0), (2, 240.0), (3, 200.0), (4, 190.0), (5, 210.0), (6, 205.0)]
    r = meter(Asked(200.0, 0.0, None, 50.0), 300.0, trace).report(T0 + 6, "superseded", SP)
    violations = [0, 30, 40, 0, 0, 10, 5]  # above 300, 250, 200, 200, ...
    assert r["tracking_worst_kw"] == 40.0
    assert r["tracking_rms_kw"] == pytest.approx(math.sqrt(sum(v * v for v in violations) / 7))
    assert r["energy_over_limit_kwh"] == pytest.approx((15 + 35 + 20 + 0 + 5 + 7.5) / 3600)
    assert r["time_to_first_change_s"] == 1.0
    assert r["time_to_settle_s"] == 3.0  # inside [-20, 220] from t=3 on
    assert r["energy_asked_import_kwh"] is None and r["energy_asked_export_kwh"] is None


def test_no_change_needed_and_never_settled() -> None:
    calm = meter(Asked(200.0, 0.0, None, 50.0), 120.0, [(0, 120.0), (1, 125.0), (2, 119.0)])
    r = calm.report(T0 + 2, "expired", SP)
    assert (r["change_needed"], r["time_to_first_change_s"], r["time_to_settle_s"]) == (False, None, 0.0)
    stuck = meter(Asked(200.0, 0.0, 0.0, 50.0), 120.0, [(0, 120.0), (1, 121.0), (2, 119.0)])
    r = stuck.report(T0 + 2, "expired", SP)
    assert (r["change_needed"], r["time_to_first_change_s"], r["time_to_settle_s"]) == (True, None, None)


def test_energy_split_exactly_at_the_zero_crossing() -> None:
    assert _split_trapezoid(10.0, -30.0, 4.0) == pytest.approx((5.0, 45.0))
    assert _split_trapezoid(-30.0, 10.0, 4.0) == pytest.approx((5.0, 45.0))
    assert _split_trapezoid(20.0, 40.0, 2.0) == (60.0, 0.0)


def test_meter_gaps_are_reported_not_integrated() -> None:
    r = meter(Asked(200.0, 0.0, None, 50.0), 100.0, [(0, 100.0), (1, 100.0), (10, 100.0), (11, 100.0)]
              ).report(T0 + 20, "expired", SP)
    assert r["energy_imported_kwh"] == pytest.approx(200 / 3600)  # [0,1] and [10,11] only
    assert r["unmeasured_s"] == pytest.approx(9 + 9)  # the 9 s gap and 9 s without samples at the end


def test_manager_reports_through_observed_samples_and_schema() -> None:
    """The control cycle feeds grid power; the report comes out when the lease ends."""
    m = DispatchManager.from_config(DEMO)
    m.observe_grid_power(NOW - 0.5, 100.0)  # the power when the setpoint arrives
    m.submit(encode(setpoint(1, import_limit_kw=200.0, export_limit_kw=50.0, target_kw=-30.0,
                             valid_until=NOW + 8.5)), NOW)
    for t, p in [(1, 100.0), (2, 50.0), (3, 0.0), (4, -30.0), (5, -30.0), (6, -40.0), (7, -30.0), (8, -30.0)]:
        m.observe_grid_power(NOW + t, p)
    assert m.drain_reports() == []  # still running
    m.limits_at(NOW + 9)
    (report,) = m.drain_reports()
    assert report["initial_kw"] == 100.0 and report["time_to_settle_s"] == 4.0
    assert report["ended_at"] == NOW + 8.5 and report["end_reason"] == "expired"
    assert report["setpoint"]["target_kw"] == -30.0
    schema = json.loads((REPO / "docs/schemas/mqtt/dispatch-report.json").read_text())
    jsonschema.validate({"seq": 1, "historical": False, "replay": False, **report}, schema)
