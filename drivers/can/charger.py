"""One gun's vehicle link for the controller: a :class:`ChargerSession` on the gun's CAN bus.

The control cycle talks to :class:`ChargerLink` only (thread-safe):

* outputs: :meth:`status` (an immutable :class:`SessionStatus`: phase, identity, BCP limits, live BCL
  demand and demand power, BCS/BSM status, whether output is allowed, the current setpoint, the stop reason
  with its attribution) and the events, delivered to ``on_event(gun_id, event)`` the instant they arise -
  ``StopOutput`` means "bring this gun to <= 5 A by ``current_deadline``", ``InsulationCheckRequested`` and
  ``PrechargeRequested`` ask for the power stage's hooks;
* inputs: :meth:`set_current_limit` (what the allocation gives this gun; the setpoint never exceeds BCL, BCP
  or the gun), :meth:`set_measurements` (measured output, reported in CCS), :meth:`insulation_done`,
  :meth:`precharge_done` / :meth:`precharge_failed`, :meth:`stop` (operator or charger fault),
  :meth:`start` (plug connected and authorised).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import can

from drivers.can.bus import charger_filters, open_bus
from drivers.can.runner import CanRunner
from drivers.gbt27930.attribution import ChargerStop
from drivers.gbt27930.events import Event, SessionStatus
from drivers.gbt27930.session import MAX_GBT_CHARGE_CURRENT_A, ChargerSession, SessionConfig
from station.config import Gun


def session_config_for(gun: Gun, **overrides: object) -> SessionConfig:
    """The CML capability of a gun: its voltage range and current, the latter capped at what GB/T 2015 can
    express (400 A)."""
    values: dict[str, object] = dict(
        max_voltage_v=gun.max_voltage_v, min_voltage_v=gun.min_voltage_v,
        max_current_a=min(gun.max_current_a, MAX_GBT_CHARGE_CURRENT_A),
    )
    values.update(overrides)
    return SessionConfig(**values)  # type: ignore[arg-type]


class ChargerLink:
    def __init__(self, gun_id: str, bus: can.BusABC, session: ChargerSession, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[str, Event], None] | None = None) -> None:
        self.gun_id = gun_id
        self.session = session
        self._on_event = on_event
        self.runner = CanRunner(bus, session, clock=clock, on_events=self._events, name=f"gbt-{gun_id}")

    @classmethod
    def for_gun(cls, gun: Gun, *, clock: Callable[[], float] = time.monotonic,
                wall_clock: Callable[[], datetime] | None = datetime.now,
                on_event: Callable[[str, Event], None] | None = None, **session_overrides: object) -> ChargerLink:
        """Open the gun's bus and build its session. ``wall_clock`` dates the CTS time sync (None: omit)."""
        if gun.can is None:
            raise ValueError(f"gun {gun.id}: has no can section")
        bus = open_bus(gun.can, can_filters=charger_filters())
        session = ChargerSession(session_config_for(gun, **session_overrides), wall_clock=wall_clock)
        return cls(gun.id, bus, session, clock=clock, on_event=on_event)

    def _events(self, events: list[Event]) -> None:
        if self._on_event is not None:
            for ev in events:
                self._on_event(self.gun_id, ev)

    # ---- lifecycle

    def open(self) -> None:
        """Start listening (the runner thread); the session stays idle until :meth:`start`."""
        self.runner.start()

    def start(self) -> list[Event]:
        return self.runner.call(lambda: self.session.start(self.runner.clock()))

    def close(self) -> None:
        self.runner.stop()
        self.runner.bus.shutdown()

    # ---- controller inputs

    def set_current_limit(self, amps: float) -> None:
        self.runner.call(lambda: self.session.set_current_limit(amps))

    def set_measurements(self, voltage_v: float, current_a: float) -> list[Event]:
        """Measured output; returns (and delivers) ``StopOverdue`` if current stayed above 5 A too long."""
        return self.runner.call(lambda: self.session.set_measurements(voltage_v, current_a, self.runner.clock()))

    def insulation_done(self, ok: bool, detail: str = "") -> list[Event]:
        return self.runner.call(lambda: self.session.insulation_done(ok, self.runner.clock(), detail))

    def precharge_done(self, gun_voltage_v: float) -> list[Event]:
        return self.runner.call(lambda: self.session.precharge_done(gun_voltage_v, self.runner.clock()))

    def precharge_failed(self, detail: str) -> list[Event]:
        return self.runner.call(lambda: self.session.precharge_failed(detail, self.runner.clock()))

    def stop(self, cause: ChargerStop = ChargerStop.OPERATOR, detail: str = "") -> list[Event]:
        return self.runner.call(lambda: self.session.stop(self.runner.clock(), cause, detail))

    # ---- controller outputs

    def status(self) -> SessionStatus:
        with self.runner.lock:
            return self.session.status()

    def health(self) -> dict[str, object]:
        """The CAN link itself: ``healthy`` turns False on the first bus error (the session's own timeouts
        then stop the output); counters of frames, error frames and bus errors."""
        r = self.runner
        return {"healthy": r.healthy, "frames_in": r.frames_in, "frames_out": r.frames_out,
                "error_frames": r.error_frames, "bus_errors": r.bus_errors}
