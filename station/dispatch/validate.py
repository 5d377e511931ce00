"""Stateless reading of a ``dispatch/set`` message: bytes in, setpoints or precise rejections out.

Checks that need no memory of earlier messages live here (shape, types, value rules); checks against
the clock, the station and what was accepted before live in :mod:`station.dispatch.manager`. The first
failing rule of a setpoint decides its reason, in the order of :data:`_FIELD_ORDER` and the code below,
so one bad message always gets the same answer.

Wire format (docs/mqtt.md, docs/schemas/mqtt/dispatch-set.json): a JSON object is one setpoint, a JSON
array of objects is a schedule. Times are UTC epoch seconds (JSON numbers): no time-zone or
leap-second parsing in the hot path, and the same representation as the station's own clock.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from station.dispatch.model import PAYLOAD_VERSION, Setpoint
from station.dispatch.reasons import Reason

SETPOINT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
MAX_SEQ = 2**53 - 1  # the largest integer every JSON implementation represents exactly

_ID_RE = re.compile(SETPOINT_ID_PATTERN)
_REQUIRED = ("id", "seq", "issued_at", "valid_until", "import_limit_kw", "export_limit_kw")
_OPTIONAL = ("v", "valid_from", "target_kw", "ramp_kw_per_s")
_KNOWN = frozenset(_REQUIRED + _OPTIONAL)
# the order in which type errors are reported (the order of the docs)
_FIELD_ORDER = ("v", "id", "seq", "issued_at", "valid_from", "valid_until",
                "import_limit_kw", "export_limit_kw", "target_kw", "ramp_kw_per_s")
_NULLABLE = frozenset(("target_kw", "ramp_kw_per_s"))


class SignatureError(Exception):
    """Raised by a :data:`Verifier`; ``reason`` is SIGNATURE_MISSING or SIGNATURE_INVALID."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


Verifier = Callable[[bytes], bytes]
"""Checks a message's signature and returns the signed content; raises :class:`SignatureError`."""


def no_signature(payload: bytes) -> bytes:
    """The verifier when signing is off: the message is the content."""
    return payload


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    id: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Either ``error`` (nothing readable) or one entry per setpoint, in message order."""

    ref: str
    error: Rejection | None
    items: tuple[Setpoint | Rejection, ...] = ()
    is_schedule: bool = False


class _DuplicateKey(ValueError):
    pass


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(f"duplicate key '{k}'")
            seen.add(k)
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def message_ref(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


def parse_message(
    payload: bytes,
    now: float,
    *,
    verifier: Verifier = no_signature,
    max_message_bytes: int = 65536,
    max_schedule_length: int = 96,
) -> ParsedMessage:
    """Read one ``dispatch/set`` message received at ``now``. Never raises on bad input."""
    ref = message_ref(payload)
    if len(payload) > max_message_bytes:
        return ParsedMessage(ref, Rejection(Reason.PAYLOAD_TOO_LARGE,
                                            f"{len(payload)} bytes > {max_message_bytes}"))
    try:
        content = verifier(payload)
    except SignatureError as exc:
        return ParsedMessage(ref, Rejection(exc.reason, exc.detail))
    try:
        doc = json.loads(content, object_pairs_hook=_pairs_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return ParsedMessage(ref, Rejection(Reason.MALFORMED_JSON, _short(str(exc))))
    if isinstance(doc, dict):
        return ParsedMessage(ref, None, (_setpoint(doc, now),))
    if isinstance(doc, list):
        if not doc:
            return ParsedMessage(ref, Rejection(Reason.SCHEDULE_EMPTY, "a schedule needs at least one setpoint"))
        if len(doc) > max_schedule_length:
            return ParsedMessage(ref, Rejection(Reason.SCHEDULE_TOO_LONG,
                                                f"{len(doc)} setpoints > {max_schedule_length}"))
        items = tuple(
            _setpoint(d, now) if isinstance(d, dict)
            else Rejection(Reason.WRONG_TYPE, f"[{i}]: a setpoint must be a JSON object, not {_json_type(d)}")
            for i, d in enumerate(doc)
        )
        return ParsedMessage(ref, None, items, is_schedule=True)
    return ParsedMessage(ref, Rejection(Reason.WRONG_TYPE,
                                        f"message must be a JSON object or array, not {_json_type(doc)}"))


def _setpoint(d: dict[str, Any], now: float) -> Setpoint | Rejection:
    raw_id = d.get("id")
    sid = raw_id if isinstance(raw_id, str) and _ID_RE.match(raw_id) else None
    raw_seq: Any = d.get("seq")
    seq = int(raw_seq) if _is_int(raw_seq) and 0 <= raw_seq <= MAX_SEQ else None

    def reject(reason: Reason, detail: str) -> Rejection:
        return Rejection(reason, detail, sid, seq)

    unknown = sorted(k for k in d if k not in _KNOWN)
    if unknown:
        return reject(Reason.UNKNOWN_FIELD, f"unknown field(s): {', '.join(unknown)}")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        return reject(Reason.MISSING_FIELD, f"missing field(s): {', '.join(missing)}")
    for name in _FIELD_ORDER:
        if name not in d:
            continue
        value = d[name]
        if value is None and name in _NULLABLE:
            continue
        if name == "id":
            ok = isinstance(value, str)
        elif name in ("v", "seq"):
            ok = _is_int(value)
        else:
            ok = _is_number(value)
        if not ok:
            want = "a string" if name == "id" else "an integer" if name in ("v", "seq") else "a number"
            return reject(Reason.WRONG_TYPE, f"{name}: must be {want}, not {_json_type(value)}")
    if d.get("v", PAYLOAD_VERSION) != PAYLOAD_VERSION:
        return reject(Reason.UNSUPPORTED_VERSION, f"v: {d['v']} is not supported (this station speaks {PAYLOAD_VERSION})")
    if sid is None:
        return reject(Reason.INVALID_VALUE, f"id: must match {SETPOINT_ID_PATTERN}")
    if seq is None:
        return reject(Reason.INVALID_VALUE, f"seq: must be between 0 and {MAX_SEQ}")
    for name in ("issued_at", "valid_from", "valid_until", "import_limit_kw", "export_limit_kw",
                 "target_kw", "ramp_kw_per_s"):
        value = d.get(name)
        if value is not None and not math.isfinite(value):
            return reject(Reason.INVALID_VALUE, f"{name}: must be finite")
    for name in ("import_limit_kw", "export_limit_kw"):
        if d[name] < 0:
            return reject(Reason.NEGATIVE_LIMIT, f"{name}: {d[name]:g} must be >= 0")
    ramp = d.get("ramp_kw_per_s")
    if ramp is not None and ramp <= 0:
        return reject(Reason.INVALID_VALUE, f"ramp_kw_per_s: {ramp:g} must be > 0")
    valid_from = d.get("valid_from")
    if valid_from is not None and not valid_from < d["valid_until"]:
        return reject(Reason.INVALID_WINDOW,
                      f"valid_from {valid_from:.3f} must be before valid_until {d['valid_until']:.3f}")
    target = d.get("target_kw")
    return Setpoint(
        id=sid,
        seq=seq,
        issued_at=float(d["issued_at"]),
        valid_from=float(now if valid_from is None else valid_from),  # absent: from reception on
        valid_until=float(d["valid_until"]),
        import_limit_kw=float(d["import_limit_kw"]),
        export_limit_kw=float(d["export_limit_kw"]),
        target_kw=None if target is None else float(target),
        ramp_kw_per_s=None if ramp is None else float(ramp),
    )


def _is_int(value: Any) -> bool:
    """An integer as JSON Schema counts them: 7 and 7.0 both (a number with no fractional part)."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
