"""Battery storage plant (battery + PCS), seen from its AC connection point.

Sign convention, the same as the allocation: ``power_kw > 0`` discharges into the station.
SoC integrates with separate charge and discharge efficiencies; the available power derates linearly in
the last ``derate_band`` of SoC before either bound (as real BMSs do), and the PCS follows its setpoint
with a first-order response. An unavailable BESS (fault, maintenance) delivers nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BessRating:
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    soc_min: float = 0.05
    soc_max: float = 0.95
    charge_efficiency: float = 0.96
    discharge_efficiency: float = 0.96
    derate_band: float = 0.03
    time_constant_s: float = 0.2


class BatteryStorage:
    def __init__(self, rating: BessRating, initial_soc: float = 0.5) -> None:
        self.rating = rating
        self.soc = initial_soc
        self.setpoint_kw = 0.0
        self.power_kw = 0.0
        self.available = True
        self.fault_code = 0
        self.ac_charged_kwh = 0.0
        self.ac_discharged_kwh = 0.0

    def discharge_limit_kw(self) -> float:
        r = self.rating
        if not self.available:
            return 0.0
        headroom = (self.soc - r.soc_min) / r.derate_band
        return r.max_discharge_kw * min(1.0, max(0.0, headroom))

    def charge_limit_kw(self) -> float:
        r = self.rating
        if not self.available:
            return 0.0
        headroom = (r.soc_max - self.soc) / r.derate_band
        return r.max_charge_kw * min(1.0, max(0.0, headroom))

    def stored_kwh(self) -> float:
        return self.soc * self.rating.capacity_kwh

    def step(self, dt_s: float) -> None:
        target = min(max(self.setpoint_kw, -self.charge_limit_kw()), self.discharge_limit_kw())
        if not self.available:
            self.power_kw = 0.0
        else:
            self.power_kw += (target - self.power_kw) * (1.0 - math.exp(-dt_s / self.rating.time_constant_s))
            # the limits are hard even while the response is still settling
            self.power_kw = min(max(self.power_kw, -self.charge_limit_kw()), self.discharge_limit_kw())
        r = self.rating
        energy_ac = self.power_kw * dt_s / 3600.0
        if energy_ac >= 0:
            stored = -energy_ac / r.discharge_efficiency
            self.ac_discharged_kwh += energy_ac
        else:
            stored = -energy_ac * r.charge_efficiency
            self.ac_charged_kwh -= energy_ac
        self.soc = min(1.0, max(0.0, self.soc + stored / r.capacity_kwh))
