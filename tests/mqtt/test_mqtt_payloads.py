"""The payload builders of station/telemetry.py produce exactly what the JSON Schemas describe."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from drivers.mqtt.outbox import stamp
from station import telemetry as payloads
from station.dispatch import DispatchEvent, DispatchManager, GridLimits
from tests.conftest import REPO
from tests.mqtt.setpoints import DEMO, NOW, encode, setpoint


def schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((REPO / f"docs/schemas/mqtt/{name}.json").read_text()))


def on_wire(body: dict[str, Any], seq: int = 7) -> Any:
    """What a consumer receives: the body with the outbox's stream header."""
    return json.loads(stamp(payloads.encode(body), seq, False, False))


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
    for path in (REPO / "docs/schemas/mqtt").glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_status_payloads() -> None:
    v = schema("status")
    v.validate(payloads.status_online(NOW, station_id="st-1", firmware="1.2.3", config_sha256="ab" * 32,
                                      protocol="5", connection=3))
    v.validate(payloads.status_offline("connection_lost", station_id="st-1", ts=None, since=NOW))
    v.validate(payloads.status_offline("shutdown", station_id="st-1", ts=NOW + 5, since=NOW))


def test_telemetry_payload_with_lease_and_fallback() -> None:
    m = DispatchManager.from_config(DEMO)
    m.submit(encode(setpoint(1, target_kw=-40.0)), NOW)
    guns = [payloads.GunSample("A1", True, "charging", 150.0, 300.0, 500.0, 0.4),
            payloads.GunSample("A2", False, "out_of_service")]
    for t in (NOW + 1, NOW + 120):  # under the lease, then on fallback
        body = payloads.telemetry(t, grid_kw=-38.5, limits=m.limits_at(t), dispatch=m.status(t), guns=guns,
                                  health={"grid": "ok", "B": "lost"}, bess_kw=-60.0, bess_soc=0.5,
                                  outbox={"pending": 0, "pending_bytes": 0, "oldest_age_s": None,
                                          "dropped_age": 0, "dropped_size": 0, "rejected_by_broker": 0})
        schema("telemetry").validate(on_wire(body))
    assert body["limits"]["source"] == "fallback" and body["dispatch"]["active_id"] is None
    bad = on_wire(payloads.telemetry(NOW, grid_kw=1.0, limits=GridLimits(1, 0, None, 1, "fallback", None),
                                     dispatch={"source": "fallback"}, guns=[], health={"grid": "sleepy"}))  # type: ignore[dict-item]
    assert not schema("telemetry").is_valid(bad)


def test_event_payloads() -> None:
    v = schema("events")
    v.validate(on_wire(payloads.session_started(NOW, gun="A1", session_id="s1")))
    v.validate(on_wire(payloads.session_stopped(NOW, gun="A1", session_id="s1", energy_kwh=12.5, duration_s=600,
                                                reason="vehicle_full")))
    v.validate(on_wire(payloads.fault(NOW, code="IMD_TRIP", device="A1", attribution="charger_hardware", reaction="stop_gun")))
    v.validate(on_wire(payloads.fault(NOW, code="IMD_TRIP", device="A1", attribution="charger_hardware", reaction="none",
                                      cleared=True)))
    v.validate(on_wire(payloads.outbox_dropped(NOW, reason="age", count=3, bytes_=900, first_seq=1, last_seq=3)))
    v.validate(on_wire(payloads.dispatch_event(DispatchEvent("dispatch_fallback_reached", NOW, {
        "import_limit_kw": 400.0, "export_limit_kw": 0.0}))))
    assert not v.is_valid(on_wire(payloads.event(NOW, "fault", code="X")))  # fault without attribution
    with pytest.raises(ValueError, match="unknown event kind"):
        payloads.event(NOW, "falut")


def test_dispatch_events_from_the_manager_match_the_schema() -> None:
    m = DispatchManager.from_config(DEMO)
    m.submit(encode(setpoint(1, valid_until=NOW + 5)), NOW)
    m.submit(encode(setpoint(2, valid_from=NOW + 3, valid_until=NOW + 8)), NOW)
    m.limits_at(NOW + 20)
    events = m.drain_events()
    assert {e.kind for e in events} == {"dispatch_started", "dispatch_ended", "dispatch_fallback",
                                        "dispatch_fallback_reached"}
    for e in events:
        schema("events").validate(on_wire(payloads.dispatch_event(e)))
    for a in m.submit(encode(setpoint(3)), NOW + 20) + m.submit(b"[", NOW + 20):
        schema("dispatch-ack").validate(a.to_payload())


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError):
        payloads.encode({"grid_kw": float("nan")})


def test_telemetry_pacer_keeps_the_configured_rate_without_drift_or_bursts() -> None:
    pacer = payloads.TelemetryPacer(DEMO.mqtt.telemetry_period_s)  # 1 s
    ticks = [k * 0.02 + 0.003 * (k % 3) for k in range(500)]  # a 20 ms cycle with jitter, 10 s
    sampled = [t for t in ticks if pacer.due(t)]
    assert len(sampled) == 10
    assert all(abs(t - round(t)) < 0.03 for t in sampled)  # on the 1 s grid, within one tick
    # a 3.5 s stall: one sample when the cycle comes back, then the grid again (no burst of 3)
    assert pacer.due(13.5) and not pacer.due(13.52) and not pacer.due(13.98) and pacer.due(14.0)
    with pytest.raises(ValueError):
        payloads.TelemetryPacer(0)
