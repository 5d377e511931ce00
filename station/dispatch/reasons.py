"""Every reason a dispatch message can be answered with: one table, one code per rule.

The operator's software branches on these codes, so they are part of the wire contract: never rename
one, only add. ``docs/mqtt.md`` lists them (a test checks the list is complete), and the JSON Schema of
``dispatch/ack`` enumerates them.
"""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    """Why a setpoint was accepted or rejected. The value is the wire code."""

    OK = "ok"
    # message level: nothing inside could be read, so the ack carries no id/seq
    PAYLOAD_TOO_LARGE = "payload_too_large"
    SIGNATURE_MISSING = "signature_missing"
    SIGNATURE_INVALID = "signature_invalid"
    MALFORMED_JSON = "malformed_json"
    SCHEDULE_EMPTY = "schedule_empty"
    SCHEDULE_TOO_LONG = "schedule_too_long"
    # one setpoint: its shape
    WRONG_TYPE = "wrong_type"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID_VALUE = "invalid_value"
    NEGATIVE_LIMIT = "negative_limit"
    INVALID_WINDOW = "invalid_window"
    # one setpoint: against time, the station and what was accepted before
    VALID_UNTIL_PAST = "valid_until_past"
    ISSUED_AT_OUT_OF_WINDOW = "issued_at_out_of_window"
    TOO_FAR_AHEAD = "too_far_ahead"
    LEASE_TOO_LONG = "lease_too_long"
    TARGET_OUT_OF_RANGE = "target_out_of_range"
    TARGET_OUTSIDE_LIMITS = "target_outside_limits"
    SEQ_STALE = "seq_stale"
    SEQ_REPLAYED = "seq_replayed"
    SCHEDULE_OVERLAP = "schedule_overlap"
    SCHEDULE_REJECTED = "schedule_rejected"
    TOO_MANY_PENDING = "too_many_pending"


REASON_TEXT: dict[Reason, str] = {
    Reason.OK: "accepted (active now, or scheduled for valid_from)",
    Reason.PAYLOAD_TOO_LARGE: "message larger than dispatch.max_message_bytes",
    Reason.SIGNATURE_MISSING: "signing is required by the station and the message is not a JWS envelope",
    Reason.SIGNATURE_INVALID: "JWS envelope malformed, wrong algorithm or key id, or the signature does not verify",
    Reason.MALFORMED_JSON: "not UTF-8 JSON, or contains NaN/Infinity",
    Reason.SCHEDULE_EMPTY: "a schedule (JSON array) with no setpoint",
    Reason.SCHEDULE_TOO_LONG: "a schedule with more setpoints than dispatch.max_schedule_length",
    Reason.WRONG_TYPE: "a field (or the message) has the wrong JSON type",
    Reason.UNKNOWN_FIELD: "a field the station does not know (typos are not ignored)",
    Reason.MISSING_FIELD: "a required field is absent",
    Reason.UNSUPPORTED_VERSION: "field v is not a payload version this station speaks",
    Reason.INVALID_VALUE: "a value breaks its rule (id pattern, seq range, ramp > 0, finite times)",
    Reason.NEGATIVE_LIMIT: "import_limit_kw or export_limit_kw below zero",
    Reason.INVALID_WINDOW: "valid_from is not before valid_until",
    Reason.VALID_UNTIL_PAST: "valid_until is not in the future at reception",
    Reason.ISSUED_AT_OUT_OF_WINDOW: "issued_at differs from the station clock by more than max_clock_skew_s",
    Reason.TOO_FAR_AHEAD: "valid_from is further ahead than dispatch.max_schedule_ahead_s",
    Reason.LEASE_TOO_LONG: "valid_until - valid_from exceeds dispatch.max_lease_s",
    Reason.TARGET_OUT_OF_RANGE: "target_kw outside what the station can physically import or export",
    Reason.TARGET_OUTSIDE_LIMITS: "target_kw outside the setpoint's own [-export_limit_kw, import_limit_kw]",
    Reason.SEQ_STALE: "seq not above the highest seq accepted (or not increasing within a schedule)",
    Reason.SEQ_REPLAYED: "seq equal to one accepted before: a replayed or duplicated message",
    Reason.SCHEDULE_OVERLAP: "two setpoints of one schedule have overlapping windows",
    Reason.SCHEDULE_REJECTED: "valid, but another setpoint of the same schedule was rejected (schedules are atomic)",
    Reason.TOO_MANY_PENDING: "accepting would exceed dispatch.max_pending_setpoints",
}
