"""Payloads the station publishes to the grid operator, as plain versioned dicts.

Built from plain inputs sampled from the control cycle's snapshot (never recomputed here), so the
service, the simulator and the tests produce identical payloads. The wire format of every topic is
described by a JSON Schema in ``docs/schemas/mqtt/`` (tests validate real payloads against them).

Messages that go through the outbox (telemetry, events, reports) get a stream header on the wire
(``seq``, ``historical``, ``replay``; see ``drivers/mqtt/outbox.py``); the builders here make the body.
Times are UTC epoch seconds; power is positive when the station imports from the grid (or a battery /
vehicle is charged) and negative when it exports (or discharges).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from station.attribution import Party
from station.dispatch.model import DispatchEvent, GridLimits

PAYLOAD_VERSION = 1

Health = Literal["ok", "degraded", "lost"]
EVENT_KINDS = frozenset((
    "session_started", "session_stopped", "fault", "fault_cleared",
    "dispatch_started", "dispatch_ended", "dispatch_fallback", "dispatch_fallback_reached",
    "outbox_dropped",
))


@dataclass(frozen=True, slots=True)
class GunSample:
    """One gun in one telemetry sample."""

    id: str
    available: bool  # can start a session now (not faulted, not out of service)
    state: str  # e.g. idle, connected, charging, stopping, fault, out_of_service
    power_kw: float = 0.0
    current_a: float = 0.0
    voltage_v: float = 0.0
    soc: float | None = None  # vehicle SoC 0..1 while charging


def encode(payload: Mapping[str, Any]) -> bytes:
    """The one JSON encoding of every payload: compact, ASCII-safe, no NaN (a NaN is a bug upstream)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def status_online(ts: float, *, station_id: str, firmware: str, config_sha256: str,
                  protocol: str, connection: int) -> dict[str, Any]:
    """The retained birth message published on every connection (``status`` topic)."""
    return {"v": PAYLOAD_VERSION, "state": "online", "ts": ts, "station": station_id, "firmware": firmware,
            "config_sha256": config_sha256, "protocol": protocol, "connection": connection}


def status_offline(reason: Literal["connection_lost", "shutdown"], *, station_id: str,
                   ts: float | None, since: float) -> dict[str, Any]:
    """``connection_lost`` is the last will, registered at connect (``since`` = connect time, ``ts`` None
    because the broker sends it later); ``shutdown`` is published on a clean stop."""
    return {"v": PAYLOAD_VERSION, "state": "offline", "reason": reason, "station": station_id,
            "ts": ts, "since": since}


class TelemetryPacer:
    """When the next telemetry sample is due (``mqtt.telemetry_period_s``), for a control cycle that ticks
    faster than telemetry is published.

    ``now`` is a monotonic time (the cycle's tick deadline): samples fall on a fixed grid started by the
    first call, so the rate does not drift with tick jitter; after a stall the next tick samples once and
    the missed slots are skipped, not made up in a burst (the outbox would only carry stale copies).
    """

    def __init__(self, period_s: float) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be > 0")
        self.period_s = period_s
        self._next: float | None = None

    def due(self, now: float) -> bool:
        if self._next is None:
            self._next = now + self.period_s
            return True
        if now < self._next:
            return False
        self._next += ((now - self._next) // self.period_s + 1) * self.period_s
        return True


def limits_block(limits: GridLimits) -> dict[str, Any]:
    return {"import_limit_kw": limits.import_limit_kw, "export_limit_kw": limits.export_limit_kw,
            "target_kw": limits.target_kw, "ramp_kw_per_s": limits.ramp_kw_per_s, "source": limits.source,
            "valid_until": limits.valid_until}


def telemetry(
    ts: float,
    *,
    grid_kw: float,
    limits: GridLimits,
    dispatch: Mapping[str, Any],
    guns: Sequence[GunSample],
    health: Mapping[str, Health],
    bess_kw: float | None = None,
    bess_soc: float | None = None,
    outbox: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One periodic sample (``telemetry`` topic). ``dispatch`` is ``DispatchManager.status()``,
    ``health`` maps every device (link) id to ok/degraded/lost, ``outbox`` is ``Outbox.stats()``."""
    return {
        "v": PAYLOAD_VERSION,
        "ts": ts,
        "grid_kw": grid_kw,
        "bess": None if bess_kw is None else {"power_kw": bess_kw, "soc": bess_soc},
        "guns": [
            {"id": g.id, "available": g.available, "state": g.state, "power_kw": g.power_kw,
             "current_a": g.current_a, "voltage_v": g.voltage_v, "soc": g.soc}
            for g in guns
        ],
        "limits": limits_block(limits),
        "dispatch": dict(dispatch),
        "health": dict(health),
        "outbox": None if outbox is None else dict(outbox),
    }


def event(ts: float, kind: str, **data: Any) -> dict[str, Any]:
    """An ``events`` message. ``kind`` is one of :data:`EVENT_KINDS` (a typo raises, it is a bug)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    return {"v": PAYLOAD_VERSION, "ts": ts, "kind": kind, "data": data}


def session_started(ts: float, *, gun: str, session_id: str, vehicle_id: str | None = None) -> dict[str, Any]:
    return event(ts, "session_started", gun=gun, session_id=session_id, vehicle_id=vehicle_id)


def session_stopped(ts: float, *, gun: str, session_id: str, energy_kwh: float, duration_s: float,
                    reason: str) -> dict[str, Any]:
    return event(ts, "session_stopped", gun=gun, session_id=session_id, energy_kwh=energy_kwh,
                 duration_s=duration_s, reason=reason)


def fault(ts: float, *, code: str, device: str, attribution: Party, reaction: str,
          detail: str = "", cleared: bool = False) -> dict[str, Any]:
    """A fault (or its clearing) with whom it is attributed to and what the station did about it."""
    return event(ts, "fault_cleared" if cleared else "fault", code=code, device=device,
                 attribution=attribution, reaction=reaction, detail=detail)


def dispatch_event(e: DispatchEvent) -> dict[str, Any]:
    """A change of the limits in force, from ``DispatchManager.drain_events()``."""
    return event(e.at, e.kind, **e.data)


def outbox_dropped(ts: float, *, reason: str, count: int, bytes_: int, first_seq: int, last_seq: int) -> dict[str, Any]:
    return event(ts, "outbox_dropped", reason=reason, count=count, bytes=bytes_, first_seq=first_seq,
                 last_seq=last_seq)
