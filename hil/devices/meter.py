"""A grid meter speaking SunSpec (models 1, 203), driven by hil.plant.meter.GridMeter.

The meter reports the *sum* of what flows through the connection point: ``base_load_kw`` plus every
source added with :meth:`MeterSim.add_source` (for example a cabinet simulator's AC power and, negated,
a BESS simulator's discharge), read on each :meth:`step`. The plant adds its delay and noise
(``MeterRating``); the three phases are balanced.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from drivers.modbus.regmap import RegisterMap
from hil.devices.base import DeviceSim
from hil.plant.meter import GridMeter, MeterRating

NEEDS = ("total_power", "w_sf")
SCALE_FACTORS = {"a_sf": 0, "v_sf": -1, "hz_sf": -2, "w_sf": 2, "tot_wh_sf": 0}


class MeterSim(DeviceSim):
    def __init__(self, regmap: RegisterMap, rating: MeterRating = MeterRating(), unit: int = 1,
                 base_load_kw: float = 0.0) -> None:
        super().__init__(regmap, [unit])
        self.require(*NEEDS)
        self.unit = unit
        self.meter = GridMeter(rating)
        self.base_load_kw = base_load_kw
        self.sources: dict[str, Callable[[], float]] = {}
        self.events = 0
        img = self.images[unit]
        for name, sf in SCALE_FACTORS.items():
            if img.has(name):
                img.set(name, sf)
        self._publish(unit, {"manufacturer": "station-hil", "model": "meter-sim", "serial_number": f"HILG{unit:04d}"})
        self.meter.observe(0.0, base_load_kw)

    def add_source(self, name: str, kw: Callable[[], float]) -> None:
        """Count ``kw()`` (+ import) in the metered sum from the next step on."""
        self.sources[name] = kw

    def true_kw(self) -> float:
        return self.base_load_kw + sum(f() for f in self.sources.values())

    def set_events(self, word: int) -> None:
        """Raise model 203 Evt bits (e.g. 1 << 2, power failure)."""
        with self.lock:
            self.events = word
            self._refresh()
            self._apply_forced()

    def _advance(self, dt_s: float) -> None:
        self.meter.observe(self.now, self.true_kw())

    def _refresh(self) -> None:
        m = self.meter
        kw = m.reading(self.now)
        v_ll = m.voltage_v
        amps = kw * 1000.0 / (math.sqrt(3) * v_ll) if v_ll > 0 else 0.0
        self._publish(self.unit, {
            "total_power": kw * 1000.0,
            "power_a": kw * 1000.0 / 3, "power_b": kw * 1000.0 / 3, "power_c": kw * 1000.0 / 3,
            "current": 3 * abs(amps), "current_a": abs(amps), "current_b": abs(amps), "current_c": abs(amps),
            "voltage_ll": v_ll, "voltage_ln": v_ll / math.sqrt(3),
            "frequency": m.frequency_hz,
            "import_energy": m.import_kwh * 1000.0,
            "export_energy": m.export_kwh * 1000.0,
            "events": self.events,
        })
