"""A power-module cabinet: N DC modules (hil.plant.modules.PowerModule) on consecutive unit ids.

As in the station config (``cabinets[].modbus.unit_id`` is the first module, ``modules.count`` of them),
module ``i`` (0-based) answers on unit ``first_unit + i``; other unit ids get 0x0B, as from a gateway.

Each module drives into a load whose voltage the test sets (``load_voltage_v``, default 600 V: a battery
the module charges). Commands written over Modbus reach the module at once:
``voltage_setpoint`` -> voltage limit, ``current_limit`` -> current setpoint (limited further by
``power_limit`` at the load voltage), ``output_enable`` -> enable, ``fault_reset`` = 1 -> clear faults.
The measurements follow the plant on every :meth:`step`.
"""

from __future__ import annotations

from drivers.modbus.regmap import RegisterMap
from hil.devices.base import DeviceSim
from hil.plant.modules import ModuleFault, ModuleRating, PowerModule

NEEDS = ("voltage_setpoint", "current_limit", "output_enable", "measured_voltage", "measured_current",
         "measured_power", "fault_word")


class ModuleCabinetSim(DeviceSim):
    def __init__(self, regmap: RegisterMap, rating: ModuleRating = ModuleRating(), count: int = 1,
                 first_unit: int = 1, load_voltage_v: float = 600.0) -> None:
        if count < 1:
            raise ValueError("a cabinet has at least one module")
        super().__init__(regmap, list(range(first_unit, first_unit + count)))
        self.require(*NEEDS)
        self.first_unit = first_unit
        self.modules = [PowerModule(rating, f"M{i + 1}") for i in range(count)]
        self.load_voltage_v = [load_voltage_v] * count
        self.power_limit_w = [rating.rated_kw * 1000.0] * count
        self.requested_current_a = [0.0] * count
        for unit in self.units:  # the module powers up with safe commands in its registers
            img = self.images[unit]
            img.set("voltage_setpoint", 0.0)
            img.set("current_limit", 0.0)
            img.set("output_enable", 0)
            if img.has("power_limit"):
                img.set("power_limit", rating.rated_kw * 1000.0)
            if img.has("serial_number"):
                img.set("serial_number", f"HILM{unit:04d}")

    def module(self, unit: int) -> PowerModule:
        return self.modules[self._unit(unit) - self.first_unit]

    def inject_fault(self, unit: int, fault: ModuleFault) -> None:
        """A module fault in the plant: the module trips and its fault word shows the bits."""
        with self.lock:
            self.module(unit).inject_fault(fault)
            self._refresh()
            self._apply_forced()

    def _on_write(self, unit: int, points: tuple[str, ...]) -> None:
        i = unit - self.first_unit
        m, img = self.modules[i], self.images[unit]
        if "voltage_setpoint" in points:
            m.voltage_limit_v = float(img.get("voltage_setpoint") or 0.0)
        if "current_limit" in points:
            self.requested_current_a[i] = float(img.get("current_limit") or 0.0)
        if "power_limit" in points:
            self.power_limit_w[i] = float(img.get("power_limit") or 0.0)
        if "output_enable" in points:
            m.enabled = img.get("output_enable") == 1
        if "fault_reset" in points and img.get("fault_reset") == 1:
            m.clear_faults()
        self._apply_setpoint(i)

    def _apply_setpoint(self, i: int) -> None:
        v = self.load_voltage_v[i]
        limit = self.power_limit_w[i] / v if v > 0 else float("inf")
        self.modules[i].current_setpoint_a = max(-limit, min(limit, self.requested_current_a[i]))

    def _advance(self, dt_s: float) -> None:
        for i, m in enumerate(self.modules):
            self._apply_setpoint(i)
            m.step(dt_s, self.load_voltage_v[i])

    def _refresh(self) -> None:
        for i, m in enumerate(self.modules):
            unit = self.first_unit + i
            target = m.target_current_a(self.load_voltage_v[i])
            status = []
            if m.enabled and not m.fault:
                status.append("output_on")
            if m.enabled and abs(self.requested_current_a[i]) > abs(target) + 1e-6:
                status.append("power_limited" if abs(target) < m.rating.max_current_a else "current_limited")
            self._publish(unit, {
                "measured_voltage": round(m.output_voltage_v, 1),
                "measured_current": round(m.output_current_a, 1),
                "measured_power": round(m.dc_power_kw * 1000.0),
                "temperature": round(m.temperature_c, 1),
                "fault_word": int(m.fault),
                "dc_energy_out": max(0, round(m.dc_energy_out_kwh * 1000.0)),
            })
            if "status_word" in self.regmap.points:
                self.images[unit].set("status_word", status)
