"""What the allocation sees in one cycle and what it decides (plain, immutable data).

Sign conventions (the same everywhere in the project):

* gun power > 0 flows into the vehicle; < 0 is V2G discharge;
* BESS power > 0 discharges into the station;
* grid power > 0 is import.

All powers are kW. The grid balance includes module losses: a gun at ``p`` kW draws ``p / eff`` from the
AC bus when charging and returns ``|p| * eff`` when discharging, so
``grid_kw = sum(ac(p_g)) + aux_load_kw - bess_kw``.  With efficiencies of 1 (the default) losses are zero.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

INF = math.inf
# how often the module assignment may re-decide when modules ran short (stage e of assign_modules);
# random scarce stations never needed more than 2 (bench/bench_assignment.py)
MODULE_ROUNDS = 3


class BoundBy(enum.IntEnum):
    """The constraint that stopped a gun at its power (what an operator asks: "why not more?")."""

    VEHICLE = 0  # its vehicle's demand, its BCP limits, its V2G offer, or it draws less than given
    GUN = 1  # the gun's (or cable's) own rating
    MODULES = 2  # the power modules currently switched to it
    GRID = 3  # the grid import cap (with the BESS) or the dispatch target
    RAMP = 4  # the grid ramp-rate limit
    PRIORITY = 5  # a higher priority class took the power first

    @property
    def label(self) -> str:
        return self.name.lower()


class Flag(enum.IntFlag):
    """Station-level conditions of a decision (published in telemetry, asserted in tests)."""

    GRID_OVER_CAP = 1  # even with every load shed, the BESS and V2G flat out, import exceeds the cap
    RAMP_LIMITED = 2  # the ramp limit, not the cap, bounded the vehicles
    TRACKING_SHORTFALL = 4  # the dispatch target cannot be held this cycle
    BESS_SUPPORT = 8  # the BESS discharges to carry demand above the cap
    V2G_ACTIVE = 16  # at least one vehicle is discharging
    TRACKING = 32  # a dispatch target is being tracked


@dataclass(frozen=True)
class GunInput:
    """One gun in one cycle. A gun without a charging session has demand 0 and no V2G offer."""

    id: str
    demand_kw: float = 0.0  # what the vehicle asks for (BCL voltage x current)
    vehicle_max_kw: float = INF  # vehicle limits (BCP max current x voltage, ...)
    gun_max_kw: float = INF  # the gun's rating at the present voltage
    v2g_kw: float = 0.0  # discharge the vehicle offers (0 unless bidirectional and offered)
    priority: int = 1  # 1 is served first
    voltage_v: float = math.nan  # present voltage, for module current limits (nan: rated power)
    efficiency: float = 1.0  # AC->DC efficiency of the modules feeding it
    measured_kw: float = math.nan  # actual power last cycle (closed loop); nan: not measured
    prev_alloc_kw: float = math.nan  # what it was given last cycle
    under_s: float = 0.0  # state: how long it has drawn less than it was given
    draw_cap_kw: float = INF  # state: closed-loop cap (inf: the vehicle draws what it is given)


@dataclass(frozen=True)
class ModuleInput:
    """One power module and where it may be switched (indices into the gun list)."""

    id: str
    rated_kw: float
    allowed: tuple[int, ...]
    max_current_a: float = INF
    min_voltage_v: float = 0.0
    max_voltage_v: float = INF
    available: bool = True  # healthy and reachable
    gun: int = -1  # gun it is switched to now (-1: free)
    current_a: float = 0.0  # measured output current (switching needs ~0)
    draining: bool = False  # state: commanded to zero current, to be released
    surplus_s: float = 0.0  # state: how long it has been surplus on its gun


@dataclass(frozen=True)
class BessInput:
    soc: float = 0.5
    capacity_kwh: float = 0.0
    soc_min: float = 0.05
    soc_max: float = 0.95
    reserve_soc: float = 0.2  # vehicles may not take the battery below this; dispatch may
    max_charge_kw: float = 0.0
    max_discharge_kw: float = 0.0
    charge_efficiency: float = 1.0
    discharge_efficiency: float = 1.0
    available: bool = False
    soc_target: float = math.nan  # planner: recharge towards this (nan: soc_max)
    support_max_kw: float = math.nan  # planner: most discharge to carry vehicles (nan: max_discharge_kw)
    charge_min_kw: float = 0.0  # planner: charge at least this, before vehicles


@dataclass(frozen=True)
class GridInput:
    import_limit_kw: float  # the cap in force: min(transformer, contract, dispatch lease)
    export_limit_kw: float = 0.0
    target_kw: float = math.nan  # dispatch: hold exactly this (nan: no target)
    ramp_kw_per_s: float = math.nan  # nan or <= 0: no ramp limit
    last_kw: float = math.nan  # grid power last cycle (measured or expected); nan: unknown


@dataclass(frozen=True)
class Params:
    """Tuning that comes from the station file (``control:``); defaults match station/config.py."""

    closed_loop_settle_s: float = 2.0
    closed_loop_margin_kw: float = 5.0
    closed_loop_tolerance_kw: float = 2.0
    module_release_hold_s: float = 5.0
    module_release_margin_kw: float = 5.0
    module_idle_current_a: float = 1.0


@dataclass(frozen=True)
class AllocationInput:
    dt_s: float
    grid: GridInput
    guns: tuple[GunInput, ...]
    bess: BessInput = BessInput()
    aux_load_kw: float = 0.0
    modules: tuple[ModuleInput, ...] = ()  # empty: no module constraint (and no assignment)
    params: Params = Params()


@dataclass(frozen=True)
class GunResult:
    id: str
    power_kw: float
    bound_by: BoundBy
    module_cap_kw: float  # what its switched-in modules can deliver now (inf without modules)
    under_s: float  # next state
    draw_cap_kw: float  # next state


@dataclass(frozen=True)
class ModuleResult:
    id: str
    gun: int  # -1: free
    draining: bool
    surplus_s: float


@dataclass(frozen=True)
class Allocation:
    guns: tuple[GunResult, ...]
    bess_kw: float
    grid_kw: float
    unserved_kw: float  # sum over guns of what vehicles asked for and did not get
    shortfall_kw: float  # |target - grid| the station cannot close this cycle (0 without target)
    flags: Flag
    modules: tuple[ModuleResult, ...] = field(default=())

    def power(self, gun_id: str) -> float:
        return next(g.power_kw for g in self.guns if g.id == gun_id)
