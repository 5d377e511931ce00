"""Every rejection reason of dispatch/set, each with its own code, and the lease left untouched.

Sans-IO: the manager is fed bytes and a wall-clock ``now``; no broker needed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.config import StationConfig
from station.dispatch import REASON_TEXT, DispatchManager, DispatchSettings, Reason
from tests.conftest import REPO
from tests.mqtt.setpoints import DEMO, NOW, OMIT, encode, setpoint


@pytest.fixture
def manager(station_cfg: StationConfig) -> DispatchManager:
    """Demo station: import cap 400 kW, export cap 100 kW, reach +400/-100 kW. One lease active."""
    m = DispatchManager.from_config(station_cfg)
    acks = m.submit(encode(setpoint(10, id="base", valid_until=NOW + 600)), NOW)
    assert acks[0].accepted, acks[0]
    return m


def _unchanged(m: DispatchManager, before: tuple[Any, Any]) -> None:
    assert (m.limits_at(NOW + 1), m.status(NOW + 1)) == before


BAD_MESSAGES: list[tuple[str, bytes, Reason]] = [
    ("too large", b'{"id":"' + b"x" * 70_000 + b'"}', Reason.PAYLOAD_TOO_LARGE),
    ("not json", b"{not json", Reason.MALFORMED_JSON),
    ("not utf-8", b'{"id": "\xff\xfe"}', Reason.MALFORMED_JSON),
    ("NaN", b'{"id":"a","seq":11,"issued_at":NaN}', Reason.MALFORMED_JSON),
    ("duplicate key", b'{"id":"a","id":"b"}', Reason.MALFORMED_JSON),
    ("deep nesting", b"[" * 30_000 + b"]" * 30_000, Reason.MALFORMED_JSON),
    ("empty schedule", b"[]", Reason.SCHEDULE_EMPTY),
    ("schedule too long", encode([setpoint(11 + i, id=f"s{i}") for i in range(97)]), Reason.SCHEDULE_TOO_LONG),
    ("number message", b"42", Reason.WRONG_TYPE),
    ("string message", b'"setpoint"', Reason.WRONG_TYPE),
    ("null message", b"null", Reason.WRONG_TYPE),
]

BAD_SETPOINTS: list[tuple[str, dict[str, Any], Reason]] = [
    ("seq as string", setpoint(11, seq="11"), Reason.WRONG_TYPE),
    ("seq fractional", setpoint(11, seq=11.5), Reason.WRONG_TYPE),
    ("limit as string", setpoint(11, import_limit_kw="100"), Reason.WRONG_TYPE),
    ("limit as bool", setpoint(11, export_limit_kw=True), Reason.WRONG_TYPE),
    ("id as number", setpoint(11, id=7), Reason.WRONG_TYPE),
    ("valid_from null", setpoint(11, valid_from=None), Reason.WRONG_TYPE),
    ("typo in a field", setpoint(11, targt_kw=10.0), Reason.UNKNOWN_FIELD),
    ("no valid_until", setpoint(11, valid_until=OMIT), Reason.MISSING_FIELD),
    ("no seq", setpoint(11, seq=OMIT), Reason.MISSING_FIELD),
    ("version 2", setpoint(11, v=2), Reason.UNSUPPORTED_VERSION),
    ("bad id", setpoint(11, id="has space"), Reason.INVALID_VALUE),
    ("negative seq", setpoint(11, seq=-1), Reason.INVALID_VALUE),
    ("zero ramp", setpoint(11, ramp_kw_per_s=0), Reason.INVALID_VALUE),
    ("negative import", setpoint(11, import_limit_kw=-1.0), Reason.NEGATIVE_LIMIT),
    ("negative export", setpoint(11, export_limit_kw=-0.5), Reason.NEGATIVE_LIMIT),
    ("window reversed", setpoint(11, valid_from=NOW + 30, valid_until=NOW + 20), Reason.INVALID_WINDOW),
    ("valid_until in the past", setpoint(11, valid_from=NOW - 60, valid_until=NOW - 1), Reason.VALID_UNTIL_PAST),
    ("valid_until now", setpoint(11, valid_until=NOW), Reason.VALID_UNTIL_PAST),
    ("issued long ago", setpoint(11, issued_at=NOW - 31), Reason.ISSUED_AT_OUT_OF_WINDOW),
    ("issued in the future", setpoint(11, issued_at=NOW + 31), Reason.ISSUED_AT_OUT_OF_WINDOW),
    ("too far ahead", setpoint(11, valid_from=NOW + 3 * 86400, valid_until=NOW + 3 * 86400 + 60), Reason.TOO_FAR_AHEAD),
    ("lease too long", setpoint(11, valid_until=NOW + 3 * 86400), Reason.LEASE_TOO_LONG),
    ("target beyond import reach", setpoint(11, import_limit_kw=5000, target_kw=450.0), Reason.TARGET_OUT_OF_RANGE),
    ("target beyond export reach", setpoint(11, export_limit_kw=500, target_kw=-150.0), Reason.TARGET_OUT_OF_RANGE),
    ("target above own import", setpoint(11, import_limit_kw=100, target_kw=150.0), Reason.TARGET_OUTSIDE_LIMITS),
    ("target below own export", setpoint(11, export_limit_kw=20, target_kw=-30.0), Reason.TARGET_OUTSIDE_LIMITS),
    ("seq below last", setpoint(9), Reason.SEQ_STALE),
    ("seq replayed", setpoint(10, id="again"), Reason.SEQ_REPLAYED),
]


@pytest.mark.parametrize(("case", "payload", "reason"), BAD_MESSAGES, ids=[c[0] for c in BAD_MESSAGES])
def test_unreadable_message_gets_one_ack_with_its_reason(manager: DispatchManager, case: str, payload: bytes,
                                                         reason: Reason) -> None:
    before = (manager.limits_at(NOW + 1), manager.status(NOW + 1))
    acks = manager.submit(payload, NOW)
    assert [(a.reason, a.accepted, a.id, a.seq) for a in acks] == [(reason, False, None, None)]
    assert acks[0].detail and len(acks[0].ref) == 16
    _unchanged(manager, before)


@pytest.mark.parametrize(("case", "sp", "reason"), BAD_SETPOINTS, ids=[c[0] for c in BAD_SETPOINTS])
def test_bad_setpoint_is_rejected_with_its_reason(manager: DispatchManager, case: str, sp: dict[str, Any],
                                                  reason: Reason) -> None:
    before = (manager.limits_at(NOW + 1), manager.status(NOW + 1))
    acks = manager.submit(encode(sp), NOW)
    assert len(acks) == 1
    assert acks[0].reason is reason, acks[0].detail
    assert not acks[0].accepted and acks[0].applied_at is None
    if reason not in (Reason.WRONG_TYPE, Reason.MISSING_FIELD, Reason.INVALID_VALUE):
        assert (acks[0].id, acks[0].seq) == (sp["id"], sp["seq"])  # the operator can match the ack
    _unchanged(manager, before)


def test_number_that_overflows_to_infinity_is_an_invalid_value(manager: DispatchManager) -> None:
    payload = encode(setpoint(11, import_limit_kw=12345.0)).replace(b"12345.0", b"1e400")
    acks = manager.submit(payload, NOW)
    assert acks[0].reason is Reason.INVALID_VALUE and "import_limit_kw" in acks[0].detail


def test_integral_float_seq_counts_as_integer_like_json_schema(manager: DispatchManager) -> None:
    acks = manager.submit(encode(setpoint(11, seq=11.0)), NOW)
    assert acks[0].accepted and acks[0].seq == 11


def test_schedule_is_atomic_one_bad_element_rejects_all(manager: DispatchManager) -> None:
    before = (manager.limits_at(NOW + 1), manager.status(NOW + 1))
    schedule = [
        setpoint(11, valid_from=NOW + 60, valid_until=NOW + 120),
        setpoint(12, valid_from=NOW + 120, valid_until=NOW + 180, import_limit_kw=-5),
        setpoint(13, valid_from=NOW + 180, valid_until=NOW + 240),
    ]
    acks = manager.submit(encode(schedule), NOW)
    assert [a.reason for a in acks] == [Reason.SCHEDULE_REJECTED, Reason.NEGATIVE_LIMIT, Reason.SCHEDULE_REJECTED]
    assert "[1]" in acks[0].detail and acks[1].detail.startswith("[1]")
    _unchanged(manager, before)


def test_schedule_overlap_and_seq_order_inside_a_schedule(manager: DispatchManager) -> None:
    overlap = [setpoint(11, valid_from=NOW + 60, valid_until=NOW + 120),
               setpoint(12, valid_from=NOW + 100, valid_until=NOW + 180)]
    assert [a.reason for a in manager.submit(encode(overlap), NOW)] == [Reason.SCHEDULE_REJECTED,
                                                                        Reason.SCHEDULE_OVERLAP]
    disorder = [setpoint(12, valid_from=NOW + 60, valid_until=NOW + 120),
                setpoint(11, valid_from=NOW + 120, valid_until=NOW + 180)]
    acks = manager.submit(encode(disorder), NOW)
    assert [a.reason for a in acks] == [Reason.SCHEDULE_REJECTED, Reason.SEQ_STALE]
    assert "within a schedule" in acks[1].detail
    assert manager.submit(encode([[1]]), NOW)[0].reason is Reason.WRONG_TYPE


def test_too_many_pending(station_cfg: StationConfig) -> None:
    s = dataclasses.replace(DispatchSettings.from_config(station_cfg), max_pending_setpoints=2)
    m = DispatchManager(s)
    first = [setpoint(1 + i, valid_from=NOW + 60 * i, valid_until=NOW + 60 * (i + 1)) for i in range(2)]
    assert all(a.accepted for a in m.submit(encode(first), NOW))
    acks = m.submit(encode(setpoint(3, valid_from=NOW + 300, valid_until=NOW + 360)), NOW)
    assert [a.reason for a in acks] == [Reason.TOO_MANY_PENDING]


def test_rejected_seq_is_not_consumed(manager: DispatchManager) -> None:
    """A setpoint rejected for its content can be corrected and re-sent with the same seq."""
    assert manager.submit(encode(setpoint(11, import_limit_kw=-1)), NOW)[0].reason is Reason.NEGATIVE_LIMIT
    assert manager.submit(encode(setpoint(11)), NOW)[0].accepted


def test_every_reason_is_documented_and_in_the_ack_schema() -> None:
    assert set(REASON_TEXT) == set(Reason)
    schema = json.loads((REPO / "docs/schemas/mqtt/dispatch-ack.json").read_text())
    assert schema["properties"]["reason"]["enum"] == [r.value for r in Reason]
    doc = (REPO / "docs/mqtt.md").read_text()
    missing = [r.value for r in Reason if f"`{r.value}`" not in doc]
    assert not missing, f"docs/mqtt.md does not list {missing}"


def test_rejections_and_acceptances_agree_with_the_published_schema(manager: DispatchManager) -> None:
    """What the JSON Schema can express, the station enforces the same way (no silent drift)."""
    schema = json.loads((REPO / "docs/schemas/mqtt/dispatch-set.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    schema_level = {Reason.WRONG_TYPE, Reason.UNKNOWN_FIELD, Reason.MISSING_FIELD, Reason.UNSUPPORTED_VERSION,
                    Reason.NEGATIVE_LIMIT, Reason.SCHEDULE_EMPTY, Reason.SCHEDULE_TOO_LONG}
    for case, sp, reason in BAD_SETPOINTS:
        if reason in schema_level:
            assert not validator.is_valid(sp), f"schema accepts '{case}'"
    for case, payload, reason in BAD_MESSAGES:
        if reason in schema_level:
            assert not validator.is_valid(json.loads(payload)), f"schema accepts '{case}'"
    good = [setpoint(11), [setpoint(12), setpoint(13, valid_from=NOW + 60, valid_until=NOW + 90)],
            setpoint(14, target_kw=-20.0, ramp_kw_per_s=50.0, valid_from=NOW, v=1)]
    for doc in good:
        assert validator.is_valid(doc)
        assert all(a.accepted for a in manager.submit(encode(doc), NOW)), doc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "seq", "issued_at", "valid_until", "import_limit_kw", "export_limit_kw",
                         "target_kw", "ramp_kw_per_s", "valid_from", "v", "x"]), children, max_size=8),
    max_leaves=20).map(lambda d: json.dumps(d).encode()))
def test_any_input_gets_acks_never_an_exception(payload: bytes) -> None:
    m = DispatchManager.from_config(DEMO)
    acks = m.submit(payload, NOW)
    assert acks and all(isinstance(a.reason, Reason) for a in acks)
    lim = m.limits_at(NOW + 1)
    assert lim.import_limit_kw <= DEMO.import_cap_kw and lim.export_limit_kw <= DEMO.grid.export_limit_kw
