"""Capped exponential reconnect backoff with jitter (sans-IO: the caller waits).

Jitter matters at fleet scale: when a broker node restarts, thousands of stations lose it at the same
instant. Without jitter they come back in synchronized waves; "equal jitter" (half fixed, half random)
spreads them while keeping a floor, so a single station never hammers a dead broker.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(self, min_s: float, max_s: float, rng: Callable[[], float] = random.random) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt: in [base/2, base] with base = min(max_s, min_s * 2**failures)."""
        base = min(self.max_s, self.min_s * (2.0 ** min(self.failures, 62)))
        self.failures += 1
        return base / 2.0 + self._rng() * base / 2.0

    def reset(self) -> None:
        """After a successful connection (CONNACK accepted)."""
        self.failures = 0
