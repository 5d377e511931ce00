"""Battery power in kW onto SunSpec model 124 (storage controls), the one way the controller commands it.

Model 124 has no kW setpoint: ``OutWRte`` (our map's ``p_setpoint``) is a percentage of ``WChaMax``
(``w_max``), positive discharging and negative charging, and acts only while ``StorCtl_Mod``
(``storage_control_mode``) has the bit of its direction set. Converting at the call site invites three
mistakes this module exists to prevent: the wrong base (the rated power instead of the device's own
``WChaMax``), a forgotten direction bit (the write succeeds and nothing happens), and a silent clamp of a
request beyond ±100 % (here it is refused by the map's range before anything is written).
"""

from __future__ import annotations

from drivers.modbus.device import ModbusDevice
from drivers.modbus.errors import PointError

BOTH_DIRECTIONS = 0b11  # StorCtl_Mod bit 0 charge, bit 1 discharge: the sign of the setpoint decides


def power_percent(kw: float, w_max_w: float) -> float:
    """``kw`` (+ discharge) as a percentage of ``w_max_w`` watts."""
    if not w_max_w > 0:
        raise ValueError(f"WChaMax must be > 0 W, got {w_max_w!r}")
    return kw * 1000.0 / w_max_w * 100.0


async def command_bess_kw(dev: ModbusDevice, kw: float) -> float:
    """Command ``kw`` (+ discharge, - charge) on a SunSpec 124 battery; returns the percentage written.

    ``w_max`` is read from the device when the driver has no plausible value of it yet. Both direction
    bits are set once (a verified write) so the sign alone steers, then ``p_setpoint`` is written and
    verified. Both are remembered as commanded and re-applied after a reconnection, mode first."""
    w_max = dev.reading("w_max")
    if w_max is None or not w_max.plausible or not w_max.value:
        w_max_w = (await dev.read(["w_max"]))["w_max"]
    else:
        w_max_w = w_max.value
    try:
        pct = power_percent(kw, float(w_max_w))
    except ValueError as exc:
        raise PointError(dev.name, f"p_setpoint: {exc}") from None
    if dev.commanded.get("storage_control_mode") != BOTH_DIRECTIONS:
        await dev.write("storage_control_mode", BOTH_DIRECTIONS)
    await dev.write("p_setpoint", pct)
    return pct
