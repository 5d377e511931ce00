"""Grid meter plant: the controller only ever sees the grid through a meter that is late and noisy.

``observe(t, true_kw)`` is called by the plant every step with the true power at the connection point;
``reading(t)`` returns what the meter reports at ``t``: the true value ``delay_s`` ago plus Gaussian noise
(seeded, so runs are reproducible). True energy counters are kept for the scorekeeping; the grid cap that
counts is judged on the true power, not on the reading.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class MeterRating:
    delay_s: float = 0.2
    noise_kw: float = 0.5
    seed: int = 0


class GridMeter:
    def __init__(self, rating: MeterRating = MeterRating()) -> None:
        self.rating = rating
        self._rng = random.Random(rating.seed)
        self._history: deque[tuple[float, float]] = deque()
        self._last_t: float | None = None
        self.true_kw = 0.0
        self.import_kwh = 0.0
        self.export_kwh = 0.0
        self.voltage_v = 400.0  # line-to-line, for meters that report it
        self.frequency_hz = 50.0

    def observe(self, t: float, true_kw: float) -> None:
        if self._last_t is not None:
            dt = t - self._last_t
            if self.true_kw >= 0:
                self.import_kwh += self.true_kw * dt / 3600.0
            else:
                self.export_kwh -= self.true_kw * dt / 3600.0
        self._last_t = t
        self.true_kw = true_kw
        self._history.append((t, true_kw))
        horizon = t - self.rating.delay_s - 1.0
        while len(self._history) > 2 and self._history[1][0] <= horizon:
            self._history.popleft()

    def reading(self, t: float) -> float:
        """What the meter reports at ``t``: the last true value observed at or before ``t - delay``."""
        when = t - self.rating.delay_s
        value = self._history[0][1] if self._history else 0.0
        for ts, kw in self._history:
            if ts > when:
                break
            value = kw
        noise = self._rng.gauss(0.0, self.rating.noise_kw) if self.rating.noise_kw > 0 else 0.0
        return value + noise
