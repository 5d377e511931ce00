"""Link health per Modbus device, and the last good values with their age (sans-IO, injected time).

Why a state machine and not a boolean: the controller reacts differently to a device that missed one
answer (keep going on slightly older data: *degraded*) and to one that has been silent for longer than
its data may be trusted (derate or stop what depends on it: *lost*). Both transitions are timed from the
last good exchange, with timestamps passed in by the caller, so tests drive them with a manual clock.

Logging is once per transition (one line, with the cause), never once per failed request: a dead meter
polled at 10 Hz must not write 36,000 lines an hour.

Why values carry their timestamp: a reading the controller uses must say how old it is. ``Reading``
keeps the value, when it was read, and the maximum age its point allows; ``is_stale(now)`` is the flag
the controller checks. A failed poll never overwrites a value, and never refreshes its timestamp.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("drivers.modbus.health")


class Health(enum.Enum):
    OK = "ok"
    DEGRADED = "degraded"
    LOST = "lost"


@dataclass(frozen=True)
class HealthChange:
    """One transition, as logged and kept in ``LinkHealth.changes``."""

    device: str
    old: Health
    new: Health
    at: float
    reason: str


@dataclass(frozen=True)
class HealthPolicy:
    """When a link counts as degraded and lost.

    ``degraded_after`` consecutive failed exchanges make it degraded (1: the first miss). It becomes lost
    when no exchange has succeeded for ``lost_after_s`` (measured from the last success, or from the
    moment the link was first tried if it never succeeded), or at once when the connection itself fails
    (nothing answers on the port: there is no point in waiting out the timer).
    """

    degraded_after: int = 1
    lost_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.degraded_after < 1:
            raise ValueError("degraded_after must be >= 1")
        if self.lost_after_s <= 0:
            raise ValueError("lost_after_s must be > 0")


class LinkHealth:
    """Health of one device link. The driver reports outcomes; this decides the state and logs changes.

    A link starts *lost* (nothing is known about the device yet) and becomes *ok* only through
    :meth:`record_ok`, which the driver calls after a good exchange and, after a (re)connection, only once
    the last setpoints have been re-applied: a device that rebooted with default setpoints is not healthy.
    """

    def __init__(self, device: str, policy: HealthPolicy, now: float, logger: logging.Logger = log) -> None:
        self.device = device
        self.policy = policy
        self.state = Health.LOST
        self.since = now  # when the current state began
        self.last_ok_at: float | None = None
        self.consecutive_failures = 0
        self.last_error = ""
        self.changes: list[HealthChange] = []
        self._first_try_at = now
        self._log = logger

    def record_ok(self, now: float) -> HealthChange | None:
        """A good exchange (from a lost link: the restore after reconnection is complete)."""
        self.last_ok_at = now
        self.consecutive_failures = 0
        return self._move(Health.OK, now, "answering")

    def record_failure(self, now: float, reason: str, *, connection_lost: bool = False) -> HealthChange | None:
        """A failed exchange: timeout, exception response, corrupt frame, or a failed connection."""
        self.consecutive_failures += 1
        self.last_error = reason
        if connection_lost or self._silent_for(now) >= self.policy.lost_after_s:
            return self._move(Health.LOST, now, reason)
        if self.state is Health.OK and self.consecutive_failures >= self.policy.degraded_after:
            return self._move(Health.DEGRADED, now, reason)
        return None

    def check(self, now: float) -> HealthChange | None:
        """Apply the lost timer without an exchange (a poller blocked on a long backoff still ages out)."""
        if self.state is Health.DEGRADED and self._silent_for(now) >= self.policy.lost_after_s:
            return self._move(Health.LOST, now, f"no good answer for {self._silent_for(now):.3f} s")
        return None

    def _silent_for(self, now: float) -> float:
        return now - (self.last_ok_at if self.last_ok_at is not None else self._first_try_at)

    def _move(self, new: Health, now: float, reason: str) -> HealthChange | None:
        if new is self.state:
            return None
        change = HealthChange(self.device, self.state, new, now, reason)
        self.state, self.since = new, now
        self.changes.append(change)
        level = logging.INFO if new is Health.OK else logging.WARNING
        self._log.log(level, "modbus device %s: %s -> %s (%s)", self.device, change.old.value, new.value, reason)
        return change


@dataclass(frozen=True)
class Reading:
    """A last good value: what was read, when, and how old it may get before it is stale."""

    value: Any
    at: float
    max_age_s: float
    plausible: bool = True  # False: outside the map's range (a device fault: the controller decides)

    def age_s(self, now: float) -> float:
        return now - self.at

    def is_stale(self, now: float) -> bool:
        return self.age_s(now) > self.max_age_s


class LastValues(Mapping[str, Reading]):
    """Last good value per point name. Only successful reads write here; failures leave values to age."""

    def __init__(self) -> None:
        self._readings: dict[str, Reading] = {}

    def update(self, values: Mapping[str, Any], at: float, max_age_s: Mapping[str, float] | float,
               implausible: frozenset[str] = frozenset()) -> None:
        for name, value in values.items():
            limit = max_age_s if isinstance(max_age_s, (int, float)) else max_age_s[name]
            self._readings[name] = Reading(value, at, float(limit), name not in implausible)

    def stale(self, now: float) -> list[str]:
        """Names of the points whose last good value is older than its max age."""
        return sorted(name for name, r in self._readings.items() if r.is_stale(now))

    def implausible(self) -> list[str]:
        """Names of the points whose last value lies outside the map's range."""
        return sorted(name for name, r in self._readings.items() if not r.plausible)

    def __getitem__(self, name: str) -> Reading:
        return self._readings[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._readings)

    def __len__(self) -> int:
        return len(self._readings)
