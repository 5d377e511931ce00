"""DC power module plant: first-order current response with a ramp limit, voltage/current/power limits,
a load-dependent efficiency, and faults.

Losses follow the usual converter model ``P_loss = P0 + k * P_dc^2`` (a no-load loss plus a conduction
loss), calibrated so the efficiency at rated power equals the configured nominal efficiency and peaks at
half load; it falls off at light load, as on a real module.  The same losses apply in both directions (V2G).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class ModuleFault(enum.IntFlag):
    """Bits of a module's fault word. The register maps (config/devices/) give each bit its attribution."""

    OVER_TEMPERATURE = 1 << 0
    OUTPUT_OVER_VOLTAGE = 1 << 1
    OUTPUT_UNDER_VOLTAGE = 1 << 2
    OUTPUT_OVER_CURRENT = 1 << 3
    INPUT_PHASE_LOSS = 1 << 4
    FAN_FAILURE = 1 << 5
    INTERNAL = 1 << 6
    COMMUNICATION = 1 << 7


@dataclass(frozen=True)
class ModuleRating:
    rated_kw: float = 40.0
    min_voltage_v: float = 150.0
    max_voltage_v: float = 1000.0
    max_current_a: float = 134.0
    efficiency: float = 0.96  # at rated power
    ramp_kw_per_s: float = 400.0
    time_constant_s: float = 0.05
    peak_efficiency_load: float = 0.5  # load fraction where the efficiency peaks

    def max_current_at(self, voltage_v: float) -> float:
        """Current limit at an output voltage: current-limited at low voltage, power-limited above."""
        if voltage_v < self.min_voltage_v or voltage_v > self.max_voltage_v:
            return 0.0
        return min(self.max_current_a, self.rated_kw * 1000.0 / voltage_v)

    def loss_kw(self, dc_kw: float, enabled: bool = True) -> float:
        if not enabled:
            return 0.0
        # loss(x) = P0 + k x^2 has its best efficiency at x = sqrt(P0 / k): put it at peak_efficiency_load
        rated_loss = self.rated_kw * (1.0 / self.efficiency - 1.0)
        k = rated_loss / (1.0 + self.peak_efficiency_load**2) / (self.rated_kw * self.rated_kw)
        p0 = k * (self.peak_efficiency_load * self.rated_kw) ** 2
        return p0 + k * dc_kw * dc_kw

    def efficiency_at(self, dc_kw: float) -> float:
        p = abs(dc_kw)
        return p / (p + self.loss_kw(p)) if p > 0 else 0.0


class PowerModule:
    """One module. Commands: ``enable``, ``current_setpoint_a`` (signed, + charges the vehicle) and
    ``voltage_limit_v``. The load sets the output voltage (``step(dt, load_voltage_v)``)."""

    def __init__(self, rating: ModuleRating, module_id: str = "") -> None:
        self.rating = rating
        self.module_id = module_id
        self.enabled = False
        self.current_setpoint_a = 0.0
        self.voltage_limit_v = rating.max_voltage_v
        self.output_current_a = 0.0
        self.output_voltage_v = 0.0
        self.fault = ModuleFault(0)
        self.temperature_c = 30.0
        self.ac_energy_in_kwh = 0.0
        self.dc_energy_out_kwh = 0.0

    @property
    def dc_power_kw(self) -> float:
        return self.output_voltage_v * self.output_current_a / 1000.0

    @property
    def ac_power_kw(self) -> float:
        """Power drawn from the AC bus (negative when feeding it back in V2G)."""
        return self.dc_power_kw + self.rating.loss_kw(self.dc_power_kw, self.enabled and not self.fault)

    def inject_fault(self, fault: ModuleFault) -> None:
        self.fault |= fault

    def clear_faults(self) -> None:
        self.fault = ModuleFault(0)

    def target_current_a(self, load_voltage_v: float) -> float:
        if not self.enabled or self.fault or load_voltage_v > self.voltage_limit_v:
            return 0.0
        limit = self.rating.max_current_at(load_voltage_v)
        return min(max(self.current_setpoint_a, -limit), limit)

    def step(self, dt_s: float, load_voltage_v: float) -> None:
        """Advance the module by ``dt_s`` into a load at ``load_voltage_v``."""
        self.output_voltage_v = load_voltage_v if (self.enabled and not self.fault) else 0.0
        target = self.target_current_a(load_voltage_v)
        err = target - self.output_current_a
        step = err * (1.0 - math.exp(-dt_s / self.rating.time_constant_s)) if dt_s > 0 else 0.0
        if load_voltage_v > 0:
            max_step = self.rating.ramp_kw_per_s * 1000.0 / load_voltage_v * dt_s
            step = min(max(step, -max_step), max_step)
        if target == 0.0 and (self.fault or not self.enabled):
            step = -self.output_current_a  # a tripped or disabled module stops at once (hardware)
        self.output_current_a += step
        self.ac_energy_in_kwh += self.ac_power_kw * dt_s / 3600.0
        self.dc_energy_out_kwh += self.dc_power_kw * dt_s / 3600.0
        self.temperature_c += dt_s * (0.02 * abs(self.dc_power_kw) - 0.05 * (self.temperature_c - 30.0)) / 10.0
