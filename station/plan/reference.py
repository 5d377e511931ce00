"""The horizon solve in plain Python: the readable specification of ``kernel.py``.

A dynamic programme over the battery's state of charge (problem.py says what is minimised):

1. **Grid.** ``soc_levels`` SoC points from ``soc_min`` to ``soc_max``, evenly spaced below and above
   the reserve, which is a point itself: the kernel stops carrying vehicles there, so the cost-to-go
   has a kink there that interpolation must not smear. The cost-to-go ``V[k]`` is known on the points
   and linearly interpolated between them, so the battery's true SoC never has to sit on a point
   (1-minute steps move a megawatt-hour battery by less than one).
2. **Backward pass.** ``V[N]`` is minus the value of the energy left. For each step from the last and
   each grid SoC, the best battery power among what the kernel can be made to do from there
   (``Steps.bounds``) is found exactly for the interpolated ``V[k+1]``: between the powers that land on
   grid points the objective is linear or a convex quadratic, so its minimum is at one of a short list
   of candidates (``Steps.candidates``). A hold step has one power - what the kernel does to hold the
   grid - so at its first step a window is followed exactly to its end from each grid SoC
   (``Steps.through_window``).
3. **Forward pass.** From the measured SoC, each step takes the best power the same way; the SoC is
   carried exactly (never rounded to the grid).

The Numba kernel mirrors this function by function with the same arithmetic in the same order, so the
two agree to the last bit on the same input (tests/plan).
"""

from __future__ import annotations

import math

import numpy as np

from station.plan.problem import Problem, Solution


class Steps:
    """The problem with the per-step and per-SoC constants worked out once (products, not divisions, in
    the inner loops; the kernel keeps the same numbers in its ``q`` array)."""

    def __init__(self, p: Problem) -> None:
        n, m = p.steps, p.soc_levels
        self.p = p
        self.deficit = [float(p.demand_kw[k]) + p.aux_kw - float(p.limit_kw[k]) for k in range(n)]
        w = p.weights
        self.weight = [1.0 + w.time_preference * ((n - k) * p.dt_h) for k in range(n)]
        self.hold = [bool(h) for h in p.hold]
        self.demand = [float(x) for x in p.demand_kw]
        self.limit = [float(x) for x in p.limit_kw]
        self.soc_per_kw_dis = p.dt_h / (p.discharge_efficiency * p.capacity_kwh)  # SoC per kW for one step
        self.soc_per_kw_ch = p.dt_h * p.charge_efficiency / p.capacity_kwh
        self.kw_per_soc_dis = p.capacity_kwh * p.discharge_efficiency / p.dt_h
        self.kw_per_soc_ch = p.capacity_kwh / (p.charge_efficiency * p.dt_h)
        self.half_per_kw = 0.5 / p.max_discharge_kw
        self.leveling_per_kw = w.leveling * self.half_per_kw
        # the grid: r cells of ``low`` SoC up to the reserve, m - 1 - r cells of ``high`` SoC above it
        self.r = p.reserve_level()
        self.levels_high = (m - 1 - self.r) / (p.soc_max - p.reserve_soc) if self.r < m - 1 else 0.0
        self.levels_low = self.r / (p.reserve_soc - p.soc_min) if self.r > 0 else self.levels_high
        if self.r == m - 1:
            self.levels_high = self.levels_low
        # choices the kernel offers only serve a hold step still ahead: charging harder than the headroom
        # (a hold that needs energy), charging less than the headroom (a hold that needs room)
        self.forced_ok = [False] * n
        self.room_ok = [False] * n
        energy, room = False, False
        for k in range(n - 1, -1, -1):
            self.forced_ok[k], self.room_ok[k] = energy, room
            if self.hold[k]:
                energy = energy or self.deficit[k] > 0.0
                room = room or self.deficit[k] < 0.0

    # ---- the SoC grid -----------------------------------------------------------------------------

    def node(self, j: int) -> float:
        """SoC of grid point ``j``."""
        p = self.p
        if j <= self.r:
            return p.soc_min + j / self.levels_low
        return p.reserve_soc + (j - self.r) / self.levels_high

    def position(self, s: float) -> float:
        """Where ``s`` lies on the grid, in points (fractional)."""
        p = self.p
        if s < p.reserve_soc:
            return (s - p.soc_min) * self.levels_low
        return self.r + (s - p.reserve_soc) * self.levels_high

    def levels_per_soc(self, c: int) -> float:
        """Grid points per unit of SoC in cell ``c`` (between points ``c`` and ``c + 1``)."""
        return self.levels_low if c < self.r else self.levels_high

    def interp(self, row: list[float], s: float) -> float:
        """``row`` (values on the SoC grid) at ``s``, linear between grid points, flat outside."""
        m = self.p.soc_levels
        x = self.position(s)
        if x <= 0.0:
            return row[0]
        if x >= m - 1:
            return row[m - 1]
        j = int(x)
        f = x - j
        return row[j] + f * (row[j + 1] - row[j])

    # ---- the battery and the kernel -------------------------------------------------------------

    def charge_limit(self, s: float) -> float:
        """Most charging power (AC) this step from SoC ``s``: the rating, and no further than ``soc_max``."""
        return max(0.0, min(self.p.max_charge_kw, (self.p.soc_max - s) * self.kw_per_soc_ch))

    def discharge_limit(self, s: float, floor: float) -> float:
        """Most discharging power (AC) this step from SoC ``s`` without going below ``floor``."""
        return max(0.0, min(self.p.max_discharge_kw, (s - floor) * self.kw_per_soc_dis))

    def next_soc(self, s: float, b: float) -> float:
        if b >= 0.0:
            return s - b * self.soc_per_kw_dis
        return s - b * self.soc_per_kw_ch

    def greedy(self, k: int, s: float) -> float:
        """What the kernel does by itself at a normal step without a plan: carry the deficit down to the
        reserve, or recharge from the headroom."""
        d = self.deficit[k]
        if d > 0.0:
            return min(d, self.discharge_limit(s, self.p.reserve_soc))
        return -min(-d, self.charge_limit(s))

    def bounds(self, k: int, s: float) -> tuple[float, float]:
        """The battery powers the kernel can be made to produce at step ``k`` from SoC ``s``: ``[lo, hi]``.

        Normal step: up to the deficit above the cap, within the support limit above the reserve
        (``support_max_kw`` limits it further); the headroom recharge, or less towards a ``soc_target``
        when a hold ahead needs room; down to charging with every vehicle curtailed (``charge_min_kw``)
        when a hold ahead needs energy. Hold step: exactly the kernel's holding power."""
        p = self.p
        d = self.deficit[k]
        if self.hold[k]:
            b = min(max(d, -self.charge_limit(s)), self.discharge_limit(s, p.soc_min))
            return b, b
        g = self.greedy(k, s)
        forced = -min(self.charge_limit(s), max(self.limit[k] - p.aux_kw, 0.0))
        if d > 0.0:
            return (forced if self.forced_ok[k] else 0.0), g
        return (forced if self.forced_ok[k] else g), (0.0 if self.room_ok[k] else g)

    def stage_cost(self, k: int, b: float) -> float:
        """Cost of battery power ``b`` at step ``k`` (see problem.py)."""
        d = self.deficit[k]
        if self.hold[k]:
            r = d - b
            if r >= 0.0:
                u = min(r, self.demand[k])
                penalty = self.p.weights.shortfall * (r - u)
            else:
                u = 0.0
                penalty = self.p.weights.shortfall * -r
        elif b >= 0.0:
            u = max(d - b, 0.0)
            penalty = 0.0
        else:
            u = max(d, 0.0)
            f = max(min(d, 0.0) - b, 0.0)  # charged beyond the headroom: vehicles curtailed for it
            penalty = self.p.weights.forced * (f + f * f * self.half_per_kw)
        return self.p.dt_h * (self.weight[k] * (u + u * u * self.leveling_per_kw) + penalty)

    # ---- one step of the programme --------------------------------------------------------------

    def candidates(self, k: int, s: float, lo: float, hi: float, row: list[float]) -> list[float]:
        """Every power that can minimise ``stage cost + row(next SoC)`` over ``[lo, hi]``, in a fixed
        order (the first of equal costs wins, so the kernel's own choice comes first).

        Between the powers that land the next SoC on a grid point, the interpolated cost-to-go is linear
        in the power; the stage cost is a convex quadratic on the discharge side, zero on the charge side
        while the headroom lasts and a convex quadratic beyond it. So the minimum is at a grid crossing,
        a kink, an end, or where a quadratic's slope cancels the cost-to-go's slope: all are listed."""
        p = self.p
        m = p.soc_levels
        d = self.deficit[k]
        out = [self.greedy(k, s), lo, hi]
        if lo < 0.0 < hi:
            out.append(0.0)
        top = min(hi, 0.0)
        if lo < d < top:
            out.append(d)  # the headroom ends: charging beyond it curtails vehicles
        if hi > 0.0:
            a = max(lo, 0.0)
            x_top = self.position(s - a * self.soc_per_kw_dis)
            x_bot = self.position(s - hi * self.soc_per_kw_dis)
            for j in range(min(math.floor(x_top), m - 1), max(math.floor(x_bot), -1), -1):
                b = (s - self.node(j)) / self.soc_per_kw_dis
                if a < b < hi:
                    out.append(b)
            for c in range(min(math.floor(x_top), m - 1), max(math.floor(x_bot), -1) - 1, -1):
                if self.leveling_per_kw <= 0.0:
                    break  # a linear cost: the ends and crossings are all
                slope = (row[c + 1] - row[c]) * self.levels_per_soc(c) if 0 <= c <= m - 2 else 0.0
                ratio = -slope * self.soc_per_kw_dis / (p.dt_h * self.weight[k])
                b = d - (ratio - 1.0) / (2.0 * self.leveling_per_kw)
                if a < b < hi:
                    out.append(b)
        if lo < top:
            x_top = self.position(s - lo * self.soc_per_kw_ch)
            x_bot = self.position(s - top * self.soc_per_kw_ch)
            for j in range(min(math.floor(x_top), m - 1), max(math.floor(x_bot), -1), -1):
                b = (s - self.node(j)) / self.soc_per_kw_ch
                if lo < b < top:
                    out.append(b)
            edge = min(d, 0.0)  # below this power the charging curtails vehicles, at a convex cost
            for c in range(min(math.floor(x_top), m - 1), max(math.floor(x_bot), -1) - 1, -1):
                slope = (row[c + 1] - row[c]) * self.levels_per_soc(c) if 0 <= c <= m - 2 else 0.0
                ratio = -slope * self.soc_per_kw_ch / (p.dt_h * p.weights.forced)
                b = edge - (ratio - 1.0) / (2.0 * self.half_per_kw)
                if lo < b < min(top, edge):
                    out.append(b)
        return out

    def through_window(self, k: int, end: int, s: float, row: list[float]) -> float:
        """Cost-to-go from SoC ``s`` at hold step ``k`` to step ``end`` (the first after the window) and on.

        A window leaves the battery no choice, so the trajectory is followed exactly and interpolated once,
        at ``end``: step-by-step interpolation would smear the window's shortfall kink over several grid
        cells (numerical diffusion) and the plan would charge more than the window needs. Only the
        window's first step needs this: no decision looks at the cost-to-go inside a window."""
        cost = 0.0
        for t in range(k, end):
            b = self.bounds(t, s)[0]
            cost += self.stage_cost(t, b)
            s = self.next_soc(s, b)
        return cost + self.interp(row, s)

    def total(self, k: int, s: float, b: float, row: list[float]) -> float:
        return self.stage_cost(k, b) + self.interp(row, self.next_soc(s, b))

    def best(self, k: int, s: float, row: list[float]) -> tuple[float, float]:
        """The cheapest power at step ``k`` from SoC ``s`` against cost-to-go ``row`` (exact for the
        interpolated cost-to-go), and its cost."""
        lo, hi = self.bounds(k, s)
        if lo == hi:
            return hi, self.total(k, s, hi, row)
        best_b = hi
        best_j = math.inf
        for b in self.candidates(k, s, lo, hi, row):
            j = self.total(k, s, b, row)
            if j < best_j:
                best_b, best_j = b, j
        return best_b, best_j


def solve(p: Problem) -> Solution:
    """Backward pass over the SoC grid, then the forward pass from ``soc0``."""
    st = Steps(p)
    n, m = p.steps, p.soc_levels
    grid = [st.node(j) for j in range(m)]
    value = [[0.0] * m for _ in range(n + 1)]
    value[n] = [-p.weights.terminal_value * (s - p.soc_min) * p.capacity_kwh for s in grid]
    end = n  # the step after the hold window that contains step k
    for k in range(n - 1, -1, -1):
        if not p.hold[k]:
            end = k
        if p.hold[k] and (k == 0 or not p.hold[k - 1]):  # where a window starts, the decisions before it look
            value[k] = [st.through_window(k, end, s, value[end]) for s in grid]
        else:  # inside a window no decision looks, and the kernel's step is cheap
            value[k] = [st.best(k, s, value[k + 1])[1] for s in grid]

    bess = [0.0] * n
    soc = [0.0] * (n + 1)
    s = p.soc0
    cost = 0.0
    for k in range(n):
        soc[k] = s
        b = st.best(k, s, value[k + 1])[0]
        bess[k] = b
        cost += st.stage_cost(k, b)
        s = st.next_soc(s, b)
    soc[n] = s
    cost += -p.weights.terminal_value * (s - p.soc_min) * p.capacity_kwh
    return Solution(np.array(bess), np.array(soc), np.array(value), cost)
