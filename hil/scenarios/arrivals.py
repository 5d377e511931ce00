"""The vehicles of a run and the gun each one gets.

Vehicles come from the explicit ``arrivals:`` list and from the seeded random model (``random_arrivals:``):
a Poisson process whose rate follows the local time of day, each arrival drawn from a weighted mix.
Two independent random streams are used, one for arrival times and one for what each vehicle is, so
editing the rate profile moves vehicles in time without changing who they are, and a longer run only adds
vehicles at the end. Python's ``random.Random`` is used with string seeds: its sequence is stable across
Python versions and platforms (it does not depend on hash randomisation or NumPy's generator policy).

A vehicle stays plugged from arrival to departure whatever the controller does, so the gun assignment does
not depend on the policy and is done here, once, in arrival order:

1. the first free gun of the vehicle's ``guns`` preference list (a V2G vehicle: only bidirectional ones);
2. else the best free gun whose ratings fit (:func:`fits`), ranked by :func:`gun_rank`: a V2G vehicle on a
   bidirectional gun; the smallest gun that covers the vehicle's peak power (else the most powerful);
   a vehicle without a V2G offer leaves bidirectional guns to those with one; then station order;
3. no compatible gun free: turned away (gun -1).

A gun is free once its previous vehicle has left (departure <= arrival) and while no ``gun_unavailable``
fault is active on it. A V2G vehicle that can only get a unidirectional gun charges there without its
offer (a unidirectional gun cannot discharge it), so a V2G offer always sits on a bidirectional gun.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hil.plant import V2GOffer, VehicleSpec, car, fast_car, truck
from hil.scenarios.timing import DailySteps, RunClock
from station.config import Gun, StationConfig

if TYPE_CHECKING:
    from hil.scenarios.model import Arrival, MixEntry, RandomArrivals, Scenario

KINDS = {"car": car, "fast_car": fast_car, "truck": truck}
RANDOM_ID_PREFIX = "rnd-"


@dataclass(frozen=True)
class Plug:
    """One vehicle of the run. ``spec.arrival_s``/``departure_s`` are run seconds; ``gun`` indexes
    ``cfg.guns()``, -1 when the vehicle was turned away (no compatible gun free)."""

    spec: VehicleSpec
    gun: int


@dataclass(frozen=True)
class Visit:
    """A vehicle before it has a gun: what it is and which guns it prefers."""

    spec: VehicleSpec
    prefs: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------ vehicles


def build_spec(kind: str, vehicle_id: str, *, overrides: dict[str, float], arrival_s: float, departure_s: float,
               capacity_kwh: float | None = None, initial_soc: float | None = None,
               target_soc: float | None = None, v2g: V2GOffer | None = None) -> VehicleSpec:
    """A vehicle of ``kind`` with the given values; None keeps the kind's default. Raises ValueError."""
    kw: dict[str, Any] = dict(overrides, arrival_s=arrival_s, departure_s=departure_s, v2g=v2g)
    for key, value in (("capacity_kwh", capacity_kwh), ("initial_soc", initial_soc), ("target_soc", target_soc)):
        if value is not None:
            kw[key] = value
    return KINDS[kind](vehicle_id, **kw)


def kind_defaults(kind: str) -> VehicleSpec:
    """The kind's own values (capacity, SoC, BMS), for checks on what a file leaves out."""
    return KINDS[kind]("defaults")


def explicit_visit(a: Arrival, clock: RunClock) -> Visit:
    """An ``arrivals:`` entry as a vehicle. A wall-time departure is the first such time after arrival."""
    arrival = clock.at_s(a.at)
    if a.dwell_s is not None:
        departure = arrival + a.dwell_s
    elif isinstance(a.departure, str):
        departure = arrival + ((clock.at_s(a.departure) - arrival) % 86400.0 or 86400.0)
    else:
        departure = math.inf if a.departure is None else float(a.departure)
    v2g = None if a.v2g is None else V2GOffer(a.v2g.max_discharge_kw, a.v2g.min_soc)
    spec = build_spec(a.kind, a.id, overrides=a.pack_overrides(), arrival_s=arrival, departure_s=departure,
                      capacity_kwh=a.capacity_kwh, initial_soc=a.initial_soc, target_soc=a.target_soc, v2g=v2g)
    return Visit(spec, tuple(a.guns))


def arrival_times(steps: DailySteps, clock: RunClock, duration_s: float, rng: random.Random) -> list[float]:
    """Arrival instants of a Poisson process with the daily rate ``steps`` (per hour) over the run.

    Exact for a piecewise-constant rate: a unit exponential is spent along the cumulative rate, so an
    arrival that a quiet hour does not reach carries over into the next hour."""
    out: list[float] = []
    need = -math.log(1.0 - rng.random())
    for t0, t1, per_hour in steps.segments(clock, 0.0, duration_s):
        rate = per_hour / 3600.0
        if rate <= 0.0:
            continue
        t = t0
        while need <= rate * (t1 - t):
            t += need / rate
            out.append(t)
            need = -math.log(1.0 - rng.random())
        need -= rate * (t1 - t)
    return [r for r in (round(t, 1) for t in out) if r < duration_s]


def _draw(span: tuple[float, float] | None, u: float, digits: int) -> float | None:
    return None if span is None else round(span[0] + (span[1] - span[0]) * u, digits)


def random_visits(ra: RandomArrivals, clock: RunClock, duration_s: float) -> list[Visit]:
    """The seeded random arrivals: ids ``rnd-0001``, ``rnd-0002``, ... in arrival order."""
    times = arrival_times(ra.rate_steps(), clock, duration_s, random.Random(f"{ra.seed}/times"))
    rng = random.Random(f"{ra.seed}/vehicles")
    cumulative: list[float] = []
    for entry in ra.mix:
        cumulative.append((cumulative[-1] if cumulative else 0.0) + entry.weight)
    out = []
    for k, t in enumerate(times, start=1):
        entry: MixEntry = ra.mix[min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(ra.mix) - 1)]
        # always five draws per vehicle, used or not: the stream stays aligned whatever the entry sets
        u_cap, u_init, u_target, u_dwell, u_v2g = (rng.random() for _ in range(5))
        v2g = None
        if entry.v2g is not None and u_v2g < entry.v2g.share:
            v2g = V2GOffer(entry.v2g.max_discharge_kw, entry.v2g.min_soc)
        dwell = _draw(entry.dwell_s, u_dwell, 0)
        assert dwell is not None  # dwell_s is required in a mix entry
        spec = build_spec(
            entry.kind, f"{RANDOM_ID_PREFIX}{k:04d}", overrides=entry.pack_overrides(), arrival_s=t,
            departure_s=t + max(dwell, 1.0), capacity_kwh=_draw(entry.capacity_kwh, u_cap, 1),
            initial_soc=_draw(entry.initial_soc, u_init, 3), target_soc=_draw(entry.target_soc, u_target, 3), v2g=v2g,
        )
        out.append(Visit(spec, tuple(entry.guns)))
    return out


# ------------------------------------------------------------------------------------------ guns


def fits(gun: Gun, spec: VehicleSpec) -> bool:
    """The gun's voltage range covers the vehicle: up to its maximum charging voltage (BCP), down to its
    pack voltage at plug-in."""
    return gun.max_voltage_v >= spec.max_voltage_v and gun.min_voltage_v <= spec.ocv_at(spec.initial_soc)


def peak_kw(spec: VehicleSpec) -> float:
    """Roughly the most the vehicle takes (at low SoC): its current limit or C-rate, at its max voltage."""
    current = min(spec.max_current_a, spec.max_c_rate * spec.capacity_kwh * 1000.0 / spec.ocv_at(0.0))
    return current * spec.max_voltage_v / 1000.0


def gun_rank(gun: Gun, index: int, spec: VehicleSpec) -> tuple[bool, bool, float, bool, int]:
    """Sort key of the fallback choice (smallest first); see the module docstring."""
    v2g = spec.v2g is not None
    covers = gun.max_power_kw >= peak_kw(spec)
    return (v2g and not gun.bidirectional, not covers, gun.max_power_kw if covers else -gun.max_power_kw,
            not v2g and gun.bidirectional, index)


def assign_guns(visits: list[Visit], cfg: StationConfig, down: list[tuple[str, float, float]]) -> list[Plug]:
    """Give each vehicle (in the order given: by arrival) a gun; ``down`` lists (gun id, from_s, to_s) when
    a gun is out of service."""
    guns = cfg.guns()
    index = {g.id: i for i, g in enumerate(guns)}
    free_from = [0.0] * len(guns)  # run second from which the gun is free again
    out = []
    for v in visits:
        t = v.spec.arrival_s
        busy = {index[gid] for gid, t0, t1 in down if t0 <= t < t1 and gid in index}
        free = [free_from[g] <= t and g not in busy for g in range(len(guns))]
        g = _choose(v, guns, index, free)
        spec = v.spec
        if g >= 0:
            free_from[g] = spec.departure_s
            if spec.v2g is not None and not guns[g].bidirectional:
                spec = replace(spec, v2g=None)
        out.append(Plug(spec, g))
    return out


def _choose(v: Visit, guns: list[Gun], index: dict[str, int], free: list[bool]) -> int:
    spec = v.spec
    for gid in v.prefs:
        if gid not in index:
            raise ValueError(f"{spec.vehicle_id}: preferred gun '{gid}' is not in this station")
        g = index[gid]
        if free[g] and fits(guns[g], spec) and (spec.v2g is None or guns[g].bidirectional):
            return g
    candidates = [g for g in range(len(guns)) if free[g] and fits(guns[g], spec)]
    if not candidates:
        return -1
    return min(candidates, key=lambda g: gun_rank(guns[g], g, spec))


def plan_plugs(scn: Scenario, cfg: StationConfig) -> list[Plug]:
    """Every vehicle of ``scn`` with its gun, sorted by arrival (explicit before random on a tie)."""
    clock = scn.clock
    visits = [explicit_visit(a, clock) for a in scn.arrivals]
    if scn.random_arrivals is not None:
        visits += random_visits(scn.random_arrivals, clock, scn.duration_s)
    visits.sort(key=lambda v: v.spec.arrival_s)  # stable: file order on a tie
    down = [(f.target, scn.at_s(f.at), scn.at_s(f.at) + f.duration_s) for f in scn.faults
            if f.kind == "gun_unavailable" and f.target is not None]
    return assign_guns(visits, cfg, down)
