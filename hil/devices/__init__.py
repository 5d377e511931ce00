"""Modbus device simulators for the HIL bench: the register maps of config/devices/ served over TCP by
pymodbus (``SimDevice`` datastore), with the plant models of :mod:`hil.plant` behind them.

- :class:`~hil.devices.cabinet.ModuleCabinetSim`: N DC modules on consecutive unit ids;
- :class:`~hil.devices.bess.BessSim`: a SunSpec battery (models 1, 802, 124);
- :class:`~hil.devices.meter.MeterSim`: a SunSpec grid meter (models 1, 203) reporting a sum.

Physics advance on an injected clock (``step(dt)``); fault knobs and forced values are in
:mod:`hil.devices.base`; ``station-hil device`` (:mod:`hil.devices.cli`) runs one on a real timer.
"""
