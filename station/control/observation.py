"""What a power-sharing policy sees each cycle and what it decides, as arrays in the station's order.

The station service fills an :class:`Observation` from its drivers (GB/T sessions, Modbus devices, the
dispatch lease); the offline simulator fills it from the plant models. Every policy - ours
(``station.control.decide.Controller``) and the peers' baselines the simulator compares it with - reads
the same observation and returns a :class:`Decision`, so they are judged under identical constraints.

Guns are indexed in ``StationConfig.guns()`` order, modules in ``StationConfig.modules()`` order. Signs as
in ``station.allocate.model``: gun power > 0 into the vehicle, BESS > 0 discharging, grid > 0 import.
Arrays are reused from cycle to cycle (the service and the simulator write into them in place), so a
policy must not keep references to them across calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from station.config import StationConfig


@dataclass
class Observation:
    """One instant of the station as the controller can know it (measurements, never the true plant)."""

    n_guns: int
    n_modules: int
    t_s: float = 0.0  # seconds since the start of the run (service: monotonic clock)
    dt_s: float = 1.0  # time since the previous decision
    # per gun (vehicle side, from the BMS: BCP limits, BCL demand, BCS SoC)
    connected: np.ndarray = field(init=False)  # bool: a session is in the charging phase
    demand_kw: np.ndarray = field(init=False)  # BCL voltage x current the vehicle asks for now
    vehicle_max_kw: np.ndarray = field(init=False)  # BCP max current x max voltage
    v2g_kw: np.ndarray = field(init=False)  # discharge the vehicle offers now (0: none)
    voltage_v: np.ndarray = field(init=False)  # measured output voltage (nan: not charging)
    measured_kw: np.ndarray = field(init=False)  # measured output power (nan: not measured)
    energy_wanted_kwh: np.ndarray = field(init=False)  # to the driver's target SoC (nan: unknown)
    departure_s: np.ndarray = field(init=False)  # expected departure in t_s time (nan: unknown)
    # per module
    module_available: np.ndarray = field(init=False)  # bool: healthy and reachable
    module_current_a: np.ndarray = field(init=False)  # measured output current
    # BESS (limits as its BMS reports them now, already derated)
    bess_available: bool = False
    bess_soc: float = math.nan
    bess_max_charge_kw: float = 0.0
    bess_max_discharge_kw: float = 0.0
    # grid
    grid_measured_kw: float = math.nan  # the meter (late and noisy)
    import_cap_kw: float = math.inf  # in force now: min(connection, dispatch lease)
    export_cap_kw: float = 0.0
    target_kw: float = math.nan  # dispatch: hold exactly this grid power (nan: no target)
    ramp_kw_per_s: float = math.nan
    price_per_kwh: float = math.nan  # tariff now (nan: none given)
    aux_load_kw: float = 0.0

    def __post_init__(self) -> None:
        n, m = self.n_guns, self.n_modules
        self.connected = np.zeros(n, dtype=np.bool_)
        self.demand_kw = np.zeros(n)
        self.vehicle_max_kw = np.zeros(n)
        self.v2g_kw = np.zeros(n)
        self.voltage_v = np.full(n, math.nan)
        self.measured_kw = np.full(n, math.nan)
        self.energy_wanted_kwh = np.full(n, math.nan)
        self.departure_s = np.full(n, math.nan)
        self.module_available = np.ones(m, dtype=np.bool_)
        self.module_current_a = np.zeros(m)

    @classmethod
    def for_station(cls, cfg: StationConfig) -> Observation:
        return cls(len(cfg.guns()), len(cfg.modules()))


@dataclass
class Decision:
    """What a policy commands for one cycle. ``module_gun`` is None for policies that leave the module
    switch matrix to the cabinet (the simulator then runs the same module assignment for them)."""

    gun_kw: np.ndarray  # per gun
    bess_kw: float
    grid_kw: float  # what the policy expects the grid to carry (reported, not enforced)
    module_gun: np.ndarray | None = None  # per module: gun index or -1
    bound_by: np.ndarray | None = None  # per gun: station.allocate.BoundBy values
    unserved_kw: float = 0.0
    shortfall_kw: float = 0.0
    flags: int = 0


class Policy(Protocol):
    """A power-sharing policy. Constructed with the station (``policy(cfg)``), then called every cycle."""

    name: str

    def decide(self, obs: Observation) -> Decision: ...
