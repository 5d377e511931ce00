"""The perfect-foresight bound: the most net energy any policy could put into the vehicles of a scenario.

One linear program (scipy's HiGHS) over the whole run at a coarse step (60 s by default), knowing every
arrival, departure, dispatch window and fault in advance. It keeps the station's constraints but relaxes
everything that is not linear, always in the direction that can only *raise* the optimum, so the result is
an upper bound on what the simulator can measure for any policy (docs/baselines.md has the formulation):

* per session: power within the gun's and the vehicle's limits while plugged (a step counts the share of
  it the vehicle is plugged and not faulted); the CC-CV acceptance as concave cuts in the energy already
  delivered, built from the plant's own vehicle model (``acceptance_cuts``); at most the terminal energy
  that takes the pack to its target SoC; V2G discharge only where offered, on a bidirectional gun, down to
  the driver's minimum SoC;
* modules: the switch matrix in flow form over module groups (identical modules with identical allowed
  guns): each step a group's capacity is split over the guns it can reach (integrality relaxed);
* module losses at the plant's best efficiency point (half load), in the grid balance;
* grid: import under the cap in force (time-averaged over the step, dispatch windows included; a
  penalised slack only where even the battery cannot carry the auxiliary load), export under the export cap,
  dispatch targets as equalities with a penalised slack, the ramp limit between step averages;
* BESS: SoC dynamics with charge/discharge efficiency, power and SoC limits, the scenario's initial SoC.

Objective: maximise net energy delivered at the vehicle terminals (charged minus V2G discharged, the
report's ``energy_net_kwh``); tiny tie-breaks prefer cheaper import and less battery throughput.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from hil.plant import ModuleRating, Vehicle, VehicleSpec
from hil.sim.run import _apply_limits
from hil.sim.timeline import Fault, Window, faults_of, windows_of
from station.config import StationConfig
from station.control.observation import Observation

# objective weights per kWh (a kWh delivered counts 1): the operator's target before energy, the cap slack
# far above both. The tie-breaks can never buy back a kWh (each is at most 1e-3 per kWh) but are not tiny
# either: weights of 1e-5 left HiGHS badly scaled and the 24 h hub solved ~6x slower.
TRACKING_PENALTY = 10.0
CAP_SLACK_PENALTY = 1000.0
COST_TIE_BREAK = 1e-3
THROUGHPUT_TIE_BREAK = 1e-3
# acceptance curve: sampled every 0.2 % of SoC, cuts kept until within 0.5 % of the peak power
CURVE_SOC_STEP = 0.002
CUT_TOLERANCE = 0.005


@dataclass
class BoundResult:
    status: str  # "optimal", or HiGHS's message
    energy_delivered_kwh: float  # net at the vehicle terminals, all sessions
    per_session_kwh: dict[str, float]  # vehicle id -> net kWh at the terminals
    step_s: float
    t_s: np.ndarray  # step starts
    grid_kw: np.ndarray  # step averages, > 0 import
    bess_kw: np.ndarray  # > 0 discharge (AC)
    bess_soc: np.ndarray  # at the end of each step (nan without a BESS)
    gun_kw: np.ndarray  # [steps, guns], net at the terminals
    gun_ids: list[str]  # the columns of gun_kw (cfg.guns() order)
    tracking_slack_kwh: float = 0.0  # |grid - target| the LP could not avoid
    cap_slack_kwh: float = 0.0  # import above the cap it could not avoid (aux load with no battery left)
    build_s: float = 0.0
    solve_s: float = 0.0
    n_vars: int = 0
    n_rows: int = 0


# ---- the vehicle's acceptance as concave cuts ---------------------------------------------------------------


@dataclass(frozen=True)
class AcceptanceCuts:
    """Upper bound on a session's power as a function of net terminal energy ``e`` since arrival:
    ``p <= min(p_max, min_j(intercept_j + slope_j * e))`` for ``e <= e_max``."""

    e_max_kwh: float  # terminal energy from the initial to the target SoC along the fastest path
    p_max_kw: float
    slope: np.ndarray  # kW per kWh
    intercept: np.ndarray  # kW


def acceptance_curve(spec: VehicleSpec, gun_max_kw: float, gun_max_a: float,
                     from_soc: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The plant's fastest charge from ``from_soc`` (default: the initial SoC) to the target: samples of
    (terminal energy since the initial SoC, terminal power), and the terminal energy at the target.

    The pack is stepped with ``hil.plant.Vehicle`` at the current it accepts (BCL), capped by the gun's
    current and power ratings, every ``CURVE_SOC_STEP`` of SoC. Charging slower only lowers the heat per
    stored kWh, and acceptance falls with SoC, so at any delivered energy no charge profile meets a
    higher acceptance than this one: the samples bound every feasible profile from above.
    """
    start = spec.initial_soc if from_soc is None else min(from_soc, spec.initial_soc)
    v = Vehicle(spec)
    v.soc = start
    e, p = [], []
    offset = None
    for _ in range(int(2.0 / CURVE_SOC_STEP) + 10):
        if offset is None and v.soc >= spec.initial_soc - 1e-12:
            offset = v.energy_in_kwh
        if v.full:
            break
        i = min(v.accepted_current_a(), gun_max_a, v.current_for_power(gun_max_kw))
        if i <= 0.0:
            break
        e.append(v.energy_in_kwh)
        p.append(v.terminal_voltage_v(i) * i / 1000.0)
        d_soc = min(CURVE_SOC_STEP, spec.target_soc - v.soc)
        if start < spec.initial_soc and v.soc < spec.initial_soc:
            d_soc = min(d_soc, spec.initial_soc - v.soc)  # land exactly on the initial SoC
        v.step(i, max(d_soc, 1e-9) * spec.capacity_kwh * 3.6e6 / (v.ocv_v * i))
    if offset is None:
        offset = v.energy_in_kwh
    e_arr, p_arr = np.array(e) - offset, np.array(p)
    return e_arr, p_arr, max(0.0, v.energy_in_kwh - offset)


def acceptance_cuts(spec: VehicleSpec, gun_max_kw: float, gun_max_a: float,
                    from_soc: float | None = None) -> AcceptanceCuts:
    """Concave cuts over the sampled curve: a subset of its upper concave hull's edges, enough to stay
    within ``CUT_TOLERANCE`` of the peak power above the hull at every sample (every edge line lies on or
    above the hull, so any subset is still an upper bound)."""
    e, p, e_max = acceptance_curve(spec, gun_max_kw, gun_max_a, from_soc)
    if e.size == 0:
        return AcceptanceCuts(0.0, 0.0, np.zeros(0), np.zeros(0))
    e = np.append(e, e_max)
    p = np.append(p, p[-1])  # hold the last power to the target (the drop to 0 is the e_max bound)
    hull = _upper_hull(e, p)
    p_max = float(p.max())
    if len(hull) < 2:
        return AcceptanceCuts(e_max, p_max, np.zeros(0), np.zeros(0))
    x, y = e[hull], p[hull]
    slope = np.diff(y) / np.maximum(np.diff(x), 1e-12)
    intercept = y[:-1] - slope * x[:-1]
    env = np.interp(e, x, y)
    edge_at = np.clip(np.searchsorted(x, e, side="right") - 1, 0, len(slope) - 1)
    chosen = {0, len(slope) - 1}
    while True:
        idx = np.array(sorted(chosen))
        approx = np.min(intercept[idx][:, None] + slope[idx][:, None] * e[None, :], axis=0)
        gap = approx - env
        worst = int(np.argmax(gap))
        if gap[worst] <= CUT_TOLERANCE * p_max or edge_at[worst] in chosen:
            break
        chosen.add(int(edge_at[worst]))
    idx = np.array(sorted(chosen))
    return AcceptanceCuts(e_max, p_max, slope[idx], intercept[idx])


def _upper_hull(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of the upper concave hull of points sorted by x (monotone chain)."""
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a]) >= 0.0:
                hull.pop()  # b lies on or below the chord a-i
            else:
                break
        hull.append(i)
    return hull


# ---- time: steps, limits, faults ----------------------------------------------------------------------------


def _edges(duration_s: float, step_s: float) -> np.ndarray:
    n = int(math.ceil(duration_s / step_s - 1e-9))
    return np.minimum(np.arange(n + 1) * step_s, duration_s)


def _overlap(intervals: Sequence[tuple[float, float]], edges: np.ndarray) -> np.ndarray:
    """Per step, the fraction of it covered by the union of ``intervals`` (assumed disjoint)."""
    lo, hi = edges[:-1], edges[1:]
    out = np.zeros(len(lo))
    for a, b in intervals:
        out += np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None)
    return np.clip(out / np.maximum(hi - lo, 1e-12), 0.0, 1.0)


def _minus(a: float, b: float, holes: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The interval [a, b) without the (possibly overlapping) ``holes``."""
    out = [(a, b)]
    for h0, h1 in holes:
        nxt = []
        for u, v in out:
            if h1 <= u or h0 >= v:
                nxt.append((u, v))
                continue
            if u < h0:
                nxt.append((u, h0))
            if h1 < v:
                nxt.append((h1, v))
        out = nxt
    return out


@dataclass
class _StepLimits:
    cap: np.ndarray
    export: np.ndarray
    target: np.ndarray  # nan: no target over the whole step
    ramp: np.ndarray  # kW/s, the tightest in force during the step


def _step_limits(cfg: StationConfig, windows: list[Window], edges: np.ndarray) -> _StepLimits:
    """The simulator's limits in force (``hil.sim.run._apply_limits``), integrated over each step."""
    points = set(edges.tolist())
    for w in windows:
        points.update(t for t in (w.start_s, w.end_s) if edges[0] < t < edges[-1])
    cuts = np.array(sorted(points))
    n = len(edges) - 1
    cap, export, target = np.zeros(n), np.zeros(n), np.zeros(n)
    has_target = np.ones(n, dtype=bool)
    ramp = np.full(n, math.inf)
    obs = Observation.for_station(cfg)
    for u, v in zip(cuts[:-1], cuts[1:]):
        if v <= u:
            continue
        _apply_limits(obs, cfg, windows, 0.5 * (u + v))
        k = int(np.searchsorted(edges, u, side="right") - 1)
        span = v - u
        cap[k] += obs.import_cap_kw * span
        export[k] += obs.export_cap_kw * span
        if math.isnan(obs.target_kw):
            has_target[k] = False
        else:
            target[k] += obs.target_kw * span
        if not math.isnan(obs.ramp_kw_per_s):
            ramp[k] = min(ramp[k], obs.ramp_kw_per_s)
    dt = np.diff(edges)
    return _StepLimits(cap / dt, export / dt, np.where(has_target, target / dt, math.nan), ramp)


def _fault_intervals(faults: list[Fault], kind: str, target: str | None = None) -> list[tuple[float, float]]:
    return [(f.start_s, f.end_s) for f in faults if f.kind == kind and (target is None or f.target == target)]


# ---- the LP -------------------------------------------------------------------------------------------------


class _Program:
    """Sparse LP assembled block by block: variables with bounds and costs, <= and == rows."""

    def __init__(self) -> None:
        self.lb: list[np.ndarray] = []
        self.ub: list[np.ndarray] = []
        self.cost: list[np.ndarray] = []
        self.n = 0
        self.rows = {"ub": ([], [], [], []), "eq": ([], [], [], [])}  # row, col, val, rhs
        self.m = {"ub": 0, "eq": 0}

    def var(self, n: int, lb: Any = 0.0, ub: Any = math.inf, cost: Any = 0.0) -> np.ndarray:
        idx = np.arange(self.n, self.n + n)
        self.n += n
        self.lb.append(np.broadcast_to(np.asarray(lb, dtype=np.float64), (n,)).copy())
        self.ub.append(np.broadcast_to(np.asarray(ub, dtype=np.float64), (n,)).copy())
        self.cost.append(np.broadcast_to(np.asarray(cost, dtype=np.float64), (n,)).copy())
        return idx

    def add(self, kind: str, rhs: np.ndarray, *terms: tuple[np.ndarray, np.ndarray, Any]) -> None:
        """Rows ``sum(val * x[col]) (<= or ==) rhs``; each term is (local row, column, value) arrays."""
        rhs = np.atleast_1d(np.asarray(rhs, dtype=np.float64))
        r, c, v, b = self.rows[kind]
        base = self.m[kind]
        for rows, cols, vals in terms:
            rows = np.asarray(rows)
            if rows.size == 0:
                continue
            r.append(rows + base)
            c.append(np.asarray(cols))
            v.append(np.broadcast_to(np.asarray(vals, dtype=np.float64), rows.shape))
        b.append(rhs)
        self.m[kind] += len(rhs)

    def matrix(self, kind: str) -> tuple[sparse.csr_matrix | None, np.ndarray | None]:
        r, c, v, b = self.rows[kind]
        if self.m[kind] == 0:
            return None, None
        a = sparse.coo_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))),
                              shape=(self.m[kind], self.n)).tocsr()
        return a, np.concatenate(b)


@dataclass
class _Session:
    vehicle_id: str
    gun: int
    first: int  # step range [first, last)
    last: int
    charge: np.ndarray  # column of c per step in range
    discharge: np.ndarray | None


def perfect_foresight(cfg: StationConfig, plugs: Sequence[Any], scenario: Any, step_s: float = 60.0,
                      keep_reserve: bool = False) -> BoundResult:
    """The bound for ``plugs`` (``hil.scenarios.Plug``: a VehicleSpec and a gun index, -1 turned away) on
    ``scenario`` (its duration, dispatch windows, faults, initial BESS SoC and ``price_at``).

    ``keep_reserve``: the BESS stays at or above the station's ``reserve_soc`` outside dispatch windows
    (the rule our controller follows: vehicles never take the reserve, dispatch may). Off, the bound holds
    for every policy, including those that know no reserve."""
    t0 = time.perf_counter()
    edges = _edges(float(scenario.duration_s), float(step_s))
    n_steps = len(edges) - 1
    dt_s = np.diff(edges)
    dt_h = dt_s / 3600.0
    windows = windows_of(scenario)
    faults = faults_of(scenario) if getattr(scenario, "faults", None) else []
    lim = _step_limits(cfg, windows, edges)
    guns = cfg.guns()
    gun_ids = cfg.gun_ids()
    lp = _Program()

    # module groups (identical modules reaching the same guns) and, per gun, the best loss per kW of the
    # modules that can feed it (the plant's loss curve at its best point, half load)
    allowed = cfg.module_gun_matrix()
    module_ids = cfg.module_ids()
    groups: dict[tuple[Any, ...], list[int]] = {}
    for m, (cab, _) in enumerate(cfg.modules()):
        reach = tuple(g for g, ok in enumerate(allowed[m]) if ok)
        if reach:
            groups.setdefault((tuple(cab.modules.model_dump(exclude={"count"}).items()), reach), []).append(m)
    loss = np.full(len(guns), math.inf)
    for (_, reach), members in groups.items():
        ms = cfg.modules()[members[0]][0].modules
        rating = ModuleRating(rated_kw=ms.rated_kw, efficiency=ms.efficiency)
        best = rating.peak_efficiency_load * ms.rated_kw
        for g in reach:
            loss[g] = min(loss[g], rating.loss_kw(best) / best)

    # sessions
    sessions: list[_Session] = []
    gun_terms: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {g: [] for g in range(len(guns))}  # (steps, cols)
    balance_terms: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for plug in plugs:
        if plug.gun < 0:
            continue
        spec: VehicleSpec = plug.spec
        g = int(plug.gun)
        gun = guns[g]
        holes = _fault_intervals(faults, "gun_unavailable", gun.id)
        on_c = _overlap(_minus(spec.arrival_s, spec.departure_s,
                               holes + _fault_intervals(faults, "vehicle_stops_drawing", gun.id)), edges)
        on_d = _overlap(_minus(spec.arrival_s, spec.departure_s, holes), edges)
        present = np.flatnonzero(_overlap([(spec.arrival_s, spec.departure_s)], edges) > 0.0)
        if present.size == 0:
            continue
        first, last = int(present[0]), int(present[-1]) + 1
        ks = np.arange(first, last)
        n = len(ks)
        offer = spec.v2g if (spec.v2g is not None and gun.bidirectional) else None
        floor_soc = min(spec.initial_soc, offer.min_soc) if offer is not None else None
        cuts = acceptance_cuts(spec, gun.max_power_kw, gun.max_current_a, floor_soc)
        fc, fd = on_c[ks], on_d[ks]
        p_top = min(cuts.p_max_kw, gun.max_power_kw)
        c = lp.var(n, 0.0, fc * p_top, -dt_h[ks])
        d = None
        headroom = 0.0
        if offer is not None:
            d_top = min(offer.max_discharge_kw, gun.max_discharge_kw)
            d = lp.var(n, 0.0, fd * d_top, dt_h[ks])
            headroom = max(0.0, spec.initial_soc - offer.min_soc) * spec.capacity_kwh
        e = lp.var(n, -headroom, cuts.e_max_kwh)  # net terminal energy at the end of each step
        rows = np.arange(n)
        prev = (rows[1:], e[:-1], -1.0)  # e[k] - e[k-1] - (c - d) dt = 0, e before the first step is 0
        lp.add("eq", np.zeros(n), (rows, e, 1.0), prev, (rows, c, -dt_h[ks]),
               *([(rows, d, dt_h[ks])] if d is not None else []))
        # the most energy the session can hold at the start of each step (for dropping cuts that cannot bind)
        most_e = np.minimum(cuts.e_max_kwh, np.concatenate([[0.0], np.cumsum(fc * p_top * dt_h[ks])[:-1]]))
        for alpha, beta in zip(cuts.intercept, cuts.slope):
            # acceptance at the energy reached within the step: e at its start, or with a rising cut the most
            # it could reach (start + c dt) - so a step's average power stays under the curve
            coef_c = 1.0 - fc * beta * dt_h[ks] if beta > 0 else np.ones(n)
            lowest = alpha + beta * (most_e if beta < 0 else -headroom)  # the cut's least value this step
            kk = np.flatnonzero((coef_c > 1e-6) & (fc > 0) & (lowest < p_top))
            r = np.arange(kk.size)
            lp.add("ub", fc[kk] * alpha, (r, c[kk], coef_c[kk]),
                   (r[kk > 0], e[kk[kk > 0] - 1], -fc[kk[kk > 0]] * beta))
        gun_terms[g].append((ks, c))
        if d is not None:
            gun_terms[g].append((ks, d))
        balance_terms.append((ks, c, np.full(n, -(1.0 + loss[g]))))
        if d is not None:
            balance_terms.append((ks, d, np.full(n, 1.0 - loss[g])))
        sessions.append(_Session(spec.vehicle_id, g, first, last, c, d))

    # modules: groups of identical modules reaching the same guns; each step a group's capacity (faulted
    # modules removed) is split into flows to the guns it reaches, and a gun's power is its flows' sum.
    # Flows exist only where a gun has a session (most guns are idle most of the day).
    active = {g: np.unique(np.concatenate([ks for ks, _ in terms])) for g, terms in gun_terms.items() if terms}
    flows: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {g: [] for g in active}  # (steps, columns)
    for (_, reach), members in groups.items():
        ms = cfg.modules()[members[0]][0].modules
        up = np.full(n_steps, float(len(members)))
        for m in members:
            up -= _overlap(_fault_intervals(faults, "module_fault", module_ids[m]), edges)
        used = [g for g in reach if g in active]
        if not used:
            continue
        busy = np.unique(np.concatenate([active[g] for g in used]))
        terms = []
        for g in used:
            x = lp.var(len(active[g]))
            flows[g].append((active[g], x))
            terms.append((np.searchsorted(busy, active[g]), x, 1.0))
        lp.add("ub", up[busy] * ms.rated_kw, *terms)
    for g, steps_g in active.items():
        lp.add("ub", np.zeros(len(steps_g)), *[(np.searchsorted(steps_g, ks), cols, 1.0) for ks, cols in gun_terms[g]],
               *[(np.searchsorted(steps_g, ks), x, -1.0) for ks, x in flows[g]])

    # BESS
    b = cfg.bess
    bess_c = bess_d = soc_e = None
    if b is not None:
        avail = 1.0 - _overlap(_fault_intervals(faults, "bess_unavailable"), edges)
        init = b.initial_soc if getattr(scenario, "bess_initial_soc", None) is None else scenario.bess_initial_soc
        e0 = init * b.capacity_kwh
        lo, hi = min(b.soc_min * b.capacity_kwh, e0), max(b.soc_max * b.capacity_kwh, e0)
        bess_c = lp.var(n_steps, 0.0, avail * b.max_charge_kw, THROUGHPUT_TIE_BREAK * dt_h)
        bess_d = lp.var(n_steps, 0.0, avail * b.max_discharge_kw, THROUGHPUT_TIE_BREAK * dt_h)
        if keep_reserve:
            # below the reserve only in a window, and after one only as fast as the BESS can recharge
            floor = np.full(n_steps, min(b.reserve_soc * b.capacity_kwh, e0))
            refill_kwh_per_s = b.max_charge_kw * b.charge_efficiency / 3600.0
            for w in windows:
                inside = (edges[1:] > w.start_s) & (edges[:-1] < w.end_s)
                floor[inside] = lo
                after = edges[1:] >= w.end_s
                floor[after] = np.minimum(floor[after], lo + refill_kwh_per_s * (edges[1:][after] - w.end_s))
            lo = np.maximum(floor, lo)
        soc_e = lp.var(n_steps, lo, hi)  # stored kWh at the end of each step
        rows = np.arange(n_steps)
        rhs = np.zeros(n_steps)
        rhs[0] = e0
        lp.add("eq", rhs, (rows, soc_e, 1.0), (rows[1:], soc_e[:-1], -1.0),
               (rows, bess_c, -b.charge_efficiency * dt_h), (rows, bess_d, dt_h / b.discharge_efficiency))

    # grid: balance, cap (with slack), export cap, targets, ramp, import cost
    grid = lp.var(n_steps, -lim.export, math.inf)
    steps = np.arange(n_steps)
    terms = [(steps, grid, 1.0)] + [(ks, cols, vals) for ks, cols, vals in balance_terms]
    if bess_c is not None:
        terms += [(steps, bess_d, 1.0), (steps, bess_c, -1.0)]
    lp.add("eq", np.full(n_steps, cfg.grid.aux_load_kw), *terms)
    cap_slack = lp.var(n_steps, 0.0, math.inf, CAP_SLACK_PENALTY * dt_h)
    lp.add("ub", lim.cap, (steps, grid, 1.0), (steps, cap_slack, -1.0))
    tracked = np.flatnonzero(~np.isnan(lim.target))
    slack_up = slack_dn = None
    if tracked.size:
        slack_up = lp.var(tracked.size, 0.0, math.inf, TRACKING_PENALTY * dt_h[tracked])
        slack_dn = lp.var(tracked.size, 0.0, math.inf, TRACKING_PENALTY * dt_h[tracked])
        r = np.arange(tracked.size)
        lp.add("eq", lim.target[tracked], (r, grid[tracked], 1.0), (r, slack_up, -1.0), (r, slack_dn, 1.0))
    span = float(np.max(lim.cap) + np.max(lim.export))
    # between two step averages, at most the ramp times the distance of their centres; where the ramp in
    # force changes (a window opens or closes) the looser one counts: a cap that falls is obeyed at once
    ramp_step = np.maximum(lim.ramp[1:], lim.ramp[:-1]) * 0.5 * (dt_s[1:] + dt_s[:-1])
    binding = np.flatnonzero(ramp_step < span)
    if binding.size:
        r = np.arange(binding.size)
        for sign in (1.0, -1.0):
            lp.add("ub", ramp_step[binding], (r, grid[binding + 1], sign), (r, grid[binding], -sign))
    price = np.array([scenario.price_at(0.5 * (u + v)) for u, v in zip(edges[:-1], edges[1:])], dtype=np.float64)
    if np.any(np.isfinite(price)):
        weight = np.nan_to_num(price) / max(float(np.nanmax(np.abs(price))), 1e-12)
        imp = lp.var(n_steps, 0.0, math.inf, COST_TIE_BREAK * weight * dt_h)
        lp.add("ub", np.zeros(n_steps), (steps, grid, 1.0), (steps, imp, -1.0))

    a_ub, b_ub = lp.matrix("ub")
    a_eq, b_eq = lp.matrix("eq")
    bounds = np.column_stack([np.concatenate(lp.lb), np.concatenate(lp.ub)])
    cost = np.concatenate(lp.cost)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    solve_s = time.perf_counter() - t1
    n_rows = lp.m["ub"] + lp.m["eq"]
    if res.x is None:
        empty = np.full(n_steps, math.nan)
        return BoundResult(status=str(res.message), energy_delivered_kwh=math.nan, per_session_kwh={},
                           step_s=float(step_s), t_s=edges[:-1], grid_kw=empty, bess_kw=empty, bess_soc=empty,
                           gun_kw=np.full((n_steps, len(guns)), math.nan), gun_ids=gun_ids, build_s=build_s,
                           solve_s=solve_s,
                           n_vars=lp.n, n_rows=n_rows)
    x = res.x
    gun_kw = np.zeros((n_steps, len(guns)))
    per_session: dict[str, float] = {}
    for s in sessions:
        ks = np.arange(s.first, s.last)
        net = x[s.charge] - (x[s.discharge] if s.discharge is not None else 0.0)
        gun_kw[ks, s.gun] += net
        per_session[s.vehicle_id] = float(np.sum(net * dt_h[ks]))
    bess_kw = np.zeros(n_steps) if bess_c is None else x[bess_d] - x[bess_c]
    soc = np.full(n_steps, math.nan) if soc_e is None else x[soc_e] / cfg.bess.capacity_kwh  # type: ignore[union-attr]
    tracking = 0.0 if slack_up is None else float(np.sum((x[slack_up] + x[slack_dn]) * dt_h[tracked]))
    return BoundResult(
        status="optimal" if res.status == 0 else str(res.message),
        energy_delivered_kwh=float(sum(per_session.values())), per_session_kwh=per_session, step_s=float(step_s),
        t_s=edges[:-1], grid_kw=x[grid], bess_kw=bess_kw, bess_soc=soc, gun_kw=gun_kw, gun_ids=gun_ids,
        tracking_slack_kwh=tracking, cap_slack_kwh=float(np.sum(x[cap_slack] * dt_h)), build_s=build_s,
        solve_s=solve_s, n_vars=lp.n, n_rows=n_rows,
    )
