"""The allocation decision compiled with Numba: the same decision as ``reference.py``, fast.

Read ``reference.py`` for *what* is decided; this file mirrors it step by step with the same names and
the same tie-breaking, so the two can be compared on random stations (tests/allocate). Differences are
only in how: packed arrays (``layout.py``), no Python objects, incremental bookkeeping in the module
assignment instead of rescans.

``nogil=True`` lets the control thread run it while asyncio drivers do I/O; ``cache=True`` keeps the
compiled code across restarts (the cache directory is set up in ``station.allocate.jit`` before Numba is
imported).
"""

from __future__ import annotations

import math

import numpy as np

from station.allocate.jit import njit, njit_inline, njit_noalloc
from station.allocate.layout import (
    G_DEMAND, G_DRAW_CAP, G_EFF, G_GUN_MAX, G_IN_COLS, G_MEASURED, G_PREV_ALLOC, G_PRIORITY, G_UNDER_S, G_V2G,
    G_VEHICLE_MAX, G_VOLTAGE, GO_BOUND, GO_COLS, GO_DRAW_CAP, GO_MODULE_CAP, GO_POWER, GO_UNDER_S, IO_GUNS,
    IO_MODULES, IO_PARTS, IO_WORK, K_ASSIGN_B, K_COVER_I, K_CYCLE_B, K_CYCLE_I, K_MOD_B, K_MOD_I, M_AVAILABLE,
    M_CURRENT, M_DRAINING, M_GROUP, M_GUN, M_IMAX, M_IN_COLS, M_RATED, M_SURPLUS_S, M_VMAX, M_VMIN, MO_COLS,
    MO_DRAINING, MO_GUN, MO_SURPLUS_S, P_ASSIGN_F, P_COVER_F, P_CYCLE_F, P_GUN_IN, P_GUN_OUT, P_MOD_F, P_MOD_IN,
    P_MOD_OUT, P_ST, P_ST_OUT, S_AUX, S_BESS_AVAILABLE, S_CAPACITY, S_CHARGE_MIN, S_CL_MARGIN, S_CL_SETTLE,
    S_CL_TOL, S_DT, S_ETA_CHARGE, S_ETA_DISCHARGE, S_EXPORT_CAP, S_HAS_MODULES, S_IMPORT_CAP, S_LAST_GRID,
    S_MAX_CHARGE, S_MAX_DISCHARGE, S_MOD_HOLD, S_MOD_IDLE_A, S_MOD_MARGIN, S_RAMP, S_RESERVE, S_SOC, S_SOC_MAX,
    S_SOC_MIN, S_SOC_TARGET, S_SUPPORT_MAX, S_TARGET, SO_BESS, SO_FLAGS, SO_GRID, SO_SHORTFALL, SO_UNSERVED,
    T_COMP_START, T_GG_GRP, T_GG_PAIR, T_GG_PTR, T_GRP_GUNS, T_GRP_MEM, T_GRP_PTR, T_GRP_REP, T_GRP_START,
    T_GUN_COMP, T_GUN_MODS, T_GUN_PTR, T_IO, T_MOD_GUNS, T_MOD_PTR, T_WORK, W_ASSIGN_B, W_ASSIGN_F, W_CYCLE_B,
    W_CYCLE_F, W_CYCLE_I, W_MOD_B, W_MOD_F, W_MOD_I,
)
from station.allocate.model import MODULE_ROUNDS

EPS = 1e-9
TOL = 1e-6

# BoundBy codes (model.BoundBy)
VEHICLE, GUN, MODULES, GRID, RAMP, PRIORITY = 0, 1, 2, 3, 4, 5
# Flag bits (model.Flag)
F_GRID_OVER_CAP, F_RAMP_LIMITED, F_TRACKING_SHORTFALL, F_BESS_SUPPORT, F_V2G_ACTIVE, F_TRACKING = 1, 2, 4, 8, 16, 32


@njit_inline
def segment(topo, i):
    """Segment ``i`` (layout.T_*) of the packed topology: a view, no copy."""
    return topo[topo[i]:topo[i + 1]]


@njit
def ac_kw(p, eff):
    return p / eff if p >= 0.0 else p * eff


@njit_noalloc
def module_kw_at(mod_in, m, voltage_v):
    if math.isnan(voltage_v):
        return mod_in[m, M_RATED]
    if voltage_v < mod_in[m, M_VMIN] or voltage_v > mod_in[m, M_VMAX]:
        return 0.0
    return min(mod_in[m, M_RATED], mod_in[m, M_IMAX] * voltage_v / 1000.0)


SORT_RUN = 16  # stable_argsort: runs of this many are insertion-sorted before the merges


@njit_inline
def key_after(a, b):
    """Whether key a sorts after key b: a > b, NaN after every number (np.argsort's order)."""
    return a > b or (a != a and b == b)


@njit_noalloc
def stable_argsort(keys, count, order, tmp):
    """order[:count] = the indices of keys[:count] in ascending order, ties by index, NaN last (what
    ``np.argsort(kind="stable")`` gives), without allocating: runs of SORT_RUN insertion-sorted, then
    bottom-up merges between ``order`` and ``tmp`` (scratch of at least ``count``). np.argsort allocates
    its result, and an allocating function pays reference counts at every call (jit.njit_noalloc)."""
    for i in range(count):
        order[i] = i
    for lo in range(0, count, SORT_RUN):
        end = min(lo + SORT_RUN, count)
        for i in range(lo + 1, end):
            x = order[i]
            kx = keys[x]
            j = i - 1
            while j >= lo and key_after(keys[order[j]], kx):
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = x
    width = SORT_RUN
    in_tmp = False  # where the sorted runs are
    while width < count:
        src, dst = (tmp, order) if in_tmp else (order, tmp)
        for lo in range(0, count, 2 * width):
            mid = min(lo + width, count)
            hi = min(lo + 2 * width, count)
            i, j = lo, mid
            for k in range(lo, hi):
                if j >= hi or (i < mid and not key_after(keys[src[i]], keys[src[j]])):
                    dst[k] = src[i]  # the left run's first unless the right's sorts strictly before it
                    i += 1
                else:
                    dst[k] = src[j]
                    j += 1
        in_tmp = not in_tmp
        width *= 2
    if in_tmp:
        for i in range(count):
            order[i] = tmp[i]


@njit_noalloc
def fill_up(members, count, upper, eff, budget, p, keys, sort_ws):
    """Water-fill ``budget`` over members[:count] charging in [0, upper]; returns what is left. ``keys`` and
    the two rows of ``sort_ws`` are scratch of at least ``count``."""
    need = 0.0
    for k in range(count):
        g = members[k]
        need += upper[g] / eff[g]
    if need <= budget + EPS:
        for k in range(count):
            g = members[k]
            p[g] = upper[g]
        return budget - need
    remaining = max(budget, 0.0)
    weight = 0.0
    for k in range(count):
        g = members[k]
        weight += 1.0 / eff[g]
        keys[k] = upper[g]
    order = sort_ws[0]
    stable_argsort(keys, count, order, sort_ws[1])  # members are in index order: ties break by index
    level = 0.0
    k = 0
    while k < count:
        level = remaining / weight if weight > 0.0 else 0.0
        g = members[order[k]]
        if upper[g] > level:
            break
        p[g] = upper[g]
        remaining -= upper[g] / eff[g]
        weight -= 1.0 / eff[g]
        k += 1
    while k < count:
        p[members[order[k]]] = level
        k += 1
    return 0.0


@njit_noalloc
def fill_down(members, count, depth, eff, produce, p, keys, sort_ws):
    """Discharge members[:count] (each down to depth) to put ``produce`` AC kW on the bus, max-min fair.
    ``keys`` and the two rows of ``sort_ws`` are scratch of at least ``count``."""
    can = 0.0
    for k in range(count):
        g = members[k]
        can += depth[g] * eff[g]
    if can <= produce + EPS:
        for k in range(count):
            g = members[k]
            p[g] = -depth[g]
        return produce - can
    remaining = max(produce, 0.0)
    weight = 0.0
    for k in range(count):
        g = members[k]
        weight += eff[g]
        keys[k] = depth[g]
    order = sort_ws[0]
    stable_argsort(keys, count, order, sort_ws[1])
    level = 0.0
    k = 0
    while k < count:
        level = remaining / weight if weight > 0.0 else 0.0
        g = members[order[k]]
        if depth[g] > level:
            break
        p[g] = -depth[g]
        remaining -= depth[g] * eff[g]
        weight -= eff[g]
        k += 1
    while k < count:
        p[members[order[k]]] = -level
        k += 1
    return 0.0


@njit_noalloc
def fill_up_by_class(cls_order, cls_start, n_cls, select, upper, eff, budget, p, members, keys, sort_ws):
    """Serve classes in order (cls_order lists guns sorted by priority, grouped by cls_start), only guns
    with select[g]; returns (left, marginal priority or -1)."""
    for c in range(n_cls):
        count = 0
        for k in range(cls_start[c], cls_start[c + 1]):
            g = cls_order[k]
            if select[g]:
                members[count] = g
                count += 1
        if count == 0:
            continue
        left = fill_up(members, count, upper, eff, budget, p, keys, sort_ws)
        short = 0.0
        for k in range(count):
            short += upper[members[k]] - p[members[k]]
        if left <= EPS and short > EPS:
            return 0.0, c
        budget = left
    return budget, -1


@njit_noalloc
def fill_down_by_class(cls_order, cls_start, n_cls, select, depth, eff, produce, p, members, keys, sort_ws):
    """Discharge the lowest class first (fair within a class), as far as the offers go."""
    for c in range(n_cls - 1, -1, -1):
        count = 0
        for k in range(cls_start[c], cls_start[c + 1]):
            g = cls_order[k]
            if select[g]:
                members[count] = g
                count += 1
        if count == 0:
            continue
        produce = fill_down(members, count, depth, eff, produce, p, keys, sort_ws)
        if produce <= EPS:
            return


PICKED_CLASSES = 8  # up to this many priority classes are picked out one by one, more are sorted


@njit_noalloc
def priority_classes(priority, cls_order, cls_start, sort_tmp):
    """Guns in priority order, index order inside a class (a stable sort), into ``cls_order``; class c is
    cls_order[cls_start[c]:cls_start[c + 1]]. Returns the number of classes.

    A station has a handful of classes, so they are picked out one at a time (two passes over the guns
    each): ~10x cheaper than a sort at 512 guns (docs/benchmarks.md). Beyond PICKED_CLASSES classes, or
    with a priority that does not compare (NaN), a stable argsort gives the same order."""
    n = priority.shape[0]
    n_cls = 0
    k = 0
    last = -math.inf
    while k < n and n_cls < PICKED_CLASSES:
        lowest = math.inf
        for g in range(n):
            v = priority[g]
            if last < v < lowest:
                lowest = v
        if lowest == math.inf:
            break
        cls_start[n_cls] = k
        n_cls += 1
        for g in range(n):
            if priority[g] == lowest:
                cls_order[k] = g
                k += 1
        last = lowest
    if k < n:
        stable_argsort(priority, n, cls_order, sort_tmp)
        n_cls = 0
        for k in range(n):
            if k == 0 or priority[cls_order[k]] != priority[cls_order[k - 1]]:
                cls_start[n_cls] = k
                n_cls += 1
    cls_start[n_cls] = n
    return n_cls


@njit_noalloc
def decide_power(st, upper, lower, eff, cls_order, cls_start, n_cls, p, members, keys, depth, sel, sort_ws):
    """Mirror of reference.decide_power. Returns (bess, grid, shortfall, flags, marginal class index
    or -1, budget bound code). ``members``, ``keys``, ``depth`` (one per gun) and ``sel`` (three rows of
    one per gun) are scratch."""
    n = upper.shape[0]
    for g in range(n):
        p[g] = 0.0
    flags = 0
    marginal = -1
    budget_bound = GRID
    h = st[S_DT] / 3600.0
    aux = st[S_AUX]
    cap = st[S_IMPORT_CAP]
    export = st[S_EXPORT_CAP]
    soc = st[S_SOC]
    capkwh = st[S_CAPACITY]
    if st[S_BESS_AVAILABLE] > 0.5 and capkwh > 0.0:
        ch = max(0.0, min(st[S_MAX_CHARGE], (st[S_SOC_MAX] - soc) * capkwh / (st[S_ETA_CHARGE] * h)))
        dis_dispatch = max(0.0, min(st[S_MAX_DISCHARGE], (soc - st[S_SOC_MIN]) * capkwh * st[S_ETA_DISCHARGE] / h))
        support_max = st[S_MAX_DISCHARGE] if math.isnan(st[S_SUPPORT_MAX]) else st[S_SUPPORT_MAX]
        dis_support = max(
            0.0, min(support_max, dis_dispatch, (soc - st[S_RESERVE]) * capkwh * st[S_ETA_DISCHARGE] / h)
        )
        soc_target = st[S_SOC_MAX] if math.isnan(st[S_SOC_TARGET]) else min(st[S_SOC_TARGET], st[S_SOC_MAX])
        ch_target = max(0.0, min(ch, (soc_target - soc) * capkwh / (st[S_ETA_CHARGE] * h)))
        forced = min(max(st[S_CHARGE_MIN], 0.0), ch)
    else:
        ch = 0.0
        dis_dispatch = 0.0
        dis_support = 0.0
        ch_target = 0.0
        forced = 0.0

    ramp = st[S_RAMP]
    last = st[S_LAST_GRID]
    dt = st[S_DT]
    ramped = not (math.isnan(ramp) or ramp <= 0.0 or math.isnan(last))
    hi = min(cap, max(last + ramp * dt, -export)) if ramped else cap
    lo_soft = max(-export, min(last - ramp * dt, cap)) if ramped else -math.inf
    if ramped and hi < cap - EPS:
        budget_bound = RAMP

    flexible = sel[0]
    firm = sel[1]
    everyone = sel[2]
    for g in range(n):
        flexible[g] = lower[g] < -EPS
        firm[g] = not flexible[g]
        everyone[g] = True
        depth[g] = -lower[g]

    bess = 0.0
    shortfall = 0.0
    target = st[S_TARGET]
    hold = math.nan
    if math.isnan(target):
        if forced > 0.0 and hi - aux - forced < 0.0:
            forced = max(0.0, hi - aux)
        support = dis_support if forced <= 0.0 else 0.0
        budget = hi - aux - forced + support
        if budget < -EPS:
            hold = hi
        else:
            left, marginal = fill_up_by_class(cls_order, cls_start, n_cls, everyone, upper, eff, budget, p, members,
                                              keys, sort_ws)
            vehicles = 0.0
            for g in range(n):
                vehicles += ac_kw(p[g], eff[g])
            need = vehicles + aux - hi
            if need > EPS:
                bess = min(need, support)
                flags |= F_BESS_SUPPORT
            else:
                headroom = -need
                charge = max(forced, min(ch_target, headroom))
                if ramped:
                    charge = max(charge, min(lo_soft - (vehicles + aux), ch, headroom))
                bess = -min(charge, ch)
    if not (math.isnan(target) and math.isnan(hold)):
        if math.isnan(hold):
            flags |= F_TRACKING
            if ramped:
                want = min(max(target, last - ramp * dt), last + ramp * dt)
            else:
                want = target
            want = min(max(want, -export), cap)
        else:
            want = hold
        full = 0.0
        firm_full = 0.0
        flex_min = 0.0
        for g in range(n):
            full += ac_kw(upper[g], eff[g])
            if firm[g]:
                firm_full += ac_kw(upper[g], eff[g])
            else:
                flex_min += ac_kw(lower[g], eff[g])
        g_max = full + aux + ch
        g_min = flex_min + aux - dis_dispatch
        goal = min(max(want, g_min), g_max)
        if math.isnan(hold):
            shortfall = abs(want - goal)
            if shortfall > TOL:
                flags |= F_TRACKING_SHORTFALL
        x = goal - aux
        if x + dis_dispatch >= full - EPS:
            for g in range(n):
                p[g] = upper[g]
            bess = full - x
        else:
            bess = dis_dispatch
            vb = x + dis_dispatch
            if vb - firm_full >= flex_min - EPS:
                for g in range(n):
                    if firm[g]:
                        p[g] = upper[g]
                fb = vb - firm_full
                if fb >= 0.0:
                    left, marginal = fill_up_by_class(
                        cls_order, cls_start, n_cls, flexible, upper, eff, fb, p, members, keys, sort_ws
                    )
                else:
                    fill_down_by_class(cls_order, cls_start, n_cls, flexible, depth, eff, -fb, p, members, keys,
                                       sort_ws)
            else:
                for g in range(n):
                    if flexible[g]:
                        p[g] = lower[g]
                left, marginal = fill_up_by_class(
                    cls_order, cls_start, n_cls, firm, upper, eff, vb - flex_min, p, members, keys, sort_ws
                )
        if math.isnan(hold) or hold >= cap - EPS:
            budget_bound = GRID
    bess = min(max(bess, -ch), dis_dispatch)
    grid = aux - bess
    v2g = False
    for g in range(n):
        grid += ac_kw(p[g], eff[g])
        if p[g] < -EPS:
            v2g = True
    if grid > cap + TOL:
        flags |= F_GRID_OVER_CAP
    if v2g:
        flags |= F_V2G_ACTIVE
    return bess, grid, shortfall, flags, marginal, budget_bound


@njit_inline
def decide_within_reach(st, reach, upper, lower, eff, cls_order, cls_start, n_cls, p, members, keys, depth, sel,
                        sort_ws, up_r, lo_r, need, desired):
    """Mirror of the reference's ``redecide``: decide_power with each gun bounded by the capacity it can
    reach (first with every available module, then in assign_modules' stage e when modules ran short).
    Leaves the bounds in ``up_r``/``lo_r``, the decision in ``p`` and ``desired`` and its size in ``need``;
    returns decide_power's (bess, grid, shortfall, flags, marginal class index or -1, budget bound code)."""
    for g in range(reach.shape[0]):
        up_r[g] = min(upper[g], reach[g])
        lo_r[g] = max(lower[g], -reach[g])
    decision = decide_power(st, up_r, lo_r, eff, cls_order, cls_start, n_cls, p, members, keys, depth, sel,
                            sort_ws)
    for g in range(reach.shape[0]):
        need[g] = abs(p[g])
        desired[g] = p[g]
    return decision


@njit
def key_less(h1, w1, g1, h2, w2, g2):
    """(have, -want, gun) order of the short-gun heap (one class at a time: the priority is the same)."""
    return h1 < h2 or (h1 == h2 and (w1 > w2 or (w1 == w2 and g1 < g2)))


@njit_inline
def heap_push(hh, hw, hg, size, key_have, key_want, g):
    """Push gun g keyed (have, -want, g) onto a binary min-heap kept in three arrays (have, want, gun); returns
    the new size. The want sits beside the key rather than being looked up by gun: that lookup was a
    dependent load in every compare and made a full reassignment half again as slow. Sifts with a hole: one
    write per level instead of a swap."""
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if key_less(key_have, key_want, g, hh[parent], hw[parent], hg[parent]):
            hh[i] = hh[parent]
            hw[i] = hw[parent]
            hg[i] = hg[parent]
            i = parent
        else:
            break
    hh[i] = key_have
    hw[i] = key_want
    hg[i] = g
    return size + 1


@njit_inline
def heap_sift_down(hh, hw, hg, size, key_have, key_want, g):
    """Put (key_have, key_want, g) at the root's place and sift it down (the root is overwritten)."""
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and key_less(hh[c + 1], hw[c + 1], hg[c + 1], hh[c], hw[c], hg[c]):
            c += 1
        if key_less(hh[c], hw[c], hg[c], key_have, key_want, g):
            hh[i] = hh[c]
            hw[i] = hw[c]
            hg[i] = hg[c]
            i = c
        else:
            break
    hh[i] = key_have
    hw[i] = key_want
    hg[i] = g


@njit_inline
def heap_pop(hh, hw, hg, size):
    """Remove the top of the heap (read it before calling); returns the new size."""
    size -= 1
    if size > 0:
        heap_sift_down(hh, hw, hg, size, hh[size], hw[size], hg[size])
    return size


@njit_inline
def pick_free(gg_ptr, gg_grp, gg_pair, pair_kw, grp_ptr, grp_mem, grp_end, cursor, mod_gun, available, idle, g,
              deficit, at_least):
    """The free module for gun g (reference.pick_free): with ``at_least`` < 0, the smallest that covers
    ``deficit`` alone, else the largest; with ``at_least`` >= 0 (a replacement), the smallest of at least
    that capacity. Ties: the least versatile, then the lowest index. Returns (module, its capacity at g), -1 as
    the module if there is none.

    Modules of a group are identical, so each group offers one candidate: its lowest-index free module.
    ``cursor[gr]`` walks the group's members in index order past those no longer free; nothing becomes
    free during the assignment, so the walk is amortised over the call."""
    cov = -1
    cov_kw = 0.0
    cov_deg = 0
    big = -1
    big_kw = 0.0
    big_deg = 0
    for k in range(gg_ptr[g], gg_ptr[g + 1]):
        kw = pair_kw[gg_pair[k]]
        if kw <= 0.0:
            continue
        gr = gg_grp[k]
        c = cursor[gr]
        while c < grp_end[gr]:
            m = grp_mem[c]
            if mod_gun[m] < 0 and available[m] and idle[m]:
                break
            c += 1
        cursor[gr] = c
        if c == grp_end[gr]:
            continue
        m = grp_mem[c]
        deg = grp_ptr[gr + 1] - grp_ptr[gr]
        covers = kw >= at_least if at_least >= 0.0 else kw >= deficit - EPS
        if covers and (cov < 0 or kw < cov_kw or (kw == cov_kw and (deg < cov_deg or (deg == cov_deg and m < cov)))):
            cov = m
            cov_kw = kw
            cov_deg = deg
        if big < 0 or kw > big_kw or (kw == big_kw and (deg < big_deg or (deg == big_deg and m < big))):
            big = m
            big_kw = kw
            big_deg = deg
    if cov >= 0 or at_least >= 0.0:
        return cov, cov_kw
    return big, big_kw


@njit_inline
def switch_in(mod_gun, surplus_s, fresh, own_kw, have, m, g, kw):
    """Switch free module m in to gun g, where it carries ``kw`` (it is idle: no current flows yet)."""
    mod_gun[m] = g
    surplus_s[m] = 0.0
    fresh[m] = True
    own_kw[m] = kw
    have[g] += kw


@njit_inline
def any_short(have, need):
    """Whether some gun has less capacity than it needs."""
    for g in range(have.shape[0]):
        if have[g] < need[g] - EPS:
            return True
    return False


@njit_inline
def prepare_cover(gun_in, topo, cls_order, cursor, by_comp, runs):
    """Set up the covering pass (cover): each group's cursor at its first member; the guns by component of
    the switch matrix, in class order within each (a stable counting sort of ``cls_order``), into
    ``by_comp``; the starts of its runs of one class of one component into ``runs`` (n_runs + 1 entries,
    at most n + 1). Returns n_runs. The counting sort's next slot per component is kept in ``runs`` too
    (there are at most n components), free until the runs are written: nothing to allocate."""
    grp_start = segment(topo, T_GRP_START)
    gun_comp = segment(topo, T_GUN_COMP)
    comp_start = segment(topo, T_COMP_START)
    for gr in range(cursor.shape[0]):  # a loop, not a slice assignment: that may allocate (overlap check)
        cursor[gr] = grp_start[gr]
    n = cls_order.shape[0]
    pos = runs
    for c in range(comp_start.shape[0] - 1):
        pos[c] = comp_start[c]
    for k in range(n):
        g = cls_order[k]
        c = gun_comp[g]
        by_comp[pos[c]] = g
        pos[c] += 1
    n_runs = 0
    for k in range(n):
        g = by_comp[k]
        if k > 0:
            prev = by_comp[k - 1]
            if gun_comp[g] == gun_comp[prev] and gun_in[g, G_PRIORITY] == gun_in[prev, G_PRIORITY]:
                continue
        runs[n_runs] = k
        n_runs += 1
    runs[n_runs] = n
    return n_runs


@njit_noalloc
def cover(gun_in, mod_in, topo, by_comp, runs, n_runs, pair_kw, need, want, mod_gun, surplus_s, have, stuck,
          fresh, own_kw, available, idle, cursor, hh, hw, hg, seen, came_from, queue, stamp):
    """Stage c) of assign_modules (reference: ``cover``): free modules to the short guns, one at a time:
    highest class, then least capacity, then the one that would use more (want), then index; a gun with
    no free module in reach tries an augmenting path over modules switched in by this call (``fresh``).
    Capacities only grow here, so the classes can be served one after the other, each with its own heap
    keyed (have, -want, gun): the same order as one heap keyed (priority, have, -want, gun), shallower.
    And a component of the switch matrix shares no module with another (layout.T_GUN_COMP): whatever is
    done for one changes no key, cursor or path of another, so each component is served on its own, one
    heap per class in it: the same switch-ins as the station-wide order, with heaps of a cabinet's guns
    instead of a class's (a sift per switch-in is most of a full reassignment's cost). ``by_comp`` holds
    the guns by component, in class order within each; ``runs[r]:runs[r + 1]`` is one class of one
    component (prepare_cover).
    Every short gun of the class that is not stuck has an entry with its current key; the top stays in
    place while it is served and is then re-keyed in place (one sift instead of a pop and a push).

    Returns (the last search stamp, the number of switch-ins and augmenting paths)."""
    grp_ptr = segment(topo, T_GRP_PTR)
    grp_start = segment(topo, T_GRP_START)
    grp_mem = segment(topo, T_GRP_MEM)
    gg_ptr = segment(topo, T_GG_PTR)
    gg_grp = segment(topo, T_GG_GRP)
    gg_pair = segment(topo, T_GG_PAIR)
    gun_ptr = segment(topo, T_GUN_PTR)
    gun_mods = segment(topo, T_GUN_MODS)
    grp_end = grp_start[1:]
    heap_cap = hh.shape[0]
    count = 0
    for r in range(n_runs):
        c0 = runs[r]
        c1 = runs[r + 1]
        pc = gun_in[by_comp[c0], G_PRIORITY]
        size = 0
        for k in range(c0, c1):
            g = by_comp[k]
            if have[g] < need[g] - EPS:
                size = heap_push(hh, hw, hg, size, have[g], want[g], g)
        while size > 0:
            g = hg[0]
            if hh[0] != have[g] or stuck[g] or not have[g] < need[g] - EPS:
                size = heap_pop(hh, hw, hg, size)
                continue  # lazily deleted: its key changed, or it is done
            vg = gun_in[g, G_VOLTAGE]
            # pick_free walks each group's cursor past taken modules (amortised): -1 when none is free in reach
            pick, kw = pick_free(gg_ptr, gg_grp, gg_pair, pair_kw, grp_ptr, grp_mem, grp_end, cursor, mod_gun,
                                 available, idle, g, need[g] - have[g], -1.0)
            touched = 0  # guns whose capacity changed: queue[0:touched] is reused for them afterwards
            if pick >= 0:
                switch_in(mod_gun, surplus_s, fresh, own_kw, have, pick, g, kw)
                count += 1
            else:
                stamp += 1
                qt = 0
                for k in range(gun_ptr[g], gun_ptr[g + 1]):
                    m = gun_mods[k]
                    if fresh[m] and mod_gun[m] != g and module_kw_at(mod_in, m, vg) > 0.0:
                        seen[m] = stamp
                        came_from[m] = -1
                        queue[qt] = m
                        qt += 1
                qh = 0
                end = -1
                rep = -1
                rep_kw = 0.0
                while qh < qt:
                    m = queue[qh]
                    qh += 1
                    y = mod_gun[m]
                    rep, rep_kw = pick_free(gg_ptr, gg_grp, gg_pair, pair_kw, grp_ptr, grp_mem, grp_end, cursor,
                                            mod_gun, available, idle, y, 0.0, own_kw[m])
                    if rep >= 0:
                        end = m
                        break
                    vy = gun_in[y, G_VOLTAGE]
                    for k in range(gun_ptr[y], gun_ptr[y + 1]):
                        r = gun_mods[k]
                        if (fresh[r] and seen[r] != stamp and mod_gun[r] != g and mod_gun[r] != y
                                and module_kw_at(mod_in, r, vy) >= own_kw[m]):
                            seen[r] = stamp
                            came_from[r] = m
                            queue[qt] = r
                            qt += 1
                if end < 0:
                    stuck[g] = True
                    size = heap_pop(hh, hw, hg, size)
                    continue
                y = mod_gun[end]
                switch_in(mod_gun, surplus_s, fresh, own_kw, have, rep, y, rep_kw)
                count += 1
                queue[0] = y
                touched = 1
                m = end
                while True:  # walk the path back: each module moves to the gun of the one before it, the first to g
                    prev = came_from[m]
                    to = mod_gun[prev] if prev >= 0 else g
                    have[mod_gun[m]] -= own_kw[m]
                    mod_gun[m] = to
                    own_kw[m] = module_kw_at(mod_in, m, gun_in[to, G_VOLTAGE])
                    have[to] += own_kw[m]
                    if prev < 0:
                        break
                    queue[touched] = to
                    touched += 1
                    m = prev
            if size + touched + 2 > heap_cap:  # rebuild without the stale entries (g's included)
                size = 0
                for k in range(c0, c1):
                    h = by_comp[k]
                    if not stuck[h] and have[h] < need[h] - EPS:
                        size = heap_push(hh, hw, hg, size, have[h], want[h], h)
            elif have[g] < need[g] - EPS:
                heap_sift_down(hh, hw, hg, size, have[g], want[g], g)  # g's entry, re-keyed
            else:
                size = heap_pop(hh, hw, hg, size)  # g is covered
            for i in range(touched):  # a duplicate of an unchanged key is harmless: once popped, g's key moves
                h = queue[i]  # guns of later classes get their entry when their class is served
                if gun_in[h, G_PRIORITY] == pc and not stuck[h] and have[h] < need[h] - EPS:
                    size = heap_push(hh, hw, hg, size, have[h], want[h], h)
    return stamp, count


@njit_noalloc
def assign_modules(st, gun_in, mod_in, topo, cls_order, cls_start, n_cls, cap, upper, lower, eff, p, members, keys,
                   depth, sel, sort_ws, desired, up_r, lo_r, need, want, reach, mod_out, gf, gb, mb, mi, mf, sf, si):
    """Mirror of reference.assign_modules, with the first decision (reference: ``allocate`` calls
    ``redecide`` with every available module in reach) made here, after the one pass over the modules
    that reads their state, counts the available ones per group and does stage a): one pass instead of
    four (each pass over 2,048 modules is ~2-3 us). Writes each gun's usable capacity into ``cap`` and
    the modules' next state into ``mod_out``.

    The decision the capacities are sized to is left in ``desired``, ``need`` and its bounds in
    ``up_r``/``lo_r`` (the first one, or the last re-decision of stage e, which bounds each gun by the
    capacity it can still reach when modules ran short). Returns that decision as decide_power does
    (bess, grid, shortfall, flags, marginal class index or -1, budget bound code): allocate_kernel keeps it
    when the capacities hold it, instead of a second power step.

    It allocates nothing (jit.njit_noalloc): the scratch comes from allocate_kernel as blocks of one type
    each (layout.W_ASSIGN_*, W_MOD_*; the covering parts as packing.io_parts sizes them), cut into rows
    and segments here."""
    mod_ptr = segment(topo, T_MOD_PTR)
    mod_guns = segment(topo, T_MOD_GUNS)
    gun_ptr = segment(topo, T_GUN_PTR)
    gun_mods = segment(topo, T_GUN_MODS)
    grp_ptr = segment(topo, T_GRP_PTR)
    grp_guns = segment(topo, T_GRP_GUNS)
    grp_rep = segment(topo, T_GRP_REP)
    grp_start = segment(topo, T_GRP_START)
    grp_mem = segment(topo, T_GRP_MEM)
    gg_ptr = segment(topo, T_GG_PTR)
    gg_grp = segment(topo, T_GG_GRP)
    gg_pair = segment(topo, T_GG_PAIR)
    n = gun_in.shape[0]
    nm = mod_in.shape[0]
    n_grp = grp_rep.shape[0]
    dt = st[S_DT]
    hold = st[S_MOD_HOLD]
    margin = st[S_MOD_MARGIN]
    idle_a = st[S_MOD_IDLE_A]
    available, idle, surplus, fresh, draining = mb[0], mb[1], mb[2], mb[3], mb[4]
    came_from, seen, queue, mod_gun = mi[0], mi[1], mi[2], mi[3]
    own_kw, surplus_s = mf[0], mf[1]  # own_kw: capacity of each module at the gun it is switched to
    have, left, incoming_of, bound = gf[0], gf[1], gf[2], gf[3]
    short, stuck = gb[0], gb[1]
    # capacity of one module of each group at each gun it reaches: evaluated once per group and gun
    n_pairs = grp_guns.shape[0]
    pair_kw = sf[:n_pairs]
    grp_avail = sf[n_pairs:n_pairs + n_grp]  # available modules per group
    grp_avail[:] = 0.0
    for gr in range(n_grp):
        for k in range(grp_ptr[gr], grp_ptr[gr + 1]):
            pair_kw[k] = module_kw_at(mod_in, grp_rep[gr], gun_in[grp_guns[k], G_VOLTAGE])

    # a) finish drains; a faulted module leaves its gun like a drained one (with the read of the state)
    have[:] = 0.0
    run_gr = -1
    run_n = 0.0
    for m in range(nm):
        g = int(mod_in[m, M_GUN])
        dr = mod_in[m, M_DRAINING] > 0.5
        ss = mod_in[m, M_SURPLUS_S]
        av = mod_in[m, M_AVAILABLE] > 0.5
        idl = abs(mod_in[m, M_CURRENT]) < idle_a
        available[m] = av
        idle[m] = idl
        surplus[m] = False
        fresh[m] = False
        seen[m] = 0  # stamp of the search that reached a module
        gr = int(mod_in[m, M_GROUP])
        if gr != run_gr:  # count a run of modules of one group in a register (a group's members are usually
            if run_gr >= 0:  # consecutive): an add to memory per module would chain through store forwarding
                grp_avail[run_gr] += run_n
            run_gr = gr
            run_n = 0.0
        if av:
            run_n += 1.0
        if g >= 0 and not av:
            dr = True
        if dr and idl:
            g = -1
        if g < 0:
            dr = False
            ss = 0.0
            own_kw[m] = 0.0
        else:
            own_kw[m] = module_kw_at(mod_in, m, gun_in[g, G_VOLTAGE])
            if not dr and av:
                have[g] += own_kw[m]
        mod_gun[m] = g
        draining[m] = dr
        surplus_s[m] = ss
    if run_gr >= 0:
        grp_avail[run_gr] += run_n

    # the first decision: bounded by what all available modules in reach could carry
    reach[:] = 0.0
    for gr in range(n_grp):
        for k in range(grp_ptr[gr], grp_ptr[gr + 1]):
            reach[grp_guns[k]] += grp_avail[gr] * pair_kw[k]
    decision = decide_within_reach(st, reach, upper, lower, eff, cls_order, cls_start, n_cls, p, members, keys,
                                   depth, sel, sort_ws, up_r, lo_r, need, desired)
    for g in range(n):
        want[g] = up_r[g] if p[g] >= 0.0 else -lo_r[g]  # ties of the module order: who would use more

    # a) (cont.) a draining module a short gun still needs stays unless another short gun waits for it
    for g in range(n):
        short[g] = have[g] < need[g] - EPS
        stuck[g] = False
    for m in range(nm):
        g = mod_gun[m]
        if draining[m] and available[m] and g >= 0 and have[g] < need[g] - EPS:
            waited = False
            for k in range(mod_ptr[m], mod_ptr[m + 1]):
                h = mod_guns[k]
                if h != g and short[h]:
                    waited = True
                    break
            if not waited:
                draining[m] = False
                have[g] += own_kw[m]

    # b) surplus (highest module index first within each gun)
    for g in range(n):
        left[g] = have[g]
    for m in range(nm - 1, -1, -1):
        g = mod_gun[m]
        if g >= 0 and not draining[m]:
            if left[g] - own_kw[m] >= need[g] + margin - EPS:
                surplus[m] = True
                left[g] -= own_kw[m]
    for m in range(nm):
        if surplus[m]:
            surplus_s[m] += dt
            if surplus_s[m] >= hold - EPS:
                draining[m] = True
                have[mod_gun[m]] -= own_kw[m]
                surplus[m] = False
        elif mod_gun[m] >= 0:
            surplus_s[m] = 0.0

    # c) free modules to short guns (cover); each group's members in index order (grp_mem, static):
    #    cursor[gr] walks them past those taken, which nothing frees again during the call
    #    Its scratch, filled when a gun first needs covering (most cycles none does): the short-gun heap
    #    (have, want; gun), the cursors, the guns by component and the runs of one class of one component
    #    (prepare_cover)
    heap_cap = (sf.shape[0] - n_pairs - n_grp) // 2
    hh = sf[n_pairs + n_grp:n_pairs + n_grp + heap_cap]
    hw = sf[n_pairs + n_grp + heap_cap:]
    hg = si[:heap_cap]
    cursor = si[heap_cap:heap_cap + n_grp]
    by_comp = si[heap_cap + n_grp:heap_cap + n_grp + n]
    runs = si[heap_cap + n_grp + n:heap_cap + n_grp + 2 * n + 1]
    order = si[heap_cap + n_grp + 2 * n + 1:]  # stage d
    n_runs = -1
    stamp = 0
    if any_short(have, need):
        n_runs = prepare_cover(gun_in, topo, cls_order, cursor, by_comp, runs)
        stamp, _ = cover(gun_in, mod_in, topo, by_comp, runs, n_runs, pair_kw, need, want, mod_gun, surplus_s,
                         have, stuck, fresh, own_kw, available, idle, cursor, hh, hw, hg, seen, came_from, queue, 0)

    # d) still short: drain from someone who can spare (in rank order of the short guns)
    n_short = 0
    for g in range(n):
        incoming_of[g] = 0.0
        if have[g] < need[g] - EPS:
            order[n_short] = g
            n_short += 1
    # insertion sort by (priority, have, -want, index): few guns are short at once
    for i in range(1, n_short):
        g = order[i]
        j = i - 1
        while j >= 0:
            o = order[j]
            po = gun_in[o, G_PRIORITY]
            pg = gun_in[g, G_PRIORITY]
            if po > pg or (po == pg and (have[o] > have[g] or (have[o] == have[g] and (
                    want[o] < want[g] or (want[o] == want[g] and o > g))))):
                order[j + 1] = o
                j -= 1
            else:
                break
        order[j + 1] = g
    for i in range(n_short):
        g = order[i]
        vg = gun_in[g, G_VOLTAGE]
        pending = 0.0
        for k in range(gun_ptr[g], gun_ptr[g + 1]):
            m = gun_mods[k]
            if draining[m] and available[m]:
                pending += module_kw_at(mod_in, m, vg)
        deficit = need[g] - have[g] - pending
        incoming = pending
        while deficit > EPS:
            best_m = -1
            best_cat = 0
            best_have = 0.0
            pg = gun_in[g, G_PRIORITY]
            for k in range(gun_ptr[g], gun_ptr[g + 1]):
                m = gun_mods[k]
                h = mod_gun[m]
                if h < 0 or h == g or draining[m] or not available[m]:
                    continue
                kh = own_kw[m]
                ph = gun_in[h, G_PRIORITY]
                if surplus[m] or have[h] - kh >= need[h] - EPS:
                    cat = 0
                elif ph > pg:
                    cat = 1
                elif ph == pg:
                    cat = 2  # checked below, once kg is known
                else:
                    continue
                if not (
                    best_m < 0
                    or cat < best_cat
                    or (cat == best_cat and (have[h] > best_have or (have[h] == best_have and m > best_m)))
                ):
                    continue
                kg = module_kw_at(mod_in, m, vg)
                if kg <= 0.0:
                    continue
                if cat == 2 and not have[h] - kh >= have[g] + incoming + kg - EPS:
                    continue
                best_m = m
                best_cat = cat
                best_have = have[h]
            if best_m < 0:
                break
            h = mod_gun[best_m]
            kg = module_kw_at(mod_in, best_m, vg)
            draining[best_m] = True
            surplus_s[best_m] = 0.0
            have[h] -= own_kw[best_m]
            deficit -= kg
            incoming += kg
        incoming_of[g] = incoming

    # e) modules ran short: decide again with each gun bounded by what it has, what is on its way and the
    #    free modules it can still reach, and cover the guns whose share grew (only from free modules)
    rounds = 0
    free = came_from  # scratch: free modules per group (came_from is rewritten by each search before use)
    while rounds < MODULE_ROUNDS and any_short(have, need):
        rounds += 1
        if n_runs < 0:  # stage d made a gun short
            n_runs = prepare_cover(gun_in, topo, cls_order, cursor, by_comp, runs)
        for gr in range(n_grp):
            k = 0
            for i in range(grp_start[gr], grp_start[gr + 1]):
                m = grp_mem[i]
                if mod_gun[m] < 0 and available[m] and idle[m]:
                    k += 1
            free[gr] = k
        for g in range(n):
            b = 0.0
            for k in range(gg_ptr[g], gg_ptr[g + 1]):
                kw = pair_kw[gg_pair[k]]
                if kw > 0.0:
                    b += free[gg_grp[k]] * kw
            bound[g] = b + have[g] + incoming_of[g]
        decision = decide_within_reach(st, bound, upper, lower, eff, cls_order, cls_start, n_cls, p, members, keys,
                                       depth, sel, sort_ws, up_r, lo_r, need, desired)
        stamp, count = cover(gun_in, mod_in, topo, by_comp, runs, n_runs, pair_kw, need, want, mod_gun,
                             surplus_s, have, stuck, fresh, own_kw, available, idle, cursor, hh, hw, hg, seen, came_from,
                             queue, stamp)
        if count == 0:
            break

    cap[:] = 0.0
    for m in range(nm):
        g = mod_gun[m]
        if g >= 0 and not draining[m] and available[m]:
            cap[g] += own_kw[m]
        mod_out[m, MO_GUN] = g
        mod_out[m, MO_DRAINING] = 1.0 if draining[m] else 0.0
        mod_out[m, MO_SURPLUS_S] = surplus_s[m]
    return decision


@njit
def charge_bound(x, upper, limit, why, priority, marginal_priority, budget_bound):
    """What bound a gun charging at ``x`` kW (reference.charge_bound): its own upper bound (``why``), the
    module ``limit``, priority, or the budget."""
    if x >= upper - TOL:
        return why
    if x >= limit - TOL:
        return MODULES
    if priority > marginal_priority:
        return PRIORITY
    return budget_bound


@njit_noalloc
def allocate_kernel(io, topo):
    """One cycle's decision. ``io`` holds the inputs and receives the outputs, ``topo`` is the station's
    structure and the int scratch (layout.py; packing.pack builds both). Two array arguments instead of
    seven (each costs the Numba dispatcher ~55 ns per call), and nothing allocated: every vector is a
    view of the scratch parts, cut here, where views cost no reference counts (jit.njit_noalloc)."""
    at = segment(topo, T_IO)
    work = segment(topo, T_WORK)
    n = at[IO_GUNS]
    nm = at[IO_MODULES]
    io_at = at[IO_PARTS:]
    w_at = at[IO_WORK:]
    decide_cycle(
        part(io, io_at, P_ST), part(io, io_at, P_GUN_IN).reshape((n, G_IN_COLS)),
        part(io, io_at, P_MOD_IN).reshape((nm, M_IN_COLS)), topo, part(io, io_at, P_ST_OUT),
        part(io, io_at, P_GUN_OUT).reshape((n, GO_COLS)), part(io, io_at, P_MOD_OUT).reshape((nm, MO_COLS)),
        part(io, io_at, P_CYCLE_F).reshape((W_CYCLE_F, n)), part(io, io_at, P_ASSIGN_F).reshape((W_ASSIGN_F, n)),
        part(io, io_at, P_MOD_F).reshape((W_MOD_F, nm)), part(io, io_at, P_COVER_F),
        part(work, w_at, K_CYCLE_I).reshape((W_CYCLE_I, n + 1)), part(work, w_at, K_MOD_I).reshape((W_MOD_I, nm)),
        part(work, w_at, K_COVER_I), bool_part(work, w_at, K_CYCLE_B, W_CYCLE_B, n),
        bool_part(work, w_at, K_ASSIGN_B, W_ASSIGN_B, n), bool_part(work, w_at, K_MOD_B, W_MOD_B, nm))


@njit_inline
def part(buf, starts, k):
    """Part k of ``buf``: buf[starts[k]:starts[k + 1]] (a view)."""
    return buf[starts[k]:starts[k + 1]]


@njit_inline
def bool_part(work, starts, k, rows, cols):
    """Part k of the int scratch as a (rows, cols) bool table (its bytes: a view)."""
    return work[starts[k]:starts[k + 1]].view(np.bool_)[:rows * cols].reshape((rows, cols))


@njit_inline
def decide_cycle(st, gun_in, mod_in, topo, st_out, gun_out, mod_out, gf, ag_f, mm_f, cov_f, gi, mm_i, cov_i, sel, ag_b,
                 mm_b):
    """The decision on the parts of ``io`` and the scratch (allocate_kernel), inlined into it."""
    n = gun_in.shape[0]
    dt = st[S_DT]
    # the per-gun vectors are rows of the scratch blocks (layout.W_CYCLE_*)
    eff, upper, lower, p, cap, desired, up_r, lo_r = gf[0], gf[1], gf[2], gf[3], gf[4], gf[5], gf[6], gf[7]
    need, up, lo, keys, depth, reach, want = gf[8], gf[9], gf[10], gf[11], gf[12], gf[13], gf[14]
    why, cls_order, members, cls_start = gi[0, :n], gi[1, :n], gi[2, :n], gi[3]
    sort_ws = gi[4:]  # stable_argsort's two rows
    # sel: decide_power's selections of guns
    for g in range(n):
        eff[g] = gun_in[g, G_EFF]
        veh = min(gun_in[g, G_DEMAND], gun_in[g, G_VEHICLE_MAX])
        if veh <= gun_in[g, G_GUN_MAX]:
            u = veh
            w = VEHICLE
        else:
            u = gun_in[g, G_GUN_MAX]
            w = GUN
        u = max(u, 0.0)
        # closed loop (reference.closed_loop)
        s = gun_in[g, G_UNDER_S]
        dcap = gun_in[g, G_DRAW_CAP]
        meas = gun_in[g, G_MEASURED]
        prev = gun_in[g, G_PREV_ALLOC]
        if not (math.isnan(meas) or math.isnan(prev) or prev <= 0.0):
            if meas < prev - st[S_CL_TOL]:
                s += dt
                if s >= st[S_CL_SETTLE] - EPS:
                    dcap = max(meas, 0.0) + st[S_CL_MARGIN]
            else:
                s = 0.0
                dcap += st[S_CL_MARGIN]
            if dcap >= min(gun_in[g, G_DEMAND], gun_in[g, G_VEHICLE_MAX], gun_in[g, G_GUN_MAX]):
                dcap = math.inf
        if dcap < u:
            u = dcap
            w = VEHICLE
        upper[g] = u
        why[g] = w
        lower[g] = -max(0.0, min(gun_in[g, G_V2G], gun_in[g, G_GUN_MAX]))
        gun_out[g, GO_UNDER_S] = s
        gun_out[g, GO_DRAW_CAP] = dcap

    n_cls = priority_classes(gun_in[:, G_PRIORITY], cls_order, cls_start, sort_ws[0])

    # desired: the decision the module capacities are sized to (assign_modules), for the bound of a gun at
    # its capacity
    for g in range(n):
        cap[g] = math.inf
        up_r[g] = upper[g]
    sized = st[S_HAS_MODULES] > 0.5
    bess, grid, shortfall, flags, marginal1, budget_bound1 = 0.0, 0.0, 0.0, 0, -1, GRID
    if sized:
        bess, grid, shortfall, flags, marginal1, budget_bound1 = assign_modules(
            st, gun_in, mod_in, topo, cls_order, cls_start, n_cls, cap, upper, lower, eff, p, members, keys, depth, sel,
            sort_ws, desired, up_r, lo_r, need, want, reach, mod_out, ag_f, ag_b, mm_b, mm_i, mm_f, cov_f, cov_i)

    # the decision the capacities were sized to stands when they keep it (reference.sized_decision_stands)
    stands = sized
    for g in range(n):
        up[g] = min(upper[g], cap[g])
        lo[g] = max(lower[g], -cap[g])
        d = desired[g]
        if stands and not (d <= up[g] <= up_r[g] and lo_r[g] <= lo[g] <= d):
            stands = False
    if stands:
        for g in range(n):
            p[g] = desired[g]
        marginal, budget_bound = marginal1, budget_bound1
    else:
        bess, grid, shortfall, flags, marginal, budget_bound = decide_power(
            st, up, lo, eff, cls_order, cls_start, n_cls, p, members, keys, depth, sel, sort_ws
        )
    marginal_priority = gun_in[cls_order[cls_start[marginal]], G_PRIORITY] if marginal >= 0 else math.inf
    marginal_priority1 = gun_in[cls_order[cls_start[marginal1]], G_PRIORITY] if marginal1 >= 0 else math.inf
    unserved = 0.0
    for g in range(n):
        pg = p[g]
        if pg < -EPS:
            if pg <= lower[g] + TOL:
                b = VEHICLE
            elif pg <= lo[g] + TOL:
                b = MODULES
            else:
                b = GRID
        else:
            b = charge_bound(pg, upper[g], up[g], why[g], gun_in[g, G_PRIORITY], marginal_priority, budget_bound)
            if b == MODULES and cap[g] >= desired[g] - TOL:
                # at a capacity sized to the first decision: that decision's reason (reference.allocate)
                b = charge_bound(desired[g], upper[g], up_r[g], why[g], gun_in[g, G_PRIORITY], marginal_priority1,
                                 budget_bound1)
        if b == RAMP:
            flags |= F_RAMP_LIMITED
        gun_out[g, GO_POWER] = pg
        gun_out[g, GO_BOUND] = b
        gun_out[g, GO_MODULE_CAP] = cap[g]
        unserved += max(0.0, gun_in[g, G_DEMAND] - max(pg, 0.0))
    st_out[SO_BESS] = bess
    st_out[SO_GRID] = grid
    st_out[SO_UNSERVED] = unserved
    st_out[SO_SHORTFALL] = shortfall
    st_out[SO_FLAGS] = flags
