"""The fixed-period control loop: a dedicated thread that wakes on absolute deadlines.

Why a thread and not asyncio: measured on these machines (../shared/reference/libraries.md), a thread
sleeping to an absolute ``perf_counter`` deadline is late by 0.10 / 0.35 ms (p50 / p99) under I/O load
with no drift, while asyncio deadlines are late by 1-2 ms (epoll rounds to whole milliseconds) and
``sleep(period)`` after the work drifts by several per cent. The Numba kernels release the GIL, so the
asyncio drivers keep running while the cycle computes.

Deadlines are absolute: tick k is due at ``start + k * period``. A tick that overruns is not followed by a
burst of catch-up ticks: missed deadlines are counted (``overruns``) and the schedule skips ahead, because
deciding twice in a row on the same measurements helps nobody.

Threads that share the interpreter with the cycle (the MQTT network thread, driver threads) call
:meth:`CycleGate.wait_turn` at their safe points (once per received message). Why: CPython hands the GIL
to a waiting thread only after a whole switch interval *without* a hand-over, and a busy I/O thread
releases and retakes the GIL at every socket call, which resets that count. Under a flood of 10,000
dispatch messages the cycle thread, woken on time by the kernel, then waited 5-85 ms for the GIL
(measured: 4-18 missed 20 ms periods per flood, whatever the switch interval, no garbage collection and
no CPU shortage involved). With the gate the busy thread steps aside while a tick is due, for at most one
period, and the cycle starts on time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoopStats:
    """Timing evidence of the loop, kept cheap enough to update every tick."""

    ticks: int = 0
    overruns: int = 0
    max_lateness_s: float = 0.0
    max_work_s: float = 0.0
    lateness_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # recent ticks

    def percentile_lateness(self, q: float) -> float:
        if not self.lateness_s:
            return 0.0
        data = sorted(self.lateness_s)
        return data[min(len(data) - 1, int(q * len(data)))]


class CycleGate:
    """Lets other threads of the process step aside while a control tick is due.

    The loop arms the gate with its next deadline before it sleeps and opens it when the step is done.
    :meth:`wait_turn` costs one float comparison when no tick is due; when one is, the caller blocks
    (GIL released) until the step is done or ``max_wait_s`` has passed, so a stopped or stuck cycle
    delays nobody for more than that. The clock is the loop's clock (injected in tests).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter, max_wait_s: float = 0.02) -> None:
        self._clock = clock
        self.max_wait_s = max_wait_s
        self._due = float("inf")
        self._cv = threading.Condition()
        self.waits = 0  # how often a caller stepped aside (evidence for tests and telemetry)

    def arm(self, deadline: float) -> None:
        self._due = deadline

    def open(self) -> None:
        with self._cv:
            self._due = float("inf")
            self._cv.notify_all()

    def wait_turn(self) -> None:
        """Call from a thread other than the cycle's at a point where it holds no lock the cycle needs."""
        if self._clock() < self._due:
            return
        with self._cv:
            if self._clock() < self._due:
                return
            self.waits += 1
            self._cv.wait_for(lambda: self._clock() < self._due, timeout=self.max_wait_s)


class PeriodicLoop:
    """Run ``step(tick_index, deadline)`` every ``period_s`` on its own thread.

    ``clock`` and ``sleep`` are injectable: tests drive a fake clock, the service uses
    ``time.perf_counter`` / ``time.sleep``. ``step`` must not raise; if it does, the loop stops and the
    exception is kept in ``error`` (the service treats that as a controller fault and fails safe).
    """

    def __init__(
        self,
        period_s: float,
        step: Callable[[int, float], None],
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        name: str = "control-cycle",
        gate: CycleGate | None = None,
    ) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be > 0")
        self.period_s = period_s
        self._step = step
        self._clock = clock
        self._sleep = sleep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name
        self.gate = gate
        self.stats = LoopStats()
        self.error: BaseException | None = None

    def run(self, ticks: int | None = None) -> None:
        """Run in the calling thread until ``stop()`` or ``ticks`` ticks (used by tests and the simulator)."""
        start = self._clock()
        k = 0
        while not self._stop.is_set() and (ticks is None or self.stats.ticks < ticks):
            deadline = start + k * self.period_s
            if self.gate is not None:
                self.gate.arm(deadline)
            now = self._clock()
            if now < deadline:
                self._sleep(deadline - now)
                now = self._clock()
            lateness = now - deadline
            try:
                self._step(self.stats.ticks, deadline)
            except BaseException as exc:  # noqa: BLE001 - recorded, the owner decides
                self.error = exc
                self._stop.set()
                break
            finally:
                if self.gate is not None:
                    self.gate.open()
            done = self._clock()
            self._record(lateness, done - now)
            # next deadline strictly in the future: skip the ones an overrun made us miss
            k += 1
            next_deadline = start + k * self.period_s
            if done > next_deadline:
                missed = int((done - next_deadline) // self.period_s) + 1
                self.stats.overruns += missed
                k += missed

    def _record(self, lateness: float, work: float) -> None:
        s = self.stats
        s.ticks += 1
        s.max_lateness_s = max(s.max_lateness_s, lateness)
        s.max_work_s = max(s.max_work_s, work)
        s.lateness_s.append(lateness)

    def start(self) -> None:
        """Run on a dedicated daemon thread."""
        if self._thread is not None:
            raise RuntimeError("loop already started")
        self._thread = threading.Thread(target=self.run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
