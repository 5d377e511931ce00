"""The horizon solve compiled with Numba: the same dynamic programme as ``reference.py``, fast.

Function by function the same as the reference (``Steps``), with the same arithmetic in the same order
and the candidates tried in the same order, so both give bit-identical plans (tests/plan). Differences
are only in how: the scalars travel in one array ``q`` (indices ``Q_*``), the cost-to-go is one 2-D
array, and candidates are evaluated as they are generated instead of listed. Compiled with
``station.allocate.jit.njit`` (cached, ``nogil``) like the allocation kernel.
"""

from __future__ import annotations

import math

import numpy as np

from station.allocate.jit import njit
from station.plan.problem import Problem, Solution

(Q_DT, Q_AUX, Q_CAP, Q_SOC_MIN, Q_SOC_MAX, Q_RESERVE, Q_CH_MAX, Q_DIS_MAX, Q_SOC_PER_KW_DIS, Q_SOC_PER_KW_CH,
 Q_KW_PER_SOC_DIS, Q_KW_PER_SOC_CH, Q_HALF_PER_KW, Q_R, Q_LEVELS_LOW, Q_LEVELS_HIGH, Q_LEVELING_PER_KW, Q_FORCED,
 Q_SHORTFALL) = range(19)
W_LEVELING, W_TIME_PREFERENCE, W_FORCED, W_SHORTFALL, W_TERMINAL = range(5)  # Weights.array()


@njit
def charge_limit(q, s):
    return max(0.0, min(q[Q_CH_MAX], (q[Q_SOC_MAX] - s) * q[Q_KW_PER_SOC_CH]))


@njit
def discharge_limit(q, s, floor):
    return max(0.0, min(q[Q_DIS_MAX], (s - floor) * q[Q_KW_PER_SOC_DIS]))


@njit
def next_soc(q, s, b):
    if b >= 0.0:
        return s - b * q[Q_SOC_PER_KW_DIS]
    return s - b * q[Q_SOC_PER_KW_CH]


@njit
def greedy(q, deficit, k, s):
    d = deficit[k]
    if d > 0.0:
        return min(d, discharge_limit(q, s, q[Q_RESERVE]))
    return -min(-d, charge_limit(q, s))


@njit
def bounds(q, deficit, limit, hold, forced_ok, room_ok, k, s):
    d = deficit[k]
    if hold[k]:
        b = min(max(d, -charge_limit(q, s)), discharge_limit(q, s, q[Q_SOC_MIN]))
        return b, b
    g = greedy(q, deficit, k, s)
    forced = -min(charge_limit(q, s), max(limit[k] - q[Q_AUX], 0.0))
    if d > 0.0:
        return (forced if forced_ok[k] else 0.0), g
    return (forced if forced_ok[k] else g), (0.0 if room_ok[k] else g)


@njit
def stage_cost(q, deficit, demand, weight, hold, k, b):
    d = deficit[k]
    if hold[k]:
        r = d - b
        if r >= 0.0:
            u = min(r, demand[k])
            penalty = q[Q_SHORTFALL] * (r - u)
        else:
            u = 0.0
            penalty = q[Q_SHORTFALL] * -r
    elif b >= 0.0:
        u = max(d - b, 0.0)
        penalty = 0.0
    else:
        u = max(d, 0.0)
        f = max(min(d, 0.0) - b, 0.0)
        penalty = q[Q_FORCED] * (f + f * f * q[Q_HALF_PER_KW])
    return q[Q_DT] * (weight[k] * (u + u * u * q[Q_LEVELING_PER_KW]) + penalty)


@njit
def node(q, j):
    if j <= q[Q_R]:
        return q[Q_SOC_MIN] + j / q[Q_LEVELS_LOW]
    return q[Q_RESERVE] + (j - q[Q_R]) / q[Q_LEVELS_HIGH]


@njit
def position(q, s):
    if s < q[Q_RESERVE]:
        return (s - q[Q_SOC_MIN]) * q[Q_LEVELS_LOW]
    return q[Q_R] + (s - q[Q_RESERVE]) * q[Q_LEVELS_HIGH]


@njit
def levels_per_soc(q, c):
    return q[Q_LEVELS_LOW] if c < q[Q_R] else q[Q_LEVELS_HIGH]


@njit
def interp(q, value, k, s):
    m = value.shape[1]
    x = position(q, s)
    if x <= 0.0:
        return value[k, 0]
    if x >= m - 1:
        return value[k, m - 1]
    j = int(x)
    f = x - j
    return value[k, j] + f * (value[k, j + 1] - value[k, j])


@njit
def total(q, deficit, demand, weight, hold, value, k, s, b):
    return stage_cost(q, deficit, demand, weight, hold, k, b) + interp(q, value, k + 1, next_soc(q, s, b))


@njit
def through_window(q, deficit, demand, weight, limit, hold, forced_ok, room_ok, value, k, end, s):
    """Cost-to-go through the rest of a hold window, followed exactly (``Steps.through_window``)."""
    cost = 0.0
    for t in range(k, end):
        b = bounds(q, deficit, limit, hold, forced_ok, room_ok, t, s)[0]
        cost += stage_cost(q, deficit, demand, weight, hold, t, b)
        s = next_soc(q, s, b)
    return cost + interp(q, value, end, s)


@njit
def best(q, deficit, demand, weight, limit, hold, forced_ok, room_ok, value, k, s):
    """The cheapest power at step ``k`` from SoC ``s``: the candidates of ``Steps.candidates``, in order."""
    lo, hi = bounds(q, deficit, limit, hold, forced_ok, room_ok, k, s)
    if lo == hi:
        return hi, total(q, deficit, demand, weight, hold, value, k, s, hi)
    m = value.shape[1]
    d = deficit[k]
    best_b = greedy(q, deficit, k, s)
    best_j = total(q, deficit, demand, weight, hold, value, k, s, best_b)
    j = total(q, deficit, demand, weight, hold, value, k, s, lo)
    if j < best_j:
        best_b, best_j = lo, j
    j = total(q, deficit, demand, weight, hold, value, k, s, hi)
    if j < best_j:
        best_b, best_j = hi, j
    if lo < 0.0 < hi:
        j = total(q, deficit, demand, weight, hold, value, k, s, 0.0)
        if j < best_j:
            best_b, best_j = 0.0, j
    top = min(hi, 0.0)
    if lo < d < top:
        j = total(q, deficit, demand, weight, hold, value, k, s, d)
        if j < best_j:
            best_b, best_j = d, j
    if hi > 0.0:
        a = max(lo, 0.0)
        x_top = position(q, s - a * q[Q_SOC_PER_KW_DIS])
        x_bot = position(q, s - hi * q[Q_SOC_PER_KW_DIS])
        for i in range(min(math.floor(x_top), m - 1), max(math.floor(x_bot), -1), -1):
            b = (s - node(q, i)) / q[Q_SOC_PER_KW_DIS]
            if a < b < hi:
                j = total(q, deficit, demand, weight, hold, value, k, s, b)
                if j < best_j:
                    best_b, best_j = b, j
        for c in range(min(math.floor(x_top), m - 1), max(math.floor(x_bot), -1) - 1, -1):
            if q[Q_LEVELING_PER_KW] <= 0.0:
                break
            slope = (value[k + 1, c + 1] - value[k + 1, c]) * levels_per_soc(q, c) if 0 <= c <= m - 2 else 0.0
            ratio = -slope * q[Q_SOC_PER_KW_DIS] / (q[Q_DT] * weight[k])
            b = d - (ratio - 1.0) / (2.0 * q[Q_LEVELING_PER_KW])
            if a < b < hi:
                j = total(q, deficit, demand, weight, hold, value, k, s, b)
                if j < best_j:
                    best_b, best_j = b, j
    if lo < top:
        x_top = position(q, s - lo * q[Q_SOC_PER_KW_CH])
        x_bot = position(q, s - top * q[Q_SOC_PER_KW_CH])
        for i in range(min(math.floor(x_top), m - 1), max(math.floor(x_bot), -1), -1):
            b = (s - node(q, i)) / q[Q_SOC_PER_KW_CH]
            if lo < b < top:
                j = total(q, deficit, demand, weight, hold, value, k, s, b)
                if j < best_j:
                    best_b, best_j = b, j
        edge = min(d, 0.0)
        for c in range(min(math.floor(x_top), m - 1), max(math.floor(x_bot), -1) - 1, -1):
            slope = (value[k + 1, c + 1] - value[k + 1, c]) * levels_per_soc(q, c) if 0 <= c <= m - 2 else 0.0
            ratio = -slope * q[Q_SOC_PER_KW_CH] / (q[Q_DT] * q[Q_FORCED])
            b = edge - (ratio - 1.0) / (2.0 * q[Q_HALF_PER_KW])
            if lo < b < min(top, edge):
                j = total(q, deficit, demand, weight, hold, value, k, s, b)
                if j < best_j:
                    best_b, best_j = b, j
    return best_b, best_j


@njit
def solve_kernel(dt_h, demand, limit, hold, aux, capacity, soc0, soc_min, soc_max, reserve, ch_max, dis_max,
                 eta_c, eta_d, soc_levels, reserve_level, weights):
    """Backward pass over the SoC grid, then the forward pass from ``soc0``.

    Returns (bess_kw[N], soc[N+1], value[N+1, soc_levels], cost)."""
    n = demand.shape[0]
    m = soc_levels
    q = np.empty(19)
    q[Q_DT], q[Q_AUX], q[Q_CAP] = dt_h, aux, capacity
    q[Q_SOC_MIN], q[Q_SOC_MAX], q[Q_RESERVE] = soc_min, soc_max, reserve
    q[Q_CH_MAX], q[Q_DIS_MAX] = ch_max, dis_max
    q[Q_SOC_PER_KW_DIS] = dt_h / (eta_d * capacity)
    q[Q_SOC_PER_KW_CH] = dt_h * eta_c / capacity
    q[Q_KW_PER_SOC_DIS] = capacity * eta_d / dt_h
    q[Q_KW_PER_SOC_CH] = capacity / (eta_c * dt_h)
    q[Q_HALF_PER_KW] = 0.5 / dis_max
    q[Q_LEVELING_PER_KW] = weights[W_LEVELING] * q[Q_HALF_PER_KW]
    q[Q_FORCED], q[Q_SHORTFALL] = weights[W_FORCED], weights[W_SHORTFALL]
    terminal = weights[W_TERMINAL]
    r = reserve_level  # the grid: r cells up to the reserve, m - 1 - r above (Steps.__init__)
    levels_high = (m - 1 - r) / (soc_max - reserve) if r < m - 1 else 0.0
    levels_low = r / (reserve - soc_min) if r > 0 else levels_high
    if r == m - 1:
        levels_high = levels_low
    q[Q_R], q[Q_LEVELS_LOW], q[Q_LEVELS_HIGH] = r, levels_low, levels_high
    deficit = np.empty(n)
    weight = np.empty(n)
    for k in range(n):
        deficit[k] = demand[k] + aux - limit[k]
        weight[k] = 1.0 + weights[W_TIME_PREFERENCE] * ((n - k) * dt_h)
    forced_ok = np.zeros(n, dtype=np.bool_)
    room_ok = np.zeros(n, dtype=np.bool_)
    energy = False
    room = False
    for k in range(n - 1, -1, -1):
        forced_ok[k] = energy
        room_ok[k] = room
        if hold[k]:
            energy = energy or deficit[k] > 0.0
            room = room or deficit[k] < 0.0

    value = np.empty((n + 1, m))
    for i in range(m):
        value[n, i] = -terminal * (node(q, i) - soc_min) * capacity
    end = n  # the step after the hold window that contains step k
    for k in range(n - 1, -1, -1):
        if not hold[k]:
            end = k
        if hold[k] and (k == 0 or not hold[k - 1]):
            for i in range(m):
                value[k, i] = through_window(q, deficit, demand, weight, limit, hold, forced_ok, room_ok, value,
                                             k, end, node(q, i))
        else:
            for i in range(m):
                value[k, i] = best(q, deficit, demand, weight, limit, hold, forced_ok, room_ok, value, k,
                                   node(q, i))[1]

    bess = np.empty(n)
    soc = np.empty(n + 1)
    s = soc0
    cost = 0.0
    for k in range(n):
        soc[k] = s
        b = best(q, deficit, demand, weight, limit, hold, forced_ok, room_ok, value, k, s)[0]
        bess[k] = b
        cost += stage_cost(q, deficit, demand, weight, hold, k, b)
        s = next_soc(q, s, b)
    soc[n] = s
    cost += -terminal * (s - soc_min) * capacity
    return bess, soc, value, cost


def solve(p: Problem) -> Solution:
    """The compiled solve of ``p`` (same result as ``reference.solve``)."""
    bess, soc, value, cost = solve_kernel(*p.args())
    return Solution(bess, soc, value, float(cost))
