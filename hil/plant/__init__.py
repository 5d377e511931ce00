"""Plant physics shared by the offline simulator, the device simulators and the HIL bench:
vehicles (CC-CV packs, V2G offers), DC power modules, battery storage, grid meter."""

from hil.plant.bess import BatteryStorage, BessRating
from hil.plant.meter import GridMeter, MeterRating
from hil.plant.modules import ModuleFault, ModuleRating, PowerModule
from hil.plant.vehicle import V2GOffer, Vehicle, VehicleSpec, car, fast_car, truck

__all__ = [
    "BatteryStorage", "BessRating", "GridMeter", "MeterRating", "ModuleFault", "ModuleRating",
    "PowerModule", "V2GOffer", "Vehicle", "VehicleSpec", "car", "fast_car", "truck",
]
