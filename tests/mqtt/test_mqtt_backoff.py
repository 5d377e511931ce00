"""Reconnect backoff: exponential, capped, jittered, reset after a successful connection."""

from drivers.mqtt.backoff import Backoff


def test_delays_double_up_to_the_cap_within_the_jitter_band() -> None:
    low = Backoff(0.5, 30.0, rng=lambda: 0.0)
    high = Backoff(0.5, 30.0, rng=lambda: 1.0)
    lows = [low.next_delay() for _ in range(10)]
    highs = [high.next_delay() for _ in range(10)]
    assert highs == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert lows == [h / 2 for h in highs]


def test_reset_after_success_and_no_overflow() -> None:
    b = Backoff(1.0, 60.0, rng=lambda: 1.0)
    for _ in range(5000):
        b.next_delay()
    assert b.next_delay() == 60.0
    b.reset()
    assert b.next_delay() == 1.0
