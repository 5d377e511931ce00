"""The loop runner on an injected clock: deadlines are absolute, overruns are counted, not replayed."""

from station.control.loop import PeriodicLoop


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        assert dt > 0
        self.t += dt


def test_ticks_land_on_absolute_deadlines_without_drift() -> None:
    clock = FakeClock()
    deadlines: list[float] = []

    def step(i: int, deadline: float) -> None:
        deadlines.append(deadline)
        clock.t += 0.003  # work takes 3 ms of a 10 ms period

    loop = PeriodicLoop(0.01, step, clock=clock, sleep=clock.sleep)
    loop.run(ticks=1000)
    assert len(deadlines) == 1000
    assert abs(deadlines[-1] - (100.0 + 999 * 0.01)) < 1e-9  # no accumulated drift
    assert loop.stats.overruns == 0
    assert loop.stats.max_lateness_s < 1e-9


def test_overrun_skips_missed_deadlines_instead_of_bursting() -> None:
    clock = FakeClock()
    deadlines: list[float] = []

    def step(i: int, deadline: float) -> None:
        deadlines.append(deadline)
        clock.t += 0.035 if i == 3 else 0.001  # tick 3 overruns by 3.5 periods

    loop = PeriodicLoop(0.01, step, clock=clock, sleep=clock.sleep)
    loop.run(ticks=6)
    gaps = [round(b - a, 6) for a, b in zip(deadlines, deadlines[1:])]
    assert gaps == [0.01, 0.01, 0.01, 0.04, 0.01]
    assert loop.stats.overruns == 3


def test_step_exception_stops_loop_and_is_kept() -> None:
    clock = FakeClock()

    def step(i: int, deadline: float) -> None:
        clock.t += 0.001
        if i == 2:
            raise RuntimeError("kernel fault")

    loop = PeriodicLoop(0.01, step, clock=clock, sleep=clock.sleep)
    loop.run(ticks=10)
    assert loop.stats.ticks == 2
    assert isinstance(loop.error, RuntimeError)
