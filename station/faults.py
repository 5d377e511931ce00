"""Fault events from device snapshots: a ``fault`` when a fault appears, a ``fault_cleared`` when it goes.

Drivers report the faults that are active *now* (``drivers.modbus.device.DeviceSnapshot.faults``); the
grid operator and the audit log need the *changes*, each once, with whom the fault is attributed to and
what the station did. A device whose state is unknown (link lost: no fresh fault word) keeps its faults:
a fault is never reported cleared because we stopped hearing from the device. Sans-IO: the caller passes
the time and publishes the returned events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from station.attribution import PARTIES
from station.telemetry import fault


class FaultLike(Protocol):
    """What a driver reports for one active fault (``drivers.modbus.device.ActiveFault`` fits)."""

    device: str
    code: str
    meaning: str
    party: str
    reaction: str
    since: float


class FaultTracker:
    """Active faults per device, and the events for each change."""

    def __init__(self) -> None:
        self._active: dict[str, dict[str, FaultLike]] = {}

    def active(self, device: str | None = None) -> list[FaultLike]:
        """Faults in force (of one device, or all), in the order they were first seen."""
        devices = [device] if device is not None else list(self._active)
        return [f for d in devices for f in self._active.get(d, {}).values()]

    def update(self, ts: float, device: str, faults: Iterable[FaultLike] | None) -> list[dict[str, Any]]:
        """The device's faults at ``ts`` (``None``: unknown, e.g. the link is lost) -> events to publish."""
        if faults is None:
            return []
        now = {f.code: f for f in faults}
        for f in now.values():
            if f.party not in PARTIES:  # the map validation guarantees this; a driver bug must not publish it
                raise ValueError(f"{device}: fault {f.code} attributed to unknown party {f.party!r}")
        before = self._active.get(device, {})
        events = []
        for code, f in before.items():
            if code not in now:
                events.append(fault(ts, code=code, device=device, attribution=f.party, reaction=f.reaction,  # type: ignore[arg-type]
                                    detail=f"{f.meaning}: cleared after {ts - f.since:.1f} s", cleared=True))
        for code, f in now.items():
            if code not in before:
                events.append(fault(ts, code=code, device=device, attribution=f.party, reaction=f.reaction,  # type: ignore[arg-type]
                                    detail=f.meaning))
        kept = {c: before[c] for c in before if c in now}
        kept.update({c: f for c, f in now.items() if c not in before})
        if kept:
            self._active[device] = kept
        else:
            self._active.pop(device, None)
        return events
