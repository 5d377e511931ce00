"""Module assignment against exhaustive answers on small stations.

Two claims of docs/allocation.md are checked here against a search over every possible assignment, not
against our own algorithm:

- **fewest switches**: when the free modules can cover every gun's need, the assignment covers them all,
  drains nothing, and switches in exactly as many modules as the smallest cover (brute force over every
  module-to-gun choice). This holds exactly where each gun sees one module size; with mixed sizes the
  problem is bin covering (NP-hard) and the rule is a heuristic, measured in bench/bench_assignment.py.
- **served power is the step's optimum with discrete modules** wherever some assignment covers the fair
  split: a mixed-integer programme (scipy HiGHS) that may switch any free module to any gun its matrix
  allows serves, class by class, no more than we do. This is the LP test of test_properties.py without
  handing the LP our own module capacities. Where no cover exists the choice is bin covering again, and
  the gap to the MILP is measured in bench/bench_assignment.py.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from station.allocate import AllocationInput, BoundBy, allocate
from station.allocate.model import GridInput, GunInput, ModuleInput
from station.allocate.packing import components
from station.allocate.reference import assign_modules, decide_power, gun_bounds, module_kw_at
from tests.allocate.strategies import bess, guns
from tests.allocate.test_properties import bess_bounds, ramp_window_top

NAN = math.nan


@st.composite
def switch_matrix(draw: st.DrawFn, n_guns: int, one_size: bool, max_modules: int = 8) -> tuple[ModuleInput, ...]:
    """Free idle modules plus some that carry current on a gun (they cannot move this cycle)."""
    out: list[ModuleInput] = []
    size = draw(st.sampled_from([20.0, 30.0, 40.0, 60.0]))
    count = draw(st.integers(1, max_modules))
    for k in range(count):
        allowed = tuple(sorted(draw(st.lists(st.integers(0, n_guns - 1), min_size=1, unique=True))))
        rated = size if one_size else draw(st.sampled_from([20.0, 30.0, 40.0, 60.0]))
        busy = draw(st.integers(0, 4)) == 0
        gun = draw(st.sampled_from(allowed)) if busy else -1
        out.append(ModuleInput(id=f"M{k}", rated_kw=rated, allowed=allowed, gun=gun, current_a=30.0 if busy else 0.0))
    return tuple(out)


@st.composite
def cover_case(draw: st.DrawFn, one_size: bool) -> tuple[AllocationInput, list[float]]:
    n = draw(st.integers(1, 3))
    gs = tuple(GunInput(id=f"G{i}", priority=draw(st.integers(1, 2))) for i in range(n))
    mods = draw(switch_matrix(n, one_size, max_modules=7))
    # needs of a few modules' worth, just under a multiple: covers are tight, so a poor choice shows
    size = mods[0].rated_kw
    need = [max(0.0, draw(st.integers(0, 3)) * size - draw(st.sampled_from([0.0, 1.0, 0.5 * size])))
            for _ in range(n)]
    return AllocationInput(dt_s=0.1, grid=GridInput(1e9), guns=gs, modules=mods), need


def every_assignment(inp: AllocationInput) -> Iterator[tuple[tuple[int, ...], list[float]]]:
    """Every way to switch the free modules (each to a gun its row allows, or none) beside the busy ones:
    (the gun of each free module or -1, each gun's capacity)."""
    fixed = [0.0] * len(inp.guns)
    free = []
    for m in inp.modules:
        if m.gun >= 0:
            fixed[m.gun] += module_kw_at(m, inp.guns[m.gun].voltage_v)
        else:
            free.append(m)
    for choice in itertools.product(*[(-1, *m.allowed) for m in free]):
        have = list(fixed)
        for m, g in zip(free, choice):
            if g >= 0:
                have[g] += module_kw_at(m, inp.guns[g].voltage_v)
        yield choice, have


def fewest_switch_ins(inp: AllocationInput, need: list[float]) -> int | None:
    """Smallest number of free modules that, switched in beside the busy ones, cover every need."""
    best = None
    for choice, have in every_assignment(inp):
        if all(h >= d - 1e-9 for h, d in zip(have, need)):
            used = sum(1 for g in choice if g >= 0)
            best = used if best is None else min(best, used)
    return best


@settings(max_examples=2000, deadline=None)
@given(cover_case(one_size=True))
def test_fewest_switches_when_every_gun_sees_one_module_size(case: tuple[AllocationInput, list[float]]) -> None:
    inp, need = case
    best = fewest_switch_ins(inp, need)
    assume(best is not None)
    state, cap = assign_modules(inp, need)
    assert all(c >= d - 1e-9 for c, d in zip(cap, need)), "a cover exists but some gun was left short"
    assert not any(state.draining), "nothing needs draining when free modules cover every gun"
    assert sum(1 for m, g in zip(inp.modules, state.gun) if m.gun < 0 and g >= 0) == best
    assert all(g == m.gun for m, g in zip(inp.modules, state.gun) if m.gun >= 0), "busy modules stay"


def test_augmenting_path_frees_the_only_module_a_later_gun_can_use() -> None:
    """G0 is served first and takes the least versatile module, M0 (two guns) rather than M1 (three).
    G1 reaches only M0. One module each is possible; a plain greedy leaves G1 short. The assignment
    re-points M0 to G1 in the same cycle (it carries no current yet) and gives G0 M1 instead."""
    mods = (ModuleInput("M0", 40.0, (0, 1)), ModuleInput("M1", 40.0, (0, 2, 3)))
    gs = tuple(GunInput(f"G{i}", demand_kw=40.0 if i < 2 else 0.0) for i in range(4))
    inp = AllocationInput(dt_s=0.1, grid=GridInput(1e9), guns=gs, modules=mods)
    state, cap = assign_modules(inp, [40.0, 40.0, 0.0, 0.0])
    assert cap == [40.0, 40.0, 0.0, 0.0]
    assert state.gun == [1, 0]
    for kind in ("reference", "numba"):
        out = allocate(inp, kind)
        assert [r.gun for r in out.modules] == [1, 0], kind
        assert [round(r.power_kw, 9) for r in out.guns] == [40.0, 40.0, 0.0, 0.0], kind


def test_of_guns_with_equal_capacity_the_one_that_would_use_more_gets_the_scarce_module() -> None:
    """G0 carries one busy 40 kW module and wants 42 kW; G1 and G2 have an own 40 kW module each and
    want 48 and 60 kW. One shared module is left: all three sit at 40 kW, and whoever gets it, the other
    two stay there, so the fairest outcome (leximin) gives it to G2, which rises to 60 kW, not to G0,
    which would rise by 2 kW. Ordering ties by gun index gave it to G0."""
    mods = (ModuleInput("M0", 40.0, (1,)), ModuleInput("M1", 40.0, (2,)), ModuleInput("M2", 40.0, (0, 1, 2)),
            ModuleInput("M3", 40.0, (0, 1, 2), gun=0, current_a=30.0))
    gs = (GunInput("G0", demand_kw=42.0), GunInput("G1", demand_kw=48.0), GunInput("G2", demand_kw=60.0))
    inp = AllocationInput(dt_s=0.1, grid=GridInput(1e9), guns=gs, modules=mods)
    for kind in ("reference", "numba"):
        out = allocate(inp, kind)
        assert [r.gun for r in out.modules] == [1, 2, 2, 0], kind
        assert [round(r.power_kw, 9) for r in out.guns] == [40.0, 40.0, 60.0], kind


def test_power_a_module_bound_gun_cannot_carry_goes_to_a_gun_that_can_take_a_free_module() -> None:
    """Grid 100 kW. G0 (class 1) wants 40 kW and reaches only M0, which G2 (class 2) shares; G1
    (class 2) has two own modules. The first decision gives G0 40 and splits the other 60 as 30 / 30.
    G0 takes M0, so G2 can get no module at all, and G1's 30 kW is covered by one module: sized to that
    split, 20 kW of the grid would stay unused while G1's second module sits idle. The assignment
    decides again with G2 bounded by what it can still reach (nothing) and switches M2 in to G1."""
    mods = (ModuleInput("M0", 40.0, (0, 2)), ModuleInput("M1", 40.0, (1,)), ModuleInput("M2", 40.0, (1,)))
    gs = (GunInput("G0", demand_kw=40.0, priority=1), GunInput("G1", demand_kw=100.0, priority=2),
          GunInput("G2", demand_kw=100.0, priority=2))
    inp = AllocationInput(dt_s=0.1, grid=GridInput(100.0), guns=gs, modules=mods)
    for kind in ("reference", "numba"):
        out = allocate(inp, kind)
        assert [r.gun for r in out.modules] == [0, 1, 1], kind
        assert [round(r.power_kw, 9) for r in out.guns] == [40.0, 60.0, 0.0], kind
        assert [r.bound_by for r in out.guns] == [BoundBy.VEHICLE, BoundBy.GRID, BoundBy.MODULES], kind
        assert round(out.grid_kw, 9) == 100.0, kind


@st.composite
def cabinets(draw: st.DrawFn) -> AllocationInput:
    """Two to four cabinets that share no module, each a few guns and a few free or busy modules with
    partial rows; priorities mixed across cabinets and modules scarce, so augmenting paths and classes
    interleave across cabinets in the station-wide order."""
    n_cab = draw(st.integers(2, 4))
    sizes = [draw(st.integers(1, 3)) for _ in range(n_cab)]
    order = draw(st.permutations(range(sum(sizes))))  # cabinets' guns interleave in index order
    cab_guns, k = [], 0
    for size in sizes:
        cab_guns.append(sorted(order[k:k + size]))
        k += size
    mods: list[ModuleInput] = []
    for c, own in enumerate(cab_guns):
        for j in range(draw(st.integers(1, 4))):
            allowed = tuple(sorted(draw(st.lists(st.sampled_from(own), min_size=1, unique=True))))
            busy = draw(st.integers(0, 4)) == 0
            mods.append(ModuleInput(f"C{c}.M{j}", draw(st.sampled_from([30.0, 40.0])), allowed,
                                    gun=draw(st.sampled_from(allowed)) if busy else -1,
                                    current_a=30.0 if busy else 0.0))
    gs = tuple(GunInput(f"G{i}", demand_kw=draw(st.floats(0.0, 150.0)), priority=draw(st.integers(1, 3)))
               for i in range(sum(sizes)))
    return AllocationInput(dt_s=0.1, grid=GridInput(draw(st.floats(50.0, 1000.0))), guns=gs, modules=tuple(mods))


@settings(max_examples=150, deadline=None)
@given(cabinets())
def test_cabinets_that_share_no_module_are_assigned_as_in_one_station_wide_order(inp: AllocationInput) -> None:
    """The kernel covers each component of the switch matrix with its own heaps (packing.components);
    the reference serves the whole station in one order. Both must switch the same modules: nothing one
    component does changes another's keys."""
    gun_comp, comp_start = components([m.allowed for m in inp.modules], len(inp.guns))
    for m in inp.modules:  # guns that share a module are in one component ...
        assert len({int(gun_comp[g]) for g in m.allowed}) == 1
    cabinet_of = {g: m.id.split(".")[0] for m in inp.modules for g in m.allowed}
    for g in range(len(inp.guns)):  # ... and a component never spans two cabinets
        assert all(cabinet_of.get(h) == cabinet_of.get(g) for h in range(len(inp.guns))
                   if gun_comp[h] == gun_comp[g] and g in cabinet_of)
    assert comp_start[-1] == len(inp.guns) and len(comp_start) == int(gun_comp.max()) + 2
    ref, fast = allocate(inp, "reference"), allocate(inp)
    assert [(m.gun, m.draining) for m in fast.modules] == [(m.gun, m.draining) for m in ref.modules]
    for a, b in zip(ref.guns, fast.guns):
        assert b.power_kw == pytest.approx(a.power_kw, rel=1e-9, abs=1e-9)
        assert b.bound_by == a.bound_by


def test_components_of_the_switch_matrix_are_numbered_by_their_lowest_gun() -> None:
    """Guns 0, 1 and 3 share modules (0-1 directly, 1-3 through another module); gun 2 has a module of
    its own, guns 4 and 5 none: four components, numbered in order of their lowest gun."""
    gun_comp, comp_start = components([(0, 1), (2,), (1, 3), ()], 6)
    assert gun_comp.tolist() == [0, 0, 1, 0, 2, 3]
    assert comp_start.tolist() == [0, 3, 4, 5, 6]


# --------------------------------------------------------------------------------- served power (MILP)


@st.composite
def step_case(draw: st.DrawFn) -> AllocationInput:
    n = draw(st.integers(1, 3))
    gs = draw(guns(n, 1.0, with_v2g=False, closed_loop=False))
    return AllocationInput(
        dt_s=draw(st.sampled_from([0.02, 1.0])),
        grid=GridInput(import_limit_kw=draw(st.floats(0.0, 600.0))),
        guns=gs,
        bess=draw(bess(1.0)),
        aux_load_kw=draw(st.floats(0.0, 50.0)),
        modules=draw(switch_matrix(n, one_size=draw(st.booleans()), max_modules=6)),
    )


def milp_max_served(inp: AllocationInput) -> list[float]:
    """Per class, in order, the most it can be served this step when any free idle module may be switched
    to any gun its row allows: x = [p_0..p_{n-1}, b, s_{m,g}...] with s binary."""
    n = len(inp.guns)
    upper, _, _, _ = gun_bounds(inp)
    top = ramp_window_top(inp)
    b_lo, b_hi = bess_bounds(inp, top)
    fixed = [0.0] * n
    pairs = []
    for i, m in enumerate(inp.modules):
        if m.gun >= 0:
            fixed[m.gun] += module_kw_at(m, inp.guns[m.gun].voltage_v)
        else:
            pairs += [(i, g) for g in m.allowed if module_kw_at(m, inp.guns[g].voltage_v) > 0]
    nv = n + 1 + len(pairs)
    rows, lo, hi = [], [], []
    grid = np.zeros(nv)
    grid[:n], grid[n] = 1.0, -1.0
    rows.append(grid), lo.append(-np.inf), hi.append(top - inp.aux_load_kw)
    for g in range(n):  # p_g <= fixed + sum kw * s
        r = np.zeros(nv)
        r[g] = 1.0
        for k, (i, h) in enumerate(pairs):
            if h == g:
                r[n + 1 + k] = -module_kw_at(inp.modules[i], inp.guns[g].voltage_v)
        rows.append(r), lo.append(-np.inf), hi.append(fixed[g])
    for i in {i for i, _ in pairs}:  # a module on at most one gun
        r = np.zeros(nv)
        for k, (j, _) in enumerate(pairs):
            if j == i:
                r[n + 1 + k] = 1.0
        rows.append(r), lo.append(-np.inf), hi.append(1.0)
    bounds = Bounds([0.0] * n + [b_lo] + [0.0] * len(pairs), list(upper) + [b_hi] + [1.0] * len(pairs))
    integrality = np.array([0] * (n + 1) + [1] * len(pairs))
    per_class = []
    for c in sorted({g.priority for g in inp.guns}):
        mask = np.array([1.0 if g.priority == c else 0.0 for g in inp.guns] + [0.0] * (1 + len(pairs)))
        res = milp(-mask, constraints=LinearConstraint(np.array(rows), lo, hi), bounds=bounds,
                   integrality=integrality)
        assert res.status == 0, res.message
        per_class.append(-res.fun)
        rows.append(mask), lo.append(-res.fun - 1e-7), hi.append(np.inf)
    return per_class


def fair_split_with_reach(inp: AllocationInput) -> list[float]:
    """The step's split when every gun could have all the modules its matrix row reaches (the relaxation
    the assignment then tries to cover)."""
    upper, _, lower, _ = gun_bounds(inp)
    reach = [0.0] * len(inp.guns)
    for m in inp.modules:
        if m.available:
            for g in m.allowed:
                reach[g] += module_kw_at(m, inp.guns[g].voltage_v)
    dec = decide_power(inp, [min(u, r) for u, r in zip(upper, reach)], [max(v, -r) for v, r in zip(lower, reach)])
    return dec.p


@settings(max_examples=300, deadline=None)
@given(step_case())
def test_served_power_per_class_equals_the_milp_whenever_a_cover_of_the_fair_split_exists(
    inp: AllocationInput,
) -> None:
    """Where some assignment (found by brute force, not by us) covers the fair split, we serve what the
    MILP says is the most, class by class. Where none does, modules are the scarce resource and choosing
    which guns get them is bin covering; bench/bench_assignment.py measures that gap instead."""
    top = ramp_window_top(inp)
    assume(inp.aux_load_kw <= top + bess_bounds(inp, top)[1])  # not hold mode
    assume(fewest_switch_ins(inp, [abs(p) for p in fair_split_with_reach(inp)]) is not None)
    out = allocate(inp)
    assume(not any(r.draining for r in out.modules))  # a drain gives up capacity now for fairness later
    best = milp_max_served(inp)
    for c, want in zip(sorted({g.priority for g in inp.guns}), best):
        got = sum(r.power_kw for g, r in zip(inp.guns, out.guns) if g.priority == c)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-5), f"class {c}"
