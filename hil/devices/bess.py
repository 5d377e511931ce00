"""A battery storage system speaking SunSpec (models 1, 802, 124), driven by hil.plant.bess.BatteryStorage.

Control, as the map describes it (config/devices/bess-sunspec.yaml):

- ``p_setpoint`` (124 OutWRte) is the battery power in percent of ``w_max`` (124 WChaMax): positive
  discharges, negative charges. It acts only while ``storage_control_mode`` (StorCtl_Mod) has the bit of
  its direction set (``discharge`` / ``charge``); otherwise the battery holds at 0;
- ``rate_revert_s`` > 0: the setpoint falls back to 0 that long after the last write of ``p_setpoint``
  (a lease, on the simulator's injected clock);
- ``set_operation`` (802 SetOp) 2 disconnects the battery (it then delivers nothing), 1 connects it;
- ``alarm_reset`` = 1 clears the alarms set with :meth:`set_alarms`.

Scale factors are fixed by the simulator (a real device chooses its own; the driver must read them).
"""

from __future__ import annotations

from drivers.modbus.regmap import RegisterMap
from hil.devices.base import DeviceSim
from hil.plant.bess import BatteryStorage, BessRating

NEEDS = ("soc", "soc_sf", "p_setpoint", "rate_sf", "w_max", "w_max_sf", "storage_control_mode",
         "battery_power", "w_sf", "alarm_word")

#: the simulator's scale factors (value = raw * 10**sf)
SCALE_FACTORS = {"soc_sf": -1, "soh_sf": 0, "wh_rtg_sf": 1, "w_cha_dis_cha_max_sf": 1, "v_sf": -1,
                 "a_sf": -1, "w_sf": 1, "w_max_sf": 1, "rate_sf": -2}
NOMINAL_VOLTAGE_V = 800.0


class BessSim(DeviceSim):
    def __init__(self, regmap: RegisterMap, rating: BessRating, initial_soc: float = 0.5, unit: int = 1) -> None:
        super().__init__(regmap, [unit])
        self.require(*NEEDS)
        self.unit = unit
        self.battery = BatteryStorage(rating, initial_soc)
        self.alarms = 0
        self._setpoint_written_at = 0.0
        img = self.images[unit]
        for name, sf in SCALE_FACTORS.items():
            if img.has(name):
                img.set(name, sf)
        self._publish(unit, {"manufacturer": "station-hil", "model": "bess-sim", "version": "1.0",
                             "serial_number": f"HILB{unit:04d}", "set_operation": 1, "rate_revert_s": 0,
                             "controller_heartbeat": 0, "alarm_reset": 0})
        img.set("w_max", max(rating.max_charge_kw, rating.max_discharge_kw) * 1000.0)
        img.set("storage_control_mode", 0)
        img.set("p_setpoint", 0.0)

    def set_alarms(self, word: int) -> None:
        """Raise model 802 Evt1 alarm bits (bit numbers as in the map); cleared by ``alarm_reset``."""
        with self.lock:
            self.alarms = word
            self._refresh()
            self._apply_forced()

    def commanded_kw(self) -> float:
        """The power the registers ask for now (+ discharge), before the plant's own limits."""
        img = self.images[self.unit]
        pct = float(img.get("p_setpoint") or 0.0)
        mode = int(img.get("storage_control_mode") or 0)
        w_max = float(img.get("w_max") or 0.0)
        if pct > 0 and not mode & 0b10 or pct < 0 and not mode & 0b01:
            return 0.0
        return pct / 100.0 * w_max / 1000.0

    def _on_write(self, unit: int, points: tuple[str, ...]) -> None:
        img = self.images[unit]
        if "p_setpoint" in points:
            self._setpoint_written_at = self.now
        if "alarm_reset" in points and img.get("alarm_reset") == 1:
            self.alarms = 0
        if "set_operation" in points:
            self.battery.available = img.get("set_operation") != 2
        self.battery.setpoint_kw = self.commanded_kw()

    def _advance(self, dt_s: float) -> None:
        img = self.images[self.unit]
        revert = img.get("rate_revert_s") if img.has("rate_revert_s") else None
        if revert and self.now - self._setpoint_written_at >= float(revert) and img.get("p_setpoint"):
            img.set("p_setpoint", 0.0)  # the lease ran out
        self.battery.setpoint_kw = self.commanded_kw()
        self.battery.step(dt_s)

    def _refresh(self) -> None:
        b, r = self.battery, self.battery.rating
        volts = NOMINAL_VOLTAGE_V * (0.9 + 0.2 * b.soc)
        if not b.available:
            state, cha = 1, 1
        elif b.power_kw > 0.1:
            state, cha = 3, 3
        elif b.power_kw < -0.1:
            state, cha = 3, 4
        else:
            state, cha = 3, 5 if b.soc >= r.soc_max else 2 if b.soc <= r.soc_min else 6
        self._publish(self.unit, {
            "energy_rating": r.capacity_kwh * 1000.0,
            "max_charge_rate": b.charge_limit_kw() * 1000.0,
            "max_discharge_rate": b.discharge_limit_kw() * 1000.0,
            "soc_max": r.soc_max * 100.0,
            "soc_min": r.soc_min * 100.0,
            "soc": b.soc * 100.0,
            "soh": 100.0,
            "charge_status": cha,
            "control_mode": 0,
            "battery_state": state,
            "alarm_word": self.alarms,
            "battery_voltage": volts,
            "battery_current": b.power_kw * 1000.0 / volts,
            "battery_power": b.power_kw * 1000.0,
        })
