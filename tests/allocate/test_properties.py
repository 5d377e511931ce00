"""Property tests over random stations (hypothesis): the "never" rules, max-min fairness, priority order,
optimality against an LP (scipy HiGHS) built from the physical constraints, and kernel == reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from station.allocate import Allocation, AllocationInput, Flag, allocate
from station.allocate.reference import ac_kw, decide_power, gun_bounds
from tests.allocate.strategies import cycle_inputs

TOL = 1e-6


def tol(x: float) -> float:
    return 1e-6 * max(1.0, abs(x))


def bess_limits(inp: AllocationInput) -> dict[str, float]:
    """Physical BESS limits for one cycle, from the definitions (power and SoC bounds over dt)."""
    b, h = inp.bess, inp.dt_s / 3600.0
    if not (b.available and b.capacity_kwh > 0):
        return dict(charge=0.0, dispatch=0.0, support=0.0)
    charge = max(0.0, min(b.max_charge_kw, (b.soc_max - b.soc) * b.capacity_kwh / (b.charge_efficiency * h)))
    dispatch = max(0.0, min(b.max_discharge_kw, (b.soc - b.soc_min) * b.capacity_kwh * b.discharge_efficiency / h))
    support_max = b.max_discharge_kw if math.isnan(b.support_max_kw) else b.support_max_kw
    support = max(0.0, min(support_max, dispatch, (b.soc - b.reserve_soc) * b.capacity_kwh * b.discharge_efficiency / h))
    return dict(charge=charge, dispatch=dispatch, support=support)


def soc_after(inp: AllocationInput, bess_kw: float) -> float:
    b, h = inp.bess, inp.dt_s / 3600.0
    if b.capacity_kwh <= 0:
        return b.soc
    if bess_kw >= 0:
        return b.soc - bess_kw * h / b.discharge_efficiency / b.capacity_kwh
    return b.soc - bess_kw * h * b.charge_efficiency / b.capacity_kwh


def upper_bounds(inp: AllocationInput, out: Allocation) -> list[float]:
    """Each gun's final charging bound: its own limits (closed loop included) and its switched-in modules."""
    upper, _, _, _ = gun_bounds(inp)
    return [min(u, r.module_cap_kw) for u, r in zip(upper, out.guns)]


def ramp_window_top(inp: AllocationInput) -> float:
    """The most grid power this cycle: the cap, or less where the ramp from last cycle's power binds
    (never below the export cap: where the windows do not meet, the cap wins)."""
    gr = inp.grid
    if math.isnan(gr.ramp_kw_per_s) or gr.ramp_kw_per_s <= 0 or math.isnan(gr.last_kw):
        return gr.import_limit_kw
    return min(gr.import_limit_kw, max(gr.last_kw + gr.ramp_kw_per_s * inp.dt_s, -gr.export_limit_kw))


def check_never(inp: AllocationInput, out: Allocation) -> None:
    gr, b = inp.grid, inp.bess
    lim = bess_limits(inp)
    # grid cap: only an uncontrollable auxiliary load can break it, and then the decision says so
    if out.grid_kw > gr.import_limit_kw + tol(gr.import_limit_kw):
        assert out.flags & Flag.GRID_OVER_CAP
        assert inp.aux_load_kw > gr.import_limit_kw + lim["dispatch"] - tol(inp.aux_load_kw)
        assert out.bess_kw == pytest.approx(lim["dispatch"], abs=1e-6)
        for g, r in zip(inp.guns, out.guns):
            assert r.power_kw <= TOL  # everything shed
    assert out.grid_kw >= -gr.export_limit_kw - tol(gr.export_limit_kw)
    # guns: never above what the vehicle asked for or any limit; never discharging without an offer
    for g, r in zip(inp.guns, out.guns):
        assert r.power_kw <= min(g.demand_kw, g.vehicle_max_kw, g.gun_max_kw) + TOL
        assert r.power_kw <= r.module_cap_kw + TOL
        assert r.power_kw >= -min(g.v2g_kw, g.gun_max_kw, r.module_cap_kw) - TOL
        if g.v2g_kw <= 0:
            assert r.power_kw >= -TOL
    # BESS within power and SoC limits
    if not b.available:
        assert out.bess_kw == 0.0
    assert -b.max_charge_kw - TOL <= out.bess_kw <= b.max_discharge_kw + TOL
    after = soc_after(inp, out.bess_kw)
    assert b.soc_min - 1e-9 <= after or out.bess_kw <= TOL
    assert after <= b.soc_max + 1e-9 or out.bess_kw >= -TOL
    # the reserve is for the grid: without a target it is touched only when curtailing every vehicle
    # cannot keep grid power within the window (aux above the cap, or ramping back after an export)
    if math.isnan(gr.target_kw) and out.bess_kw > TOL and after < b.reserve_soc - 1e-9:
        assert ramp_window_top(inp) - inp.aux_load_kw + lim["support"] < 0
    # power balance, losses included
    balance = sum(ac_kw(r.power_kw, g.efficiency) for g, r in zip(inp.guns, out.guns)) + inp.aux_load_kw - out.bess_kw
    assert out.grid_kw == pytest.approx(balance, abs=1e-6 * max(1.0, abs(balance)))
    # unserved is what vehicles asked for and did not get
    unserved = sum(max(0.0, g.demand_kw - max(r.power_kw, 0.0)) for g, r in zip(inp.guns, out.guns))
    assert out.unserved_kw == pytest.approx(unserved, abs=1e-6)


def check_modules(inp: AllocationInput, out: Allocation) -> None:
    idle_a = inp.params.module_idle_current_a
    for m, r in zip(inp.modules, out.modules):
        assert r.gun == -1 or r.gun in m.allowed  # only where the matrix allows
        if r.gun != m.gun:
            assert abs(m.current_a) < idle_a  # contactors switch only at ~zero current
            if m.gun >= 0:  # it leaves a gun only after being drained (commanded to 0 A) or faulting
                assert m.draining or not m.available
            if r.gun >= 0:
                assert m.available
        if r.draining:
            assert r.gun >= 0


@given(cycle_inputs())
def test_never_rules_hold_on_random_stations(inp: AllocationInput) -> None:
    out = allocate(inp)
    check_never(inp, out)
    check_modules(inp, out)


@given(cycle_inputs())
def test_kernel_matches_the_reference(inp: AllocationInput) -> None:
    assert_kernel_matches_reference(inp)


@pytest.mark.parametrize("classes", [1, 12])
@settings(max_examples=60)
@given(data=st.data())
def test_kernel_matches_the_reference_on_wide_stations(classes: int, data: st.DataObject) -> None:
    """17-48 guns: one class of more than 16 guns sorts through stable_argsort's merges; 12 classes are
    more than the kernel picks out one by one (kernel.PICKED_CLASSES), so they are sorted."""
    assert_kernel_matches_reference(data.draw(cycle_inputs(n_guns=(17, 48), classes=classes)))


def assert_kernel_matches_reference(inp: AllocationInput) -> None:
    ref, fast = allocate(inp, "reference"), allocate(inp)
    assert fast.flags == ref.flags
    for name in ("bess_kw", "grid_kw", "unserved_kw", "shortfall_kw"):
        assert getattr(fast, name) == pytest.approx(getattr(ref, name), rel=1e-9, abs=1e-9)
    for a, b in zip(ref.guns, fast.guns):
        assert b.power_kw == pytest.approx(a.power_kw, rel=1e-9, abs=1e-9)
        assert b.bound_by == a.bound_by
        assert b.module_cap_kw == pytest.approx(a.module_cap_kw) and b.under_s == pytest.approx(a.under_s)
        assert b.draw_cap_kw == pytest.approx(a.draw_cap_kw)
    assert [(m.gun, m.draining) for m in ref.modules] == [(m.gun, m.draining) for m in fast.modules]


@given(cycle_inputs(tracking=False))
def test_max_min_fair_within_a_class_and_classes_in_order(inp: AllocationInput) -> None:
    out = allocate(inp)
    # where curtailing every vehicle cannot keep the grid window, V2G vehicles yield first (hold mode)
    assume(ramp_window_top(inp) - inp.aux_load_kw + bess_limits(inp)["support"] >= 0)
    up = upper_bounds(inp, out)
    p = [r.power_kw for r in out.guns]
    classes = sorted({g.priority for g in inp.guns})
    starved_class = None
    for c in classes:
        members = [i for i, g in enumerate(inp.guns) if g.priority == c]
        unsatisfied = [i for i in members if p[i] < up[i] - 1e-6]
        if starved_class is not None:
            assert all(p[i] <= TOL for i in members), "a lower class got power before a higher one was served"
            continue
        if unsatisfied:
            level = p[unsatisfied[0]]
            for i in unsatisfied:
                assert p[i] == pytest.approx(level, rel=1e-6, abs=1e-6)  # one water level
            for i in members:
                assert p[i] <= level + 1e-6  # nobody above the level
            starved_class = c


def bess_bounds(inp: AllocationInput, top: float) -> tuple[float, float]:
    """The BESS power window when serving vehicles (no target): it may charge up to its physical limit and
    support up to its reserve, except that the planner's `charge_min_kw` (as far as the grid window has
    room for it after aux) is charged before any vehicle, so then it cannot support at all."""
    lim = bess_limits(inp)
    forced = min(max(inp.bess.charge_min_kw, 0.0), lim["charge"], max(0.0, top - inp.aux_load_kw))
    return -lim["charge"], (-forced if forced > 0 else lim["support"])


def lp_max_served(inp: AllocationInput, out: Allocation) -> tuple[float, list[float]] | None:
    """Lexicographic LP without a target: for each class in order, the most it can get given the classes
    before it. Constraints are the physical ones: gun bounds, grid window, BESS power/SoC/reserve."""
    n = len(inp.guns)
    up = upper_bounds(inp, out)
    eff = [g.efficiency for g in inp.guns]
    top = ramp_window_top(inp)
    b_lo, b_hi = bess_bounds(inp, top)
    if top - inp.aux_load_kw + b_hi < 0:
        return None  # hold mode: grid first, not a served-power optimisation
    # x = [p_0 .. p_{n-1}, b];  sum(p/eff) - b <= top - aux
    a_ub = [[1.0 / e for e in eff] + [-1.0]]
    b_ub = [top - inp.aux_load_kw]
    bounds = [(0.0, u) for u in up] + [(b_lo, b_hi)]
    fixed: list[tuple[list[float], float]] = []
    per_class = []
    for c in sorted({g.priority for g in inp.guns}):
        mask = [1.0 if g.priority == c else 0.0 for g in inp.guns]
        res = linprog(
            c=[-v for v in mask] + [0.0],
            A_ub=np.array(a_ub + [[-v for v in row] + [0.0] for row, _ in fixed]),
            b_ub=np.array(b_ub + [-val + 1e-7 for _, val in fixed]),
            bounds=bounds,
            method="highs",
        )
        assert res.status == 0, res.message
        best = -res.fun
        per_class.append(best)
        fixed.append((mask, best))
    return sum(per_class), per_class


@given(cycle_inputs(tracking=False, uniform_eff=True))
def test_served_power_equals_the_lp_optimum(inp: AllocationInput) -> None:
    out = allocate(inp)
    lp = lp_max_served(inp, out)
    assume(lp is not None)
    total, per_class = lp
    served = sum(max(r.power_kw, 0.0) for r in out.guns)
    assert served == pytest.approx(total, rel=1e-6, abs=1e-5)
    for c, best in zip(sorted({g.priority for g in inp.guns}), per_class):
        got = sum(r.power_kw for g, r in zip(inp.guns, out.guns) if g.priority == c)
        assert got == pytest.approx(best, rel=1e-6, abs=1e-5)


@given(cycle_inputs(tracking=True, unit_eff=True))
def test_tracking_shortfall_and_served_power_equal_the_lp_optimum(inp: AllocationInput) -> None:
    """With a target: the shortfall is the least possible, and vehicles that did not offer V2G get the most
    possible at that shortfall (unit efficiency keeps the balance linear)."""
    out = allocate(inp)
    gr = inp.grid
    n = len(inp.guns)
    upper, _, lower, _ = gun_bounds(inp)
    up = [min(u, r.module_cap_kw) for u, r in zip(upper, out.guns)]
    lo = [max(v, -r.module_cap_kw) for v, r in zip(lower, out.guns)]
    lim = bess_limits(inp)
    want = gr.target_kw
    if not (math.isnan(gr.ramp_kw_per_s) or math.isnan(gr.last_kw)):
        want = min(max(want, gr.last_kw - gr.ramp_kw_per_s * inp.dt_s), gr.last_kw + gr.ramp_kw_per_s * inp.dt_s)
    want = min(max(want, -gr.export_limit_kw), gr.import_limit_kw)
    # x = [p..., b, s]: minimise s with |sum(p) + aux - b - want| <= s
    row = [1.0] * n + [-1.0]
    a_ub = [row + [-1.0], [-v for v in row] + [-1.0]]
    b_ub = [want - inp.aux_load_kw, inp.aux_load_kw - want]
    bounds = list(zip(lo, up)) + [(-lim["charge"], lim["dispatch"]), (0.0, None)]
    res = linprog(c=[0.0] * (n + 1) + [1.0], A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    assert out.shortfall_kw == pytest.approx(res.fun, abs=1e-5)
    # at that shortfall, vehicles without a V2G offer get the most they can
    firm = [1.0 if lower[i] >= -1e-9 else 0.0 for i in range(n)]  # offers below 1e-9 kW count as none
    res2 = linprog(
        c=[-v for v in firm] + [0.0, 0.0],
        A_ub=a_ub + [[0.0] * (n + 1) + [1.0]],
        b_ub=b_ub + [res.fun + 1e-7],
        bounds=bounds,
        method="highs",
    )
    assert res2.status == 0, res2.message
    got = sum(r.power_kw for i, r in enumerate(out.guns) if firm[i])
    assert got == pytest.approx(-res2.fun, rel=1e-6, abs=1e-5)


@given(cycle_inputs(with_modules=True))
def test_keeping_the_decision_the_modules_were_sized_to_changes_nothing(inp: AllocationInput) -> None:
    """The power step is not run a second time when the module capacities hold the decision they were
    sized to (reference.sized_decision_stands). Running it anyway, with the capacities the modules give,
    must find the same powers, BESS and grid: the claim that makes skipping it safe."""
    out = allocate(inp, "reference")
    upper, _, lower, _ = gun_bounds(inp)
    caps = [r.module_cap_kw for r in out.guns]
    again = decide_power(inp, [min(u, c) for u, c in zip(upper, caps)], [max(v, -c) for v, c in zip(lower, caps)])
    assert [r.power_kw for r in out.guns] == pytest.approx(again.p, rel=1e-9, abs=1e-6)
    assert out.bess_kw == pytest.approx(again.bess_kw, rel=1e-9, abs=1e-6)
    assert out.grid_kw == pytest.approx(again.grid_kw, rel=1e-9, abs=1e-6)
