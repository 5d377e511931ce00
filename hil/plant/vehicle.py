"""Vehicle battery plant: what a car or truck accepts, what its BMS asks for, and V2G.

The pack is an equivalent circuit: open-circuit voltage rising with SoC plus an internal resistance.
Charging follows the usual CC-CV shape:

* constant-current phase limited by the BMS (``max_current_a``, sent in BCP) and by an accepted C-rate
  that falls as SoC rises (``taper_start_soc`` .. ``taper_end_soc``), as fast-charging curves do;
* constant-voltage phase: once terminal voltage would exceed ``max_voltage_v`` the accepted current is
  ``(max_voltage_v - ocv) / R``, so it decays towards zero.

What the BMS sends in BCL is exactly this accepted current at ``max_voltage_v`` (CV target), which is the
vehicle demand the controller sees.  Energy is conserved: terminal energy = stored energy + I^2 R heat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class V2GOffer:
    """What the driver agreed to give back: never below ``min_soc``, at most ``max_discharge_kw``."""

    max_discharge_kw: float
    min_soc: float = 0.5


@dataclass(frozen=True)
class VehicleSpec:
    vehicle_id: str
    capacity_kwh: float
    initial_soc: float
    target_soc: float = 0.9
    kind: Literal["car", "truck"] = "car"
    nominal_voltage_v: float = 400.0
    max_voltage_v: float = 450.0  # maximum allowable total charging voltage (BHM / BCP)
    max_current_a: float = 250.0  # maximum allowable charging current (BCP)
    max_c_rate: float = 2.0  # accepted power at low SoC, in multiples of capacity per hour
    taper_start_soc: float = 0.5
    taper_end_soc: float = 0.85
    taper_min_c: float = 0.3
    internal_resistance_ohm: float = 0.06
    arrival_s: float = 0.0
    departure_s: float = float("inf")
    v2g: V2GOffer | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial_soc <= 1.0 or not 0.0 < self.target_soc <= 1.0:
            raise ValueError(f"{self.vehicle_id}: SoC values must lie in 0..1")
        if self.capacity_kwh <= 0 or self.max_current_a <= 0 or self.internal_resistance_ohm <= 0:
            raise ValueError(f"{self.vehicle_id}: capacity, current and resistance must be > 0")
        if self.ocv_at(1.0) >= self.max_voltage_v:
            raise ValueError(f"{self.vehicle_id}: max_voltage_v must exceed the full-pack open-circuit voltage")

    def ocv_at(self, soc: float) -> float:
        """Open-circuit voltage: ~88 % of nominal when empty, ~106 % when full (NMC-like, linearised)."""
        return self.nominal_voltage_v * (0.88 + 0.18 * min(max(soc, 0.0), 1.0))

    def c_rate_at(self, soc: float) -> float:
        if soc <= self.taper_start_soc:
            return self.max_c_rate
        if soc >= self.taper_end_soc:
            return self.taper_min_c
        x = (soc - self.taper_start_soc) / (self.taper_end_soc - self.taper_start_soc)
        return self.max_c_rate + x * (self.taper_min_c - self.max_c_rate)


@dataclass
class Vehicle:
    """A vehicle plugged into a gun. ``step(current_a, dt)`` applies what the charger delivered."""

    spec: VehicleSpec
    soc: float = field(init=False)
    energy_in_kwh: float = 0.0  # at the terminals, charging
    energy_out_kwh: float = 0.0  # at the terminals, V2G discharge
    heat_kwh: float = 0.0
    overcurrent_s: float = 0.0  # time spent above the GB 44263 over-current threshold
    # the BMS values depend on SoC only: computed once per SoC (long simulations ask several times a step)
    _cached_soc: float = field(default=-1.0, init=False, repr=False)
    _cached_ocv: float = field(default=0.0, init=False, repr=False)
    _cached_accepted: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.soc = self.spec.initial_soc

    def _refresh(self) -> None:
        if self._cached_soc != self.soc:
            self._cached_soc = self.soc
            self._cached_ocv = ocv = self.spec.ocv_at(self.soc)
            self._cached_accepted = self._accepted(ocv)

    # ---- what the BMS reports -------------------------------------------------------------------

    @property
    def ocv_v(self) -> float:
        self._refresh()
        return self._cached_ocv

    @property
    def full(self) -> bool:
        return self.soc >= self.spec.target_soc - 1e-9

    def accepted_current_a(self) -> float:
        """The charging current the BMS asks for right now (BCL current demand)."""
        self._refresh()
        return self._cached_accepted

    def _accepted(self, ocv: float) -> float:
        if self.full:
            return 0.0
        s = self.spec
        cc = min(s.max_current_a, s.c_rate_at(self.soc) * s.capacity_kwh * 1000.0 / ocv)
        cv = max(0.0, (s.max_voltage_v - ocv) / s.internal_resistance_ohm)
        return min(cc, cv)

    def requested_voltage_v(self) -> float:
        """BCL voltage demand: the CV target."""
        return self.spec.max_voltage_v

    def terminal_voltage_v(self, current_a: float) -> float:
        return self.ocv_v + current_a * self.spec.internal_resistance_ohm

    def demand_kw(self) -> float:
        """Power at the terminals if the requested current were delivered."""
        i = self.accepted_current_a()
        return self.terminal_voltage_v(i) * i / 1000.0

    def v2g_available_kw(self) -> float:
        """Discharge the driver allows right now (0 below the agreed minimum SoC)."""
        offer = self.spec.v2g
        if offer is None or self.soc <= offer.min_soc + 1e-9:
            return 0.0
        return offer.max_discharge_kw

    def energy_wanted_kwh(self) -> float:
        return max(0.0, self.spec.target_soc - self.soc) * self.spec.capacity_kwh

    # ---- physics ----------------------------------------------------------------------------------

    def step(self, current_a: float, dt_s: float) -> float:
        """Apply a charger current for ``dt_s`` (positive = charging). Returns terminal power in kW.

        A discharge below the V2G floor or without an offer is clamped to zero (the BMS opens its
        contactors rather than give energy it did not offer); the controller must never ask for it.
        """
        if current_a < 0 and self.v2g_available_kw() <= 0.0:
            current_a = 0.0
        requested = self.accepted_current_a()
        threshold = requested * 1.1 if requested >= 30.0 else requested + 3.0
        self.overcurrent_s = self.overcurrent_s + dt_s if current_a > threshold else 0.0
        r = self.spec.internal_resistance_ohm
        ocv = self.ocv_v
        stored_j = ocv * current_a * dt_s
        heat_j = current_a * current_a * r * dt_s
        terminal_kwh = (stored_j + heat_j) / JOULES_PER_KWH
        self.soc = min(1.0, max(0.0, self.soc + stored_j / JOULES_PER_KWH / self.spec.capacity_kwh))
        self.heat_kwh += heat_j / JOULES_PER_KWH
        if terminal_kwh >= 0:
            self.energy_in_kwh += terminal_kwh
        else:
            self.energy_out_kwh -= terminal_kwh
        return (ocv + current_a * r) * current_a / 1000.0

    def current_for_power(self, power_kw: float) -> float:
        """The current that delivers ``power_kw`` at the terminals (solves V(I)*I = P for the pack)."""
        if power_kw == 0.0:
            return 0.0
        r = self.spec.internal_resistance_ohm
        ocv = self.ocv_v
        disc = ocv * ocv + 4.0 * r * power_kw * 1000.0
        if disc < 0:  # more discharge than the pack can give at any current: the maximum-power point
            return -ocv / (2.0 * r)
        return (-ocv + disc**0.5) / (2.0 * r)


def car(vehicle_id: str, capacity_kwh: float = 80.0, initial_soc: float = 0.2, **kw: object) -> VehicleSpec:
    """A typical 400 V-class car (cars in the scenarios: 50-150 kWh)."""
    defaults: dict[str, object] = dict(
        kind="car", nominal_voltage_v=400.0, max_voltage_v=460.0, max_current_a=250.0, max_c_rate=2.0,
        internal_resistance_ohm=0.06,
    )
    defaults.update(kw)
    return VehicleSpec(vehicle_id, capacity_kwh, initial_soc, **defaults)  # type: ignore[arg-type]


def fast_car(vehicle_id: str, capacity_kwh: float = 100.0, initial_soc: float = 0.15, **kw: object) -> VehicleSpec:
    """An 800 V-class car that takes 3C at low SoC (needs a 600 kW-class gun to show its peak)."""
    defaults: dict[str, object] = dict(
        kind="car", nominal_voltage_v=750.0, max_voltage_v=860.0, max_current_a=600.0, max_c_rate=3.0,
        internal_resistance_ohm=0.05,
    )
    defaults.update(kw)
    return VehicleSpec(vehicle_id, capacity_kwh, initial_soc, **defaults)  # type: ignore[arg-type]


def truck(vehicle_id: str, capacity_kwh: float = 450.0, initial_soc: float = 0.2, **kw: object) -> VehicleSpec:
    """A heavy truck (300-600 kWh) on a megawatt gun: ~2C at low SoC, up to 1500 A."""
    defaults: dict[str, object] = dict(
        kind="truck", nominal_voltage_v=720.0, max_voltage_v=840.0, max_current_a=1500.0, max_c_rate=2.2,
        taper_start_soc=0.6, internal_resistance_ohm=0.03,
    )
    defaults.update(kw)
    return VehicleSpec(vehicle_id, capacity_kwh, initial_soc, **defaults)  # type: ignore[arg-type]
