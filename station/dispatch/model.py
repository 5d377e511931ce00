"""Plain value types of the dispatch component. Times are wall-clock UTC epoch seconds (floats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from station.dispatch.reasons import Reason

PAYLOAD_VERSION = 1  # field "v" of every dispatch payload


@dataclass(frozen=True, slots=True)
class Setpoint:
    """One validated setpoint as the operator sent it (limits not yet clamped to the site)."""

    id: str
    seq: int
    issued_at: float
    valid_from: float
    valid_until: float
    import_limit_kw: float
    export_limit_kw: float
    target_kw: float | None = None
    ramp_kw_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "issued_at": self.issued_at,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "import_limit_kw": self.import_limit_kw,
            "export_limit_kw": self.export_limit_kw,
        }
        if self.target_kw is not None:
            out["target_kw"] = self.target_kw
        if self.ramp_kw_per_s is not None:
            out["ramp_kw_per_s"] = self.ramp_kw_per_s
        return out


@dataclass(frozen=True, slots=True)
class GridLimits:
    """What the control cycle must respect at the grid connection right now.

    ``import_limit_kw`` never exceeds the site import cap and ``export_limit_kw`` never exceeds
    ``grid.export_limit_kw``. ``target_kw`` (positive = import, negative = export) is the exact grid power
    to hold, or None to optimise freely inside the limits. ``ramp_kw_per_s`` is how fast the cycle may move
    grid power toward the new limits/target. ``source`` is ``lease:<id>`` or ``fallback``;
    ``valid_until`` is the end of the lease, None under fallback (until further notice).
    """

    import_limit_kw: float
    export_limit_kw: float
    target_kw: float | None
    ramp_kw_per_s: float
    source: str
    valid_until: float | None


@dataclass(frozen=True, slots=True)
class StationRange:
    """What the station can physically do at its grid connection, and its own caps, in kW.

    ``import_cap_kw``/``export_cap_kw`` bound every limit handed to the cycle; ``max_import_kw`` /
    ``max_export_kw`` bound a ``target_kw`` (a target the plant cannot reach is rejected, not clamped).
    """

    import_cap_kw: float
    export_cap_kw: float
    max_import_kw: float
    max_export_kw: float
    ramp_limit_kw_per_s: float


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to one setpoint (or to a whole message that could not be read: id and seq None)."""

    id: str | None
    seq: int | None
    accepted: bool
    reason: Reason
    detail: str
    received_at: float
    applied_at: float | None = None  # when it takes (took) effect; None if rejected
    supersedes: tuple[str, ...] = ()
    ref: str = ""  # first 16 hex digits of the message's SHA-256, to match acks to unreadable messages

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": PAYLOAD_VERSION,
            "id": self.id,
            "seq": self.seq,
            "accepted": self.accepted,
            "reason": self.reason.value,
            "detail": self.detail,
            "received_at": self.received_at,
            "applied_at": self.applied_at,
            "supersedes": list(self.supersedes),
            "ref": self.ref,
        }


@dataclass(frozen=True, slots=True)
class DispatchEvent:
    """A change of the limits in force, for the ``events`` topic (``kind`` is the event name)."""

    kind: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)
