"""Cycle tables (the OpenEMS habit): inputs per cycle -> expected outputs per cycle, state carried by
``station.allocate.cycle.carry`` exactly as the controller carries it. Every table runs on both the Numba
kernel and the pure-Python reference."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

from station.allocate import (
    AllocationInput, BessInput, BoundBy, Flag, GridInput, GunInput, ModuleInput, Params, allocate,
)
from station.allocate.cycle import carry

ENGINES = ["numba", "reference"]


class CycleTable:
    """Run cycles; each ``step`` applies changes to the input, decides, and checks expectations."""

    def __init__(self, first: AllocationInput, engine: str) -> None:
        self.inp = first
        self.engine = engine
        self.out = None
        self.cycle = 0

    def step(self, change: Callable[[AllocationInput], AllocationInput] | None = None,
             measured: dict[str, Any] | None = None, **expect: Any) -> "CycleTable":
        if self.out is not None:
            self.inp = carry(self.inp, self.out, **(measured or {}))
        if change is not None:
            self.inp = change(self.inp)
        self.out = allocate(self.inp, self.engine)
        self.cycle += 1
        for key, want in expect.items():
            got = self._get(key)
            where = f"cycle {self.cycle}: {key}"
            if type(want) in (float, int):
                assert got == pytest.approx(want, abs=1e-6), f"{where}: {got} != {want}"
            else:
                assert got == want, f"{where}: {got} != {want}"
        return self

    def _get(self, key: str) -> Any:
        o = self.out
        if key in ("bess", "grid", "shortfall", "unserved"):
            return {"bess": o.bess_kw, "grid": o.grid_kw, "shortfall": o.shortfall_kw, "unserved": o.unserved_kw}[key]
        if key == "flags":
            return o.flags
        if key == "modules":  # gun id per module ('-' free, '*' draining)
            ids = [g.id for g in self.inp.guns]
            return "".join("-" if r.gun < 0 else ("*" if r.draining else ids[r.gun]) for r in o.modules)
        gun, _, what = key.partition("_")
        r = next(x for x in o.guns if x.id == gun)
        return {"": r.power_kw, "bound": r.bound_by, "cap": r.module_cap_kw}[what]


def gun(gid: str, demand: float, **kw: Any) -> GunInput:
    return GunInput(gid, demand_kw=demand, **kw)


def with_gun(gid: str, **changes: Any) -> Callable[[AllocationInput], AllocationInput]:
    def change(inp: AllocationInput) -> AllocationInput:
        guns = tuple(dataclasses.replace(g, **changes) if g.id == gid else g for g in inp.guns)
        return dataclasses.replace(inp, guns=guns)
    return change


def with_grid(**changes: Any) -> Callable[[AllocationInput], AllocationInput]:
    return lambda inp: dataclasses.replace(inp, grid=dataclasses.replace(inp.grid, **changes))


@pytest.mark.parametrize("engine", ENGINES)
def test_grid_ramps_up_at_the_limit_and_drops_at_once_when_the_cap_falls(engine: str) -> None:
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(500, ramp_kw_per_s=100, last_kw=0.0),
                                   guns=(gun("A", 400),)), engine)
    t.step(A=100, A_bound=BoundBy.RAMP, grid=100, flags=Flag.RAMP_LIMITED)
    t.step(A=200).step(A=300)
    t.step(A=400, A_bound=BoundBy.VEHICLE, grid=400, flags=Flag(0))
    t.step(with_grid(import_limit_kw=150), A=150, A_bound=BoundBy.GRID, grid=150)  # cap beats ramp
    t.step(with_grid(import_limit_kw=500), A=250, A_bound=BoundBy.RAMP)  # and back up at the ramp


@pytest.mark.parametrize("engine", ENGINES)
def test_battery_smooths_a_sudden_drop_in_demand(engine: str) -> None:
    bess = BessInput(soc=0.5, capacity_kwh=500, max_charge_kw=200, max_discharge_kw=200, available=True,
                     soc_target=0.5)  # at its target: it charges only to smooth the ramp
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(500, ramp_kw_per_s=100, last_kw=300.0),
                                   guns=(gun("A", 300),), bess=bess), engine)
    t.step(A=300, grid=300, bess=0)
    t.step(with_gun("A", demand_kw=0.0), A=0, bess=-200, grid=200)  # the vehicle left: 300 -> 200 kW
    t.step(bess=-100, grid=100).step(bess=0, grid=0)


@pytest.mark.parametrize("engine", ENGINES)
def test_power_a_vehicle_does_not_draw_goes_to_the_others(engine: str) -> None:
    prm = Params(closed_loop_settle_s=2.0, closed_loop_margin_kw=5.0, closed_loop_tolerance_kw=2.0)
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(200), guns=(gun("A", 150), gun("B", 150)),
                                   params=prm), engine)
    t.step(A=100, B=100, A_bound=BoundBy.GRID)
    t.step(measured={"measured_kw": {"A": 40.0}}, A=100, B=100)  # 1 s below its allocation: wait
    t.step(measured={"measured_kw": {"A": 40.0}}, A=45, B=150, A_bound=BoundBy.VEHICLE, B_bound=BoundBy.VEHICLE)
    t.step(measured={"measured_kw": {"A": 45.0}}, A=50, B=150)  # draws all it gets: probes upward
    t.step(measured={"measured_kw": {"A": 45.0}}, A=50, B=150)  # stopped growing: holds, no oscillation
    t.step(measured={"measured_kw": {"A": 45.0}}, A=50, B=150)
    for expect_a in (55, 60, 65):  # the vehicle takes more again: +5 kW per cycle
        t.step(measured={"measured_kw": {"A": t.out.power("A")}}, A=expect_a, B=200 - expect_a)


@pytest.mark.parametrize("engine", ENGINES)
def test_modules_move_only_through_draining_and_split_fairly(engine: str) -> None:
    mods = tuple(ModuleInput(f"M{i}", 40.0, allowed=(0, 1), gun=0) for i in range(4))
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(1000), guns=(gun("A", 150), gun("B", 0)),
                                   modules=mods), engine)
    t.step(modules="AAAA", A=150, A_cap=160)
    # B arrives: two of A's modules drain (A drops at once to what its other modules carry) ...
    t.step(with_gun("B", demand_kw=100.0), modules="AA**", A=80, A_bound=BoundBy.MODULES, B=0, B_bound=BoundBy.MODULES)
    # ... and move once their current is zero: 2 + 2 is the fair split of 4 modules
    t.step(modules="AABB", A=80, B=80, A_bound=BoundBy.MODULES, B_bound=BoundBy.MODULES)
    t.step(modules="AABB", A=80, B=80)  # 2+2 is fair: no further moves


@pytest.mark.parametrize("engine", ENGINES)
def test_a_gun_at_its_module_capacity_is_bound_by_what_sized_it(engine: str) -> None:
    """Capacity is assigned for the first decision; a gun that got little or nothing for another reason
    (the grid ran out in its class, a higher class took it all) says so, and only a real module shortage
    says modules. (Before, every gun at its capacity said modules, also one given none for priority.)"""
    mods = tuple(ModuleInput(f"M{i}", 40.0, allowed=(0, 1, 2)) for i in range(6))
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(120), guns=(
        gun("A", 120, priority=1), gun("B", 100, priority=2), gun("C", 50, priority=3)), modules=mods), engine)
    # A takes the whole cap: the grid ran out in B's class, C's class got nothing; neither got a module
    t.step(modules="AAA---", A=120, A_bound=BoundBy.VEHICLE, B=0, B_cap=0, B_bound=BoundBy.GRID,
           C=0, C_cap=0, C_bound=BoundBy.PRIORITY)
    # the cap rises to 160: B gets the 40 kW left, one module sized to it: still the grid, not modules
    t.step(with_grid(import_limit_kw=160.0), modules="AAAB--", B=40, B_cap=40, B_bound=BoundBy.GRID,
           C_bound=BoundBy.PRIORITY)
    # plenty of grid: B takes the two free modules, none is left for C, which is now short of modules
    t.step(with_grid(import_limit_kw=1000.0), modules="AAABBB", B=100, B_bound=BoundBy.VEHICLE,
           C=0, C_cap=0, C_bound=BoundBy.MODULES)


@pytest.mark.parametrize("engine", ENGINES)
def test_module_hysteresis_holds_before_release_and_ignores_flicker(engine: str) -> None:
    prm = Params(module_release_hold_s=3.0, module_release_margin_kw=5.0)
    mods = tuple(ModuleInput(f"M{i}", 40.0, allowed=(0, 1), gun=(0 if i < 2 else 1)) for i in range(4))
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(1000), guns=(gun("A", 80), gun("B", 80)),
                                   modules=mods, params=prm), engine)
    t.step(modules="AABB")
    t.step(with_gun("B", demand_kw=30.0), modules="AABB", B=30)  # 40 kW would do: surplus, 1 s
    t.step(with_gun("B", demand_kw=36.0), modules="AABB")  # 36 + 5 > 40: not surplus, timer resets
    t.step(with_gun("B", demand_kw=30.0), modules="AABB").step(modules="AABB")  # 1 s, 2 s
    t.step(modules="AAB*")  # 3 s: drains
    t.step(modules="AAB-", B=30)  # released once idle; nobody needs it, it stays free


@pytest.mark.parametrize("engine", ENGINES)
def test_faulted_module_leaves_its_gun_and_a_free_one_replaces_it(engine: str) -> None:
    mods = (ModuleInput("M0", 40.0, allowed=(0,), gun=0), ModuleInput("M1", 40.0, allowed=(0,), gun=0),
            ModuleInput("M2", 40.0, allowed=(0,), gun=-1))
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(1000), guns=(gun("A", 80),), modules=mods), engine)
    t.step(modules="AA-", A=80)
    fault = lambda inp: dataclasses.replace(  # noqa: E731
        inp, modules=(dataclasses.replace(inp.modules[0], available=False),) + inp.modules[1:])
    # still carrying current when it faults: it drains (capacity lost at once), the free one steps in
    t.step(fault, measured={"module_current_a": {"M0": 50.0}}, modules="*AA", A=80, A_cap=80)
    t.step(modules="-AA", A=80)


@pytest.mark.parametrize("engine", ENGINES)
def test_tracking_an_export_target_uses_battery_then_v2g_then_curtails(engine: str) -> None:
    bess = BessInput(soc=0.5, capacity_kwh=1000, max_charge_kw=200, max_discharge_kw=200, available=True)
    guns = (gun("V", 0.0, v2g_kw=150.0), gun("C", 100.0))
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(500, export_limit_kw=400, target_kw=-300,
                                                           ramp_kw_per_s=100, last_kw=0.0),
                                   guns=guns, bess=bess), engine)
    t.step(grid=-100, bess=200, C=100, V=0)  # ramping towards the target: the battery alone
    t.step(grid=-200, bess=200, C=100, V=-100)  # then the V2G vehicle
    t.step(grid=-300, bess=200, C=50, V=-150, C_bound=BoundBy.GRID, V_bound=BoundBy.VEHICLE)  # then curtail
    # asked for 600 kW export: ramping, 400 is wanted this cycle and 350 is all there is
    t.step(with_grid(target_kw=-600), grid=-350, shortfall=50, C=0, V=-150, bess=200)
    assert t.out.flags & Flag.TRACKING_SHORTFALL
    # the target ends: back up at the ramp rate, holding the window's top with the battery and V2G
    t.step(with_grid(target_kw=math.nan), grid=-250, bess=200, V=-150, C=100, C_bound=BoundBy.VEHICLE)
    # once the battery alone can hold the window, V2G stops and the charging car waits instead
    t.step(grid=-150, V=0, C=50, C_bound=BoundBy.RAMP, bess=200)
    t.step(grid=-50, C=100, bess=150).step(grid=50, bess=50)
    t.step(grid=150, bess=-50).step(grid=250, bess=-150)  # then the battery recharges, still ramping


@pytest.mark.parametrize("engine", ENGINES)
def test_tracking_an_import_target_charges_the_battery(engine: str) -> None:
    bess = BessInput(soc=0.5, capacity_kwh=1000, max_charge_kw=200, max_discharge_kw=200, available=True)
    t = CycleTable(AllocationInput(dt_s=1.0, grid=GridInput(500, target_kw=300), guns=(gun("A", 50),),
                                   bess=bess), engine)
    t.step(grid=250, bess=-200, A=50, flags=Flag.TRACKING | Flag.TRACKING_SHORTFALL, shortfall=50)
    t.step(with_gun("A", demand_kw=100.0), grid=300, bess=-200, A=100, shortfall=0)
