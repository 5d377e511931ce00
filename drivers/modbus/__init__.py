"""Modbus field devices (power modules, BESS, grid meter) driven by register maps.

- :mod:`drivers.modbus.regmap`: the map model, YAML loader and validation (config/devices/*.yaml);
- :mod:`drivers.modbus.codec`: sans-IO conversion between physical values and register words, and the
  read plan that batches a map's points into as few requests as possible;
- the client side (link, poller, health) talks to the devices with pymodbus.

This package decides nothing about power: it reads and writes what the station asks for.
"""
