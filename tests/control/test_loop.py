"""The loop runner on an injected clock: deadlines are absolute, overruns are counted, not replayed."""

import threading

from station.control.loop import CycleGate, PeriodicLoop


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


def test_gate_is_armed_while_a_tick_is_due_and_opened_after_the_step() -> None:
    """The loop arms the gate with each deadline and opens it once the step is done: a thread that
    calls wait_turn() during a step (the tick is due) is the one the gate would hold back."""
    clock = FakeClock()
    gate = CycleGate(clock, max_wait_s=0.0)
    seen: list[tuple[float, float]] = []

    def step(i: int, deadline: float) -> None:
        seen.append((deadline, gate._due))
        gate.wait_turn()  # as another thread would, right now: the tick is due, so it steps aside
        clock.t += 0.002

    loop = PeriodicLoop(0.01, step, clock=clock, sleep=clock.sleep, gate=gate)
    loop.run(ticks=3)
    assert [due for _, due in seen] == [d for d, _ in seen]  # armed with the tick's own deadline
    assert gate.waits == 3
    assert gate._due == float("inf")  # opened after the last step
    clock.t += 1.0
    gate.wait_turn()  # nothing due: costs a comparison, counts nothing
    assert gate.waits == 3


def test_gate_holds_a_caller_until_the_step_is_done() -> None:
    clock = FakeClock()
    gate = CycleGate(clock, max_wait_s=30.0)
    gate.arm(clock.t - 0.001)  # a tick is due now
    released = threading.Event()

    def other_thread() -> None:
        gate.wait_turn()
        released.set()

    t = threading.Thread(target=other_thread)
    t.start()
    assert not released.wait(0.05)  # still held: the step has not finished
    gate.open()
    t.join(5.0)
    assert released.is_set() and gate.waits == 1


def test_gate_lets_a_caller_go_after_max_wait_when_the_cycle_is_stuck() -> None:
    clock = FakeClock()
    gate = CycleGate(clock, max_wait_s=0.01)
    gate.arm(clock.t)
    gate.wait_turn()  # returns by itself: a stuck cycle delays the network thread by max_wait_s only
    assert gate.waits == 1
