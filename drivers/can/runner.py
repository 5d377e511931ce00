"""Drive one sans-IO endpoint (the charger session, or the BMS simulator on the bench) on a python-can bus.

One thread per bus: wait for a frame until the endpoint's next deadline, feed it with the time of the
injected clock (not the bus timestamp: timeouts must use the same clock as every other decision), poll,
send what is due. Inputs from other threads go through :meth:`CanRunner.call`, which holds the same lock
and flushes the frames they cause (a CST leaves at once, not at the next wake-up).

If the bus fails (hub gone, interface down, no buffer space) the runner counts it, reports ``healthy =
False`` and keeps polling the endpoint on its own deadlines, so the session's timeouts still fire and it
still commands "stop output now"; the first frame that goes through again makes it healthy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import can

from drivers.gbt27930.frame import Frame

log = logging.getLogger(__name__)
R = TypeVar("R")


class Endpoint(Protocol):
    def receive(self, frame: Frame, now: float) -> list[Any]: ...

    def poll(self, now: float) -> tuple[list[Frame], list[Any]]: ...

    def next_deadline(self) -> float | None: ...


class CanRunner:
    """Runs ``endpoint`` on ``bus`` in a daemon thread. ``on_events`` gets every event, in the order the
    events arose, called from the runner's thread or the caller's of :meth:`call` (whichever produced or
    found them first), with the endpoint lock *not* held - so it may call back into the endpoint."""

    def __init__(self, bus: can.BusABC, endpoint: Endpoint, *, clock: Callable[[], float] = time.monotonic,
                 on_events: Callable[[list[Any]], None] | None = None, name: str = "can-runner",
                 max_wait_s: float = 0.05) -> None:
        self.bus = bus
        self.endpoint = endpoint
        self.clock = clock
        self.on_events = on_events
        self.max_wait_s = max_wait_s
        self.lock = threading.RLock()
        self._dispatch_lock = threading.Lock()
        self._pending: deque[Any] = deque()  # events in causal order, filled under ``lock``
        self._dispatching: int | None = None  # the thread delivering events right now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.frames_in = 0
        self.frames_out = 0
        self.error_frames = 0
        self.bus_errors = 0
        self.healthy = True
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[[], R]) -> R:
        """Run an endpoint input under the lock, then poll and send at once."""
        with self.lock:
            result = fn()
            events = list(result) if isinstance(result, list) else []
            events += self._poll_and_send(self.clock())
            self._pending.extend(events)
        self._dispatch()
        return result

    def _dispatch(self) -> None:
        """Deliver queued events in the order they arose, whichever thread produced them: a StopOutput
        from the controller's thread never overtakes an OutputAllowed the CAN thread produced before it."""
        me = threading.get_ident()
        if self._dispatching == me:
            return  # a callback called back into the endpoint: the outer loop delivers what that caused
        with self._dispatch_lock:
            self._dispatching = me
            try:
                while True:
                    with self.lock:
                        if not self._pending:
                            return
                        batch = list(self._pending)
                        self._pending.clear()
                    if self.on_events is not None:
                        self.on_events(batch)
            finally:
                self._dispatching = None

    def _poll_and_send(self, now: float) -> list[Any]:
        frames, events = self.endpoint.poll(now)
        for f in frames:
            try:
                self.bus.send(can.Message(arbitration_id=f.can_id, data=f.data, is_extended_id=True))
            except (can.CanError, OSError) as exc:
                self._bus_failed(exc)
                break
            self.frames_out += 1
            self._bus_ok()
        return events

    def _bus_failed(self, exc: BaseException) -> None:
        self.bus_errors += 1
        if self.healthy:
            log.warning("CAN bus %s failed: %s", getattr(self.bus, "channel_info", self.bus), exc)
        self.healthy = False

    def _bus_ok(self) -> None:
        if not self.healthy:
            log.warning("CAN bus %s works again", getattr(self.bus, "channel_info", self.bus))
        self.healthy = True

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self.lock:
                    deadline = self.endpoint.next_deadline()
                now = self.clock()
                wait = self.max_wait_s if deadline is None else min(self.max_wait_s, max(0.0, deadline - now))
                msg = None
                if not self.healthy:  # a failed bus may fail at once again: do not spin on it
                    self._stop.wait(wait)
                    wait = 0.0
                try:
                    msg = self.bus.recv(wait)
                except (can.CanError, OSError) as exc:
                    self._bus_failed(exc)
                events: list[Any] = []
                with self.lock:
                    while msg is not None:
                        self._bus_ok()
                        now = self.clock()
                        if msg.is_error_frame:
                            self.error_frames += 1
                        elif msg.is_extended_id and not msg.is_remote_frame:
                            self.frames_in += 1
                            events += self.endpoint.receive(Frame(msg.arbitration_id, bytes(msg.data)), now)
                        events += self._poll_and_send(now)  # replies (CTS, CST) leave before the next read
                        try:
                            msg = self.bus.recv(0.0)
                        except (can.CanError, OSError) as exc:
                            self._bus_failed(exc)
                            msg = None
                    events += self._poll_and_send(self.clock())
                    self._pending.extend(events)
                self._dispatch()
        except BaseException as exc:  # pragma: no cover - reported to the owner, who fails safe
            self.error = exc
            log.exception("CAN runner %s stopped", self._thread.name)
            raise
