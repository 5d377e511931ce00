"""A charger session and a BMS simulator joined by an in-memory CAN link on a simulated clock.

This is h11's paired-endpoints test helper for GB/T: both sides are sans-IO, so a whole session (or a
600 s pause, or three retries) runs in milliseconds of wall time and every timeout is exact. The clock
jumps from one deadline to the next (``next_deadline()`` of either side, a frame in flight, a hook).

:class:`IdealPowerStage` stands in for the controller and the power modules of one gun: it answers the
insulation and precharge hooks after a delay, allows ``current_limit_a``, and delivers exactly the
session's setpoint (so CCS reports it and the vehicle plant receives it).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from drivers.gbt27930.events import Event, InsulationCheckRequested, PrechargeRequested
from drivers.gbt27930.frame import Frame
from drivers.gbt27930.session import ChargerSession
from hil.bms.simulator import BmsSimulator


@dataclass
class IdealPowerStage:
    insulation_s: float = 0.5
    insulation_ok: bool = True
    precharge_s: float = 0.3
    precharge_voltage_error: float = 0.0  # relative error of the gun voltage reported after precharge
    current_limit_a: float = 1000.0


@dataclass(order=True)
class _InFlight:
    at: float
    seq: int
    to_bms: bool = field(compare=False)
    frame: Frame = field(compare=False)


class InMemoryLink:
    """Run ``session`` against ``bms``. ``trace`` keeps every frame as (time, sender, frame)."""

    def __init__(self, session: ChargerSession, bms: BmsSimulator, stage: IdealPowerStage | None = None, *,
                 latency_s: float = 0.0002, start_s: float = 0.0) -> None:
        self.session = session
        self.bms = bms
        self.stage = stage or IdealPowerStage()
        self.latency_s = latency_s
        self.now = start_s
        self.trace: list[tuple[float, str, Frame]] = []
        self.events: list[Event] = []
        self._queue: list[_InFlight] = []
        self._hooks: list[tuple[float, int, Callable[[], list[Event]]]] = []
        self._seq = itertools.count()
        self._started = False
        # a test can cut either direction, frame by frame, and check invariants after every step
        self.drop_to_charger: Callable[[Frame], bool] = lambda f: False
        self.drop_to_bms: Callable[[Frame], bool] = lambda f: False
        self.monitor: Callable[[InMemoryLink], None] = lambda link: None

    def _note(self, events: list[Event]) -> None:
        for ev in events:
            self.events.append(ev)
            if isinstance(ev, InsulationCheckRequested):
                self._hook(self.now + self.stage.insulation_s, self._insulation_result)
            elif isinstance(ev, PrechargeRequested):
                volts = self.bms.vehicle.ocv_v * (1.0 + self.stage.precharge_voltage_error)
                self._hook(self.now + self.stage.precharge_s, partial(self._precharge_result, volts))

    def _insulation_result(self) -> list[Event]:
        return self.session.insulation_done(self.stage.insulation_ok, self.now)

    def _precharge_result(self, volts: float) -> list[Event]:
        return self.session.precharge_done(volts, self.now)

    def _hook(self, at: float, fn: Callable[[], list[Event]]) -> None:
        heapq.heappush(self._hooks, (at, next(self._seq), fn))

    def inject(self, at: float, fn: Callable[[], list[Event]]) -> None:
        """Call ``fn`` (a session input returning events) at simulated time ``at``."""
        self._hook(at, fn)

    def _send(self, frames: list[Frame], to_bms: bool) -> None:
        for f in frames:
            self.trace.append((self.now, "charger" if to_bms else "bms", f))
            heapq.heappush(self._queue, _InFlight(self.now + self.latency_s, next(self._seq), to_bms, f))

    def run(self, until: Callable[[], bool] | None = None, *, max_s: float = 120.0) -> None:
        """Advance until ``until()`` holds, the session ended, or ``max_s`` simulated seconds passed."""
        end = self.now + max_s
        if not self._started:
            self._started = True
            self._note(self.session.start(self.now))
        for _ in range(10_000_000):
            if self.session.ended or (until is not None and until()) or self.now >= end:
                return
            candidates = [t for t in (self.session.next_deadline(), self.bms.next_deadline()) if t is not None]
            if self._queue:
                candidates.append(self._queue[0].at)
            if self._hooks:
                candidates.append(self._hooks[0][0])
            self.now = min(end, max(self.now, min(candidates))) if candidates else end
            self._step()
        raise RuntimeError("in-memory link did not converge")

    def _step(self) -> None:
        now = self.now
        while self._queue and self._queue[0].at <= now:
            item = heapq.heappop(self._queue)
            if item.to_bms:
                if not self.drop_to_bms(item.frame):
                    self.bms.receive(item.frame, now)
            elif not self.drop_to_charger(item.frame):
                self._note(self.session.receive(item.frame, now))
        while self._hooks and self._hooks[0][0] <= now:
            _, _, fn = heapq.heappop(self._hooks)
            self._note(fn())
        s = self.session
        s.set_current_limit(self.stage.current_limit_a)
        current = s.setpoint_current_a()
        volts = self.bms.vehicle.terminal_voltage_v(current) if current > 0 else self.bms.vehicle.ocv_v
        self._note(s.set_measurements(volts, current, now))
        frames, events = s.poll(now)
        self._note(events)
        self._send(frames, to_bms=True)
        self._send(self.bms.poll(now)[0], to_bms=False)
        self.monitor(self)

    def sent(self, sender: str, name_or_pgn: int) -> list[tuple[float, Frame]]:
        """Frames of one PGN a side sent, with their times."""
        return [(t, f) for t, who, f in self.trace if who == sender and f.pgn == name_or_pgn]
