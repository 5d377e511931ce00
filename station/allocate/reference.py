"""The allocation decision in plain Python: the readable specification.

The Numba kernel (``kernel.py``) implements the same decision for speed; the tests require both to agree
on random stations, and the benchmark uses this one as its baseline.  Read this file to learn what the
controller does; read the kernel to learn how it does it fast.

One cycle, in order:

1. **Gun bounds.** Each gun may charge up to the least of its vehicle's demand, its vehicle's limits and
   its own rating, and discharge down to its vehicle's V2G offer.  Closed loop: a gun that has drawn
   less than it was given for ``closed_loop_settle_s`` is capped at its measured power plus a margin,
   so what it does not take goes to the others next cycle; while it draws all it is given, the cap
   rises by the margin each cycle, and disappears once it no longer binds (``closed_loop``).
2. **Module assignment** (when modules are given). A *desired* allocation is computed with every
   reachable module counted; guns whose switched-in modules cannot carry their desired power get free
   modules first, one at a time (highest class first, then the gun with the least capacity, then the one
   that would use more; a gun with no free module in reach re-points one switched in this cycle through
   an augmenting path), then modules drained from surplus guns, lower classes, or same-class guns with
   clearly more.  If guns are still short, the power step is re-run with each gun bounded by what it
   can still reach, and the guns whose share grew are covered from free modules (up to
   ``MODULE_ROUNDS`` times): the power a short gun cannot carry goes to guns that can still take a
   module instead of being lost.  A module changes guns only
   through *draining*: commanded to zero current, released once its current is ~0, then switched.
   Surplus modules are released only after ``module_release_hold_s`` and a margin (hysteresis).
3. **Power decision** with the capacities actually switched in:
   * *Without a dispatch target*: the vehicle budget is the import cap (or the ramp limit) minus the
     auxiliary load plus what the BESS may give above its reserve; classes are served in order, each
     water-filled (max-min fair).  The BESS discharges only as much as the vehicles need above the cap
     and recharges from headroom towards its target SoC.  If curtailing every vehicle still cannot keep
     grid power within the window (the auxiliary load alone above the cap, or the ramp back up after an
     export), the window's top is held like a target, as below.
   * *With a target*: grid power moves towards the target (at the ramp rate) and is held there: the BESS
     (down to ``soc_min``, the reserve exists for this) absorbs or supplies first; then vehicles that
     offered V2G yield (charging less, then discharging, lowest class first); then the others are
     curtailed, lowest class first.  What cannot be closed is the shortfall.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

from station.allocate.model import (
    INF,
    MODULE_ROUNDS,
    Allocation,
    AllocationInput,
    BoundBy,
    Flag,
    GunInput,
    GunResult,
    ModuleInput,
    ModuleResult,
)

EPS = 1e-9


# ----------------------------------------------------------------------------------------- helpers


def ac_kw(p: float, eff: float) -> float:
    """AC-side power of a gun at DC power ``p`` (losses from the module efficiency)."""
    return p / eff if p >= 0 else p * eff


def module_kw_at(m: ModuleInput, voltage_v: float) -> float:
    """What a module can deliver into a gun at ``voltage_v`` (current-limited at low voltage)."""
    if math.isnan(voltage_v):
        return m.rated_kw
    if voltage_v < m.min_voltage_v or voltage_v > m.max_voltage_v:
        return 0.0
    return min(m.rated_kw, m.max_current_a * voltage_v / 1000.0)


def fill_up(members: list[int], upper: list[float], eff: list[float], budget: float, p: list[float]) -> float:
    """Water-fill ``budget`` (AC kW) over ``members`` charging in [0, upper]: max-min fair in DC power.
    Writes into ``p`` and returns what was not used."""
    need = sum(upper[g] / eff[g] for g in members)
    if need <= budget + EPS:
        for g in members:
            p[g] = upper[g]
        return budget - need
    remaining = max(budget, 0.0)
    weight = sum(1.0 / eff[g] for g in members)
    level = 0.0
    order = sorted(members, key=lambda g: (upper[g], g))
    k = 0
    while k < len(order):
        level = remaining / weight if weight > 0 else 0.0
        g = order[k]
        if upper[g] > level:
            break
        p[g] = upper[g]
        remaining -= upper[g] / eff[g]
        weight -= 1.0 / eff[g]
        k += 1
    for g in order[k:]:
        p[g] = level
    return 0.0


def fill_down(members: list[int], depth: list[float], eff: list[float], produce: float, p: list[float]) -> float:
    """Share a discharge that must put ``produce`` AC kW on the bus over ``members`` (each down to
    ``depth`` DC kW), max-min fair. Writes negative powers into ``p``; returns what could not be produced."""
    can = sum(depth[g] * eff[g] for g in members)
    if can <= produce + EPS:
        for g in members:
            p[g] = -depth[g]
        return produce - can
    remaining = max(produce, 0.0)
    weight = sum(eff[g] for g in members)
    level = 0.0
    order = sorted(members, key=lambda g: (depth[g], g))
    k = 0
    while k < len(order):
        level = remaining / weight if weight > 0 else 0.0
        g = order[k]
        if depth[g] > level:
            break
        p[g] = -depth[g]
        remaining -= depth[g] * eff[g]
        weight -= eff[g]
        k += 1
    for g in order[k:]:
        p[g] = -level
    return 0.0


def by_class(indices: list[int], guns: tuple[GunInput, ...], reverse: bool = False) -> list[list[int]]:
    classes = sorted({guns[g].priority for g in indices}, reverse=reverse)
    return [[g for g in indices if guns[g].priority == c] for c in classes]


# ----------------------------------------------------------------------------------------- power


class PowerDecision:
    """Result of the power step, with what is needed to say why each gun got what it got."""

    def __init__(self, n: int) -> None:
        self.p = [0.0] * n
        self.bess_kw = 0.0
        self.grid_kw = 0.0
        self.shortfall_kw = 0.0
        self.flags = Flag(0)
        self.marginal_class: int | None = None  # the class the budget ran out in
        self.budget_bound = BoundBy.GRID  # GRID or RAMP: what set the budget


def decide_power(inp: AllocationInput, upper: list[float], lower: list[float]) -> PowerDecision:
    """Powers for guns in [lower, upper] (lower <= 0 <= upper), the BESS and the grid."""
    guns, n = inp.guns, len(inp.guns)
    eff = [g.efficiency for g in guns]
    out = PowerDecision(n)
    b = inp.bess
    h = inp.dt_s / 3600.0
    aux = inp.aux_load_kw
    cap = inp.grid.import_limit_kw
    export = inp.grid.export_limit_kw

    # BESS power limits this cycle (energy limits expressed as power over dt)
    if b.available and b.capacity_kwh > 0:
        ch = max(0.0, min(b.max_charge_kw, (b.soc_max - b.soc) * b.capacity_kwh / (b.charge_efficiency * h)))
        dis_dispatch = max(
            0.0, min(b.max_discharge_kw, (b.soc - b.soc_min) * b.capacity_kwh * b.discharge_efficiency / h)
        )
        support_max = b.max_discharge_kw if math.isnan(b.support_max_kw) else b.support_max_kw
        dis_support = max(
            0.0, min(support_max, dis_dispatch, (b.soc - b.reserve_soc) * b.capacity_kwh * b.discharge_efficiency / h)
        )
        soc_target = b.soc_max if math.isnan(b.soc_target) else min(b.soc_target, b.soc_max)
        ch_target = max(0.0, min(ch, (soc_target - b.soc) * b.capacity_kwh / (b.charge_efficiency * h)))
        forced = min(max(b.charge_min_kw, 0.0), ch)
    else:
        ch = dis_dispatch = dis_support = ch_target = forced = 0.0

    # the grid window: caps are hard, the ramp bounds what the controller itself changes
    ramp = inp.grid.ramp_kw_per_s
    last = inp.grid.last_kw
    ramped = not (math.isnan(ramp) or ramp <= 0 or math.isnan(last))
    # the ramp window, intersected with the cap window; where they do not meet, the cap wins
    hi = min(cap, max(last + ramp * inp.dt_s, -export)) if ramped else cap
    lo_soft = max(-export, min(last - ramp * inp.dt_s, cap)) if ramped else -INF
    if ramped and hi < cap - EPS:
        out.budget_bound = BoundBy.RAMP

    everyone = list(range(n))
    flexible = [g for g in everyone if lower[g] < -EPS]
    firm = [g for g in everyone if lower[g] >= -EPS]

    target = inp.grid.target_kw
    hold = math.nan  # a grid power to hold without a target (the top of the window)
    if math.isnan(target):
        # ------------------------------------------------ no target: serve vehicles within the window
        if forced > 0 and hi - aux - forced < 0:
            forced = max(0.0, hi - aux)  # the planner's charge gets only what fits in the window
        support = dis_support if forced <= 0 else 0.0
        budget = hi - aux - forced + support
        if budget < -EPS:
            # curtailing every vehicle cannot keep the window (after an export, or aux above the cap):
            # hold its top like a target, with the whole BESS and the V2G vehicles
            hold = hi
        else:
            for members in by_class(everyone, guns):
                left = fill_up(members, upper, eff, budget, out.p)
                if left <= EPS and sum(upper[g] - out.p[g] for g in members) > EPS:
                    out.marginal_class = guns[members[0]].priority
                    budget = 0.0
                    break
                budget = left
            vehicles = sum(ac_kw(out.p[g], eff[g]) for g in everyone)
            need = vehicles + aux - hi  # BESS discharge needed to stay within the window
            if need > EPS:
                out.bess_kw = min(need, support)
                out.flags |= Flag.BESS_SUPPORT
            else:
                headroom = -need
                charge = max(forced, min(ch_target, headroom))
                if ramped:  # smooth a sudden drop with the battery rather than hand it to the grid
                    charge = max(charge, min(lo_soft - (vehicles + aux), ch, headroom))
                out.bess_kw = -min(charge, ch)
    if not (math.isnan(target) and math.isnan(hold)):
        # ------------------------------------------------ hold a grid power: a dispatch target or the window
        if math.isnan(hold):
            out.flags |= Flag.TRACKING
            want = min(max(target, last - ramp * inp.dt_s), last + ramp * inp.dt_s) if ramped else target
            want = min(max(want, -export), cap)
        else:
            want = hold
        full = sum(ac_kw(upper[g], eff[g]) for g in everyone)
        firm_full = sum(ac_kw(upper[g], eff[g]) for g in firm)
        flex_min = sum(ac_kw(lower[g], eff[g]) for g in flexible)
        g_max = full + aux + ch
        g_min = flex_min + aux - dis_dispatch  # firm guns can be curtailed to zero
        goal = min(max(want, g_min), g_max)
        if math.isnan(hold):
            out.shortfall_kw = abs(want - goal)
            if out.shortfall_kw > 1e-6:
                out.flags |= Flag.TRACKING_SHORTFALL
        x = goal - aux  # vehicles minus BESS must equal this
        if x + dis_dispatch >= full - EPS:
            # every vehicle gets what it wants; the BESS absorbs (charges) or supplies the difference
            for g in everyone:
                out.p[g] = upper[g]
            out.bess_kw = full - x
        else:
            out.bess_kw = dis_dispatch
            vb = x + dis_dispatch
            if vb - firm_full >= flex_min - EPS:
                for g in firm:
                    out.p[g] = upper[g]
                fb = vb - firm_full
                if fb >= 0:
                    for members in by_class(flexible, guns):
                        left = fill_up(members, upper, eff, fb, out.p)
                        if left <= EPS and sum(upper[g] - out.p[g] for g in members) > EPS:
                            out.marginal_class = guns[members[0]].priority
                            fb = 0.0
                            break
                        fb = left
                else:
                    fill_down_by_class(flexible, guns, lower, eff, -fb, out.p)
            else:
                for g in flexible:
                    out.p[g] = lower[g]
                nb = vb - flex_min
                for members in by_class(firm, guns):
                    left = fill_up(members, upper, eff, nb, out.p)
                    if left <= EPS and sum(upper[g] - out.p[g] for g in members) > EPS:
                        out.marginal_class = guns[members[0]].priority
                        nb = 0.0
                        break
                    nb = left
        if math.isnan(hold) or hold >= cap - EPS:
            out.budget_bound = BoundBy.GRID
    out.bess_kw = min(max(out.bess_kw, -ch), dis_dispatch)  # float noise only: the cases above respect it
    out.grid_kw = sum(ac_kw(out.p[g], eff[g]) for g in everyone) + aux - out.bess_kw
    if out.grid_kw > cap + 1e-6:
        out.flags |= Flag.GRID_OVER_CAP
    if any(v < -EPS for v in out.p):
        out.flags |= Flag.V2G_ACTIVE
    return out


def fill_down_by_class(
    flexible: list[int], guns: tuple[GunInput, ...], lower: list[float], eff: list[float], produce: float, p: list[float]
) -> None:
    """Discharge the lowest class first, fair within a class (as far as the offers go)."""
    depth = [-v for v in lower]
    for members in by_class(flexible, guns, reverse=True):
        produce = fill_down(members, depth, eff, produce, p)
        if produce <= EPS:
            return


# ----------------------------------------------------------------------------------------- modules


class ModuleState:
    def __init__(self, modules: tuple[ModuleInput, ...]) -> None:
        self.gun = [m.gun for m in modules]
        self.draining = [m.draining for m in modules]
        self.surplus_s = [m.surplus_s for m in modules]


def assign_modules(
    inp: AllocationInput,
    desired: list[float],
    want: list[float] | None = None,
    redecide: Callable[[list[float]], list[float]] | None = None,
) -> tuple[ModuleState, list[float]]:
    """Switch modules so each gun's capacity covers ``desired`` with few changes: a gun keeps what it
    has, free modules go before drained ones.  With free modules only, the number switched in is the
    minimum whenever every gun sees one module size (each module covers the same share of a gun's
    deficit, so one module per step plus augmenting paths is exact); with mixed sizes covering is bin
    covering (NP-hard) and the rule is a heuristic whose gap is measured (docs/allocation.md).

    ``want`` is each gun's bound before module assignment (default: its need); among short guns of one
    class with equal capacity, the one that would use more gets the next module.

    ``redecide(bound)`` (optional) re-runs the power step with each gun bounded by the capacity it can
    still reach and returns the new desired powers: when modules ran short, the power a short gun cannot
    carry goes to guns that can still take a free module, which are then covered (e, up to
    ``MODULE_ROUNDS`` times).

    Returns the new module state and each gun's usable capacity (switched in, available, not draining).
    """
    guns, mods, prm = inp.guns, inp.modules, inp.params
    n = len(guns)
    st = ModuleState(mods)
    volt = [g.voltage_v for g in guns]
    need = [abs(d) for d in desired]
    want = need if want is None else want

    def kw(m: int, g: int) -> float:
        return module_kw_at(mods[m], volt[g])

    idle = [abs(m.current_a) < prm.module_idle_current_a for m in mods]
    # a) finish drains; a faulted module leaves its gun like a drained one
    for m, mod in enumerate(mods):
        if st.gun[m] >= 0 and not mod.available:
            st.draining[m] = True
        if st.draining[m] and idle[m]:
            st.gun[m], st.draining[m], st.surplus_s[m] = -1, False, 0.0
        if st.gun[m] < 0:
            st.draining[m], st.surplus_s[m] = False, 0.0

    def capacity() -> list[float]:
        have = [0.0] * n
        for m in range(len(mods)):
            g = st.gun[m]
            if g >= 0 and not st.draining[m] and mods[m].available:
                have[g] += kw(m, g)
        return have

    have = capacity()
    short = [g for g in range(n) if have[g] < need[g] - EPS]
    # a drain nobody waits for is cancelled if its own gun needs the module back
    for m in range(len(mods)):
        g = st.gun[m]
        if st.draining[m] and mods[m].available and g >= 0 and have[g] < need[g] - EPS:
            if not any(h != g and h in mods[m].allowed for h in short):
                st.draining[m] = False
                have[g] += kw(m, g)

    # b) surplus: modules beyond need + margin (highest index first) count their hold time
    surplus = [False] * len(mods)
    for g in range(n):
        mine = sorted((m for m in range(len(mods)) if st.gun[m] == g and not st.draining[m]), reverse=True)
        left = have[g]
        for m in mine:
            if left - kw(m, g) >= need[g] + prm.module_release_margin_kw - EPS:
                surplus[m] = True
                left -= kw(m, g)
    for m in range(len(mods)):
        if surplus[m]:
            st.surplus_s[m] += inp.dt_s
            if st.surplus_s[m] >= prm.module_release_hold_s - EPS:
                st.draining[m] = True
                have[st.gun[m]] -= kw(m, st.gun[m])
                surplus[m] = False
        elif st.gun[m] >= 0:
            st.surplus_s[m] = 0.0

    def rank(g: int) -> tuple[int, float, float, int]:
        return (guns[g].priority, have[g], -want[g], g)

    # c) free modules to short guns, one at a time: to the highest class, then the least capacity, then the
    #    gun that would use more (``want``: its bound before module assignment; with equal capacities the
    #    module raises that gun furthest, which is what leximin fairness asks).  A
    #    gun with no free module in reach may still get one through an augmenting path: it takes a module
    #    switched in by this same call (still idle, so re-pointing it costs no switching) from another gun,
    #    which takes an at-least-as-large replacement, free or again re-pointed (pick_free, augment).
    n_allowed = [len(m.allowed) for m in mods]
    fresh = [False] * len(mods)  # switched in by this call
    stuck = [False] * n  # no free module and no augmenting path: stays so for the rest of the call

    def is_free(m: int) -> bool:
        return st.gun[m] < 0 and mods[m].available and idle[m]

    def pick_free(g: int, deficit: float) -> int:
        """The free module for g: the smallest that covers the deficit alone, else the largest; among
        equals the least versatile (keep versatile modules for later), then the lowest index."""
        cand = [m for m in range(len(mods)) if is_free(m) and g in mods[m].allowed and kw(m, g) > 0]
        covering = [m for m in cand if kw(m, g) >= deficit - EPS]
        if covering:
            return min(covering, key=lambda m: (kw(m, g), n_allowed[m], m))
        if cand:
            return min(cand, key=lambda m: (-kw(m, g), n_allowed[m], m))
        return -1

    def switch_in(m: int, g: int) -> None:
        st.gun[m], st.surplus_s[m], fresh[m] = g, 0.0, True
        have[g] += kw(m, g)

    def move(m: int, to: int) -> None:
        have[st.gun[m]] -= kw(m, st.gun[m])
        st.gun[m] = to
        have[to] += kw(m, to)

    def augment(g: int) -> bool:
        """Breadth-first over fresh modules, lowest index first at each step."""
        came_from = {m: -1 for m in range(len(mods))
                     if fresh[m] and st.gun[m] != g and g in mods[m].allowed and kw(m, g) > 0}
        queue = list(came_from)
        for m in queue:  # the queue grows while it is walked
            y = st.gun[m]
            rep = [r for r in range(len(mods)) if is_free(r) and y in mods[r].allowed and kw(r, y) >= kw(m, y)]
            if rep:
                chain = [m]
                while came_from[chain[-1]] >= 0:
                    chain.append(came_from[chain[-1]])
                targets = [st.gun[c] for c in chain[1:]] + [g]
                switch_in(min(rep, key=lambda r: (kw(r, y), n_allowed[r], r)), y)
                for c, to in zip(chain, targets):
                    move(c, to)
                return True
            for r in range(len(mods)):
                if (fresh[r] and r not in came_from and st.gun[r] not in (g, y) and y in mods[r].allowed
                        and kw(r, y) >= kw(m, y)):
                    came_from[r] = m
                    queue.append(r)
        return False

    def cover() -> int:
        """Cover the short guns from free modules; returns how many were switched in."""
        count = 0
        while True:
            short = sorted((g for g in range(n) if not stuck[g] and have[g] < need[g] - EPS), key=rank)
            if not short:
                return count
            g = short[0]
            m = pick_free(g, need[g] - have[g])
            if m >= 0:
                switch_in(m, g)
                count += 1
            elif augment(g):
                count += 1
            else:
                stuck[g] = True

    cover()

    # d) still short: drain a module from someone who can spare it
    incoming_of = [0.0] * n
    for g in sorted((g for g in range(n) if have[g] < need[g] - EPS), key=rank):
        pending = sum(
            kw(m, g) for m in range(len(mods)) if st.draining[m] and mods[m].available and g in mods[m].allowed
        )
        deficit = need[g] - have[g] - pending
        incoming = pending  # capacity already on its way to g counts when judging fairness
        while deficit > EPS:
            best: tuple[int, float, int] | None = None
            best_m = -1
            for m in range(len(mods)):
                h = st.gun[m]
                if h < 0 or h == g or st.draining[m] or not mods[m].available or g not in mods[m].allowed:
                    continue
                if kw(m, g) <= 0:
                    continue
                if surplus[m] or have[h] - kw(m, h) >= need[h] - EPS:
                    category = 0  # surplus where it is
                elif guns[h].priority > guns[g].priority:
                    category = 1  # a lower class
                elif guns[h].priority == guns[g].priority and have[h] - kw(m, h) >= have[g] + incoming + kw(m, g) - EPS:
                    category = 2  # same class, clearly more
                else:
                    continue
                key = (category, -have[h], -m)  # like surplus: the last module switched in goes first
                if best is None or key < best:
                    best, best_m = key, m
            if best is None:
                break
            h = st.gun[best_m]
            st.draining[best_m] = True
            st.surplus_s[best_m] = 0.0
            have[h] -= kw(best_m, h)
            deficit -= kw(best_m, g)
            incoming += kw(best_m, g)
        incoming_of[g] = incoming

    # e) modules ran short: decide again with each gun bounded by what it has, what is on its way and the
    #    free modules it can still reach, and cover the guns whose share grew (only from free modules)
    for _ in range(MODULE_ROUNDS):
        if redecide is None or not any(have[g] < need[g] - EPS for g in range(n)):
            break
        bound = [have[g] + incoming_of[g] + sum(kw(m, g) for m in range(len(mods))
                                                 if is_free(m) and g in mods[m].allowed and kw(m, g) > 0)
                 for g in range(n)]
        need[:] = [abs(d) for d in redecide(bound)]
        if cover() == 0:
            break
    return st, capacity()


# ----------------------------------------------------------------------------------------- top level


def closed_loop(inp: AllocationInput, g: GunInput) -> tuple[float, float]:
    """Next (under_s, draw_cap_kw) of a gun from what it drew against what it was given.

    Drawing less than given for ``settle_s`` caps it at what it draws plus a margin; drawing all it is
    given raises the cap by one margin per cycle (it probes upward) until the cap no longer binds.
    Without a measurement the state is kept as it is."""
    prm = inp.params
    s, cap = g.under_s, g.draw_cap_kw
    if math.isnan(g.measured_kw) or math.isnan(g.prev_alloc_kw) or g.prev_alloc_kw <= 0:
        return s, cap
    if g.measured_kw < g.prev_alloc_kw - prm.closed_loop_tolerance_kw:
        s += inp.dt_s
        if s >= prm.closed_loop_settle_s - EPS:
            cap = max(g.measured_kw, 0.0) + prm.closed_loop_margin_kw
    else:
        s = 0.0
        cap += prm.closed_loop_margin_kw
    if cap >= min(g.demand_kw, g.vehicle_max_kw, g.gun_max_kw):
        cap = INF
    return s, cap


def gun_bounds(inp: AllocationInput) -> tuple[list[float], list[BoundBy], list[float], list[tuple[float, float]]]:
    """Charging upper bound with its reason, V2G lower bound, and the next closed-loop state per gun."""
    upper, why, lower, state = [], [], [], []
    for g in inp.guns:
        veh = min(g.demand_kw, g.vehicle_max_kw)
        u, w = (veh, BoundBy.VEHICLE) if veh <= g.gun_max_kw else (g.gun_max_kw, BoundBy.GUN)
        u = max(u, 0.0)
        s, cap = closed_loop(inp, g)
        if cap < u:
            u, w = cap, BoundBy.VEHICLE
        upper.append(u)
        why.append(w)
        lower.append(-max(0.0, min(g.v2g_kw, g.gun_max_kw)))
        state.append((s, cap))
    return upper, why, lower, state


def charge_bound(p: float, upper: float, limit: float, why: BoundBy, priority: int, dec: PowerDecision) -> BoundBy:
    """What bound a gun charging at ``p`` kW in decision ``dec``: its own upper bound (``why``), the module
    ``limit``, a higher class (priority), or the budget the decision ran out of."""
    if p >= upper - 1e-6:
        return why
    if p >= limit - 1e-6:
        return BoundBy.MODULES
    if dec.marginal_class is not None and priority > dec.marginal_class:
        return BoundBy.PRIORITY
    return dec.budget_bound


def sized_decision_stands(
    p: list[float], up: list[float], lo: list[float], upper: list[float], lower: list[float], reach: list[float]
) -> bool:
    """Whether the decision the module capacities were sized to (``p``, made with each gun within
    [max(lower, -reach), min(upper, reach)]) is also the decision with the capacities the modules give
    (each gun within [lo, up]): it is when the new bounds lie inside the old ones and still hold it. The
    power step is an optimum over its bounds (served power first, max-min fair within a class, classes in
    order, the grid target): the best point of a set stays the best of a smaller set that contains it. So
    the second power step, which a full module reassignment would otherwise pay for, is not needed (the
    kernel makes the same test)."""
    for g, d in enumerate(p):
        if not (d <= up[g] <= min(upper[g], reach[g]) and max(lower[g], -reach[g]) <= lo[g] <= d):
            return False
    return True


def allocate(inp: AllocationInput) -> Allocation:
    """The whole decision for one cycle (pure: same input, same output)."""
    n = len(inp.guns)
    upper, why, lower, loop_state = gun_bounds(inp)
    module_cap = [INF] * n
    mod_results: tuple[ModuleResult, ...] = ()
    reach = [INF] * n
    desired: PowerDecision | None = None
    if inp.modules:
        reach = [0.0] * n
        for mod in inp.modules:
            if mod.available:
                for g in mod.allowed:
                    reach[g] += module_kw_at(mod, inp.guns[g].voltage_v)

        def redecide(bound: list[float]) -> list[float]:
            """The power step with each gun bounded by the capacity it can reach (first with every available
            module, then from assign_modules when modules ran short)."""
            nonlocal desired, reach
            desired = decide_power(inp, [min(u, b) for u, b in zip(upper, bound)], [max(v, -b) for v, b in zip(lower, bound)])
            reach = bound  # the capacities are now sized to this decision
            return desired.p

        first = redecide(reach)
        want = [min(u, r) if d >= 0 else min(-v, r) for u, v, r, d in zip(upper, lower, reach, first)]
        st, module_cap = assign_modules(inp, first, want, redecide)
        mod_results = tuple(
            ModuleResult(m.id, st.gun[i], st.draining[i], st.surplus_s[i]) for i, m in enumerate(inp.modules)
        )
    up = [min(u, c) for u, c in zip(upper, module_cap)]
    lo = [max(v, -c) for v, c in zip(lower, module_cap)]
    if desired is not None and sized_decision_stands(desired.p, up, lo, upper, lower, reach):
        dec = copy.copy(desired)
    else:
        dec = decide_power(inp, up, lo)

    results = []
    for g, gun in enumerate(inp.guns):
        p = dec.p[g]
        if p < -EPS:
            bound = BoundBy.VEHICLE if p <= lower[g] + 1e-6 else (BoundBy.MODULES if p <= lo[g] + 1e-6 else BoundBy.GRID)
        else:
            bound = charge_bound(p, upper[g], up[g], why[g], gun.priority, dec)
            if bound == BoundBy.MODULES and desired is not None and module_cap[g] >= desired.p[g] - 1e-6:
                # at a capacity sized to the first decision, not short of it: that decision's reason (a low
                # class that got nothing is bound by priority, not by the modules it was not given)
                bound = charge_bound(desired.p[g], upper[g], min(upper[g], reach[g]), why[g], gun.priority, desired)
        results.append(GunResult(gun.id, p, bound, module_cap[g], *loop_state[g]))
        if bound == BoundBy.RAMP:
            dec.flags |= Flag.RAMP_LIMITED
    unserved = sum(max(0.0, g.demand_kw - max(dec.p[i], 0.0)) for i, g in enumerate(inp.guns))
    return Allocation(tuple(results), dec.bess_kw, dec.grid_kw, unserved, dec.shortfall_kw, dec.flags, mod_results)
