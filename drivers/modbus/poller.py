"""Poll groups on absolute deadlines (sans-IO schedule) and the asyncio loop that runs one device.

Why absolute deadlines: ``sleep(period)`` after each poll drifts by the poll's own duration every cycle
(a 10 Hz group polled in 8 ms runs at ~9.3 Hz). Here the next deadline is the previous *deadline* plus
the period. When a poll overruns one or more whole periods, the missed deadlines are counted in
``skipped`` and dropped, not caught up in a burst: a burst of back-to-back reads would only deliver
several copies of "now" and delay the other groups on the same connection.

One device, one connection (pymodbus serialises requests on it anyway), so the groups of a device share
one task: :class:`DevicePoller` always polls the group with the earliest deadline next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger("drivers.modbus.poller")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class GroupSchedule:
    """Deadlines of one poll group: ``deadline`` is when the next poll is due."""

    name: str
    period_s: float
    deadline: float
    polls: int = 0
    skipped: int = 0  # deadlines dropped because a poll overran them
    late_s_max: float = 0.0  # worst start lateness seen (poll start - deadline)

    def __post_init__(self) -> None:
        if self.period_s <= 0:
            raise ValueError(f"poll group {self.name}: period must be > 0, got {self.period_s}")

    def started(self, now: float) -> None:
        self.late_s_max = max(self.late_s_max, now - self.deadline)

    def done(self, now: float) -> int:
        """After a poll of this group finished at ``now``: advance to the next deadline after ``now``.

        Every deadline that passed while the poll ran is dropped (the next poll keeps to the original
        grid). Returns how many were skipped this time (0 when the poll fit in its period).
        """
        self.polls += 1
        self.deadline += self.period_s
        skipped = 0
        while self.deadline < now:
            self.deadline += self.period_s
            skipped += 1
        self.skipped += skipped
        return skipped


class Schedule:
    """The poll groups of one device. All groups start due at ``start``."""

    def __init__(self, periods_s: Mapping[str, float], start: float) -> None:
        if not periods_s:
            raise ValueError("a device needs at least one poll group")
        self.groups = {name: GroupSchedule(name, float(p), start) for name, p in periods_s.items()}

    def next_due(self) -> GroupSchedule:
        """The group with the earliest deadline (ties: the shortest period, i.e. the fast group, first)."""
        return min(self.groups.values(), key=lambda g: (g.deadline, g.period_s))


class DevicePoller:
    """Runs one device's poll groups until stopped.

    ``poll(group)`` does the I/O (and reports health itself); ``clock`` and ``sleep`` are injected so the
    same loop runs on the real clock in the service and on a controlled one in tests. ``poll`` must not
    raise for device faults (timeouts, exceptions): those are health, not crashes; anything it does
    raise is logged and the loop continues.
    """

    def __init__(self, name: str, periods_s: Mapping[str, float], poll: Callable[[str], Awaitable[object]],
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.name = name
        self._poll = poll
        self._clock = clock
        self._sleep = sleep
        self.schedule = Schedule(periods_s, clock())
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run the loop as a task of the running event loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"modbus-poll-{self.name}")
        return self._task

    async def stop(self) -> None:
        """Cancel the loop (mid-sleep or mid-poll: a cancelled poll leaves the last values as they were)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def run(self) -> None:
        while True:
            group = self.schedule.next_due()
            wait = group.deadline - self._clock()
            if wait > 0:
                await self._sleep(wait)
            group.started(self._clock())
            try:
                await self._poll(group.name)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug in one poll must not stop the device's polling
                log.exception("modbus device %s: poll of group %s failed", self.name, group.name)
            if skipped := group.done(self._clock()):
                log.debug("modbus device %s: group %s overran, %d deadlines skipped", self.name, group.name,
                          skipped)
