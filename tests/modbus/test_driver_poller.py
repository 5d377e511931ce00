"""Poll schedule on absolute deadlines: no drift, overruns skip (and count) deadlines instead of bursting."""

from __future__ import annotations

import asyncio

import pytest

from drivers.modbus.poller import DevicePoller, GroupSchedule, Schedule


def test_next_deadline_is_previous_deadline_plus_period_not_now_plus_period() -> None:
    g = GroupSchedule("fast", 0.1, deadline=1.0)
    g.started(1.004)
    assert g.done(now=1.03) == 0  # the poll took 30 ms
    assert g.deadline == pytest.approx(1.1)  # not 1.13
    g.started(1.1)
    g.done(now=1.15)
    assert g.deadline == pytest.approx(1.2)
    assert g.polls == 2 and g.skipped == 0 and g.late_s_max == pytest.approx(0.004)


def test_overrun_skips_and_counts_missed_deadlines() -> None:
    g = GroupSchedule("fast", 0.1, deadline=1.0)
    assert g.done(now=1.35) == 3  # 1.1, 1.2 and 1.3 passed during the poll: dropped, not run back to back
    assert g.deadline == pytest.approx(1.4)  # still on the original grid
    assert g.skipped == 3
    assert g.done(now=1.41) == 0 and g.deadline == pytest.approx(1.5)


def test_schedule_picks_earliest_deadline_fast_first_on_ties() -> None:
    s = Schedule({"slow": 1.0, "fast": 0.1}, start=0.0)
    assert s.next_due().name == "fast"
    s.groups["fast"].done(0.01)
    assert s.next_due().name == "slow"
    with pytest.raises(ValueError):
        Schedule({}, start=0.0)
    with pytest.raises(ValueError):
        GroupSchedule("x", 0.0, 0.0)


class SimClock:
    """A clock that only moves when the loop sleeps (and when a poll 'takes' time)."""

    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s
        await asyncio.sleep(0)


async def test_device_poller_runs_groups_at_their_rates_without_drift() -> None:
    clock = SimClock()
    polls: list[tuple[str, float]] = []

    async def poll(group: str) -> None:
        polls.append((group, round(clock.t, 6)))
        clock.t += 0.013  # each poll takes 13 ms
        if group == "slow" and len(polls) > 40:
            raise RuntimeError("a bug in the poll")  # logged, the loop goes on

    poller = DevicePoller("dc-01", {"fast": 0.1, "slow": 1.0}, poll, clock=clock, sleep=clock.sleep)
    task = poller.start()
    while clock.t < 103.0:
        await asyncio.sleep(0)
    await poller.stop()
    assert task.done()
    fast = [t for g, t in polls if g == "fast"]
    slow = [t for g, t in polls if g == "slow"]
    # fast polls start on the 100 ms grid (slow polls push some fast ones by 13 ms, never cumulatively)
    assert all(abs((t - 100.0) / 0.1 - round((t - 100.0) / 0.1)) * 0.1 <= 0.0131 for t in fast)
    assert len(fast) >= 29
    # slow polls share the connection: they start right after the fast poll due at the same second,
    # and the offset does not accumulate (100.013, 101.013, 102.013 ... not 100, 101.013, 102.026)
    assert slow[:3] == pytest.approx([100.013, 101.013, 102.013])
    assert poller.schedule.groups["fast"].skipped == 0
