"""A scripted minute-by-minute world for the planner tests: the real allocation kernel decides each
minute, with or without the planner's BESS settings, and the battery integrates what it commanded.

The script is vehicle demand per minute in constant blocks and dispatch windows. The planner sees the
block in progress as a session that asks for the block's demand until the block ends; later blocks only
through the station's arrival profile. A vehicle curtailed in a minute does not come back for that
energy (it is lost), as the planner's forecast assumes; plan and myopic kernel are compared on these
same terms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from station.allocate import AllocationInput, BessInput, GridInput, GunInput, allocate
from station.config import StationConfig
from station.plan import Planner, Window
from tests.plan.stations import observe

STEP_S = 60.0


@dataclass
class Run:
    soc: list[float] = field(default_factory=list)  # at the start of each minute, then the end
    bess_kw: list[float] = field(default_factory=list)
    unserved_kw: list[float] = field(default_factory=list)  # vehicle demand not served, per minute
    shortfall_kw: list[float] = field(default_factory=list)  # |grid - target| not closed, per minute
    charge_min_kw: list[float] = field(default_factory=list)

    def kwh(self, series: list[float]) -> float:
        return float(np.sum(series)) * STEP_S / 3600.0


def window_at(schedule: Sequence[Window], t: float) -> Window | None:
    active = [w for w in schedule if w.start_s <= t < w.end_s]
    return max(active, key=lambda w: w.start_s) if active else None


def block_end(demand: Sequence[float], k: int) -> int:
    """First minute after ``k`` with a different demand (the end of the block in progress)."""
    j = k
    while j < len(demand) and demand[j] == demand[k]:
        j += 1
    return j


def run(cfg: StationConfig, demand_kw: Sequence[float], schedule: Sequence[Window], soc0: float,
        planned: bool) -> Run:
    """Minute by minute over ``demand_kw``: the kernel alone (myopic) or with the planner's settings."""
    assert cfg.bess is not None
    b = cfg.bess
    planner = Planner(cfg, start_hour=0.0) if planned else None
    out = Run()
    soc = soc0
    for k, demand in enumerate(demand_kw):
        t = k * STEP_S
        w = window_at(schedule, t)
        cap = cfg.import_cap_kw if w is None else min(cfg.import_cap_kw, w.import_limit_kw)
        export = cfg.dispatch.fallback_export_limit_kw if w is None else w.export_limit_kw
        target = math.nan if w is None else w.target_kw
        plan_fields = {}
        if planner is not None:
            session = [(0, demand, math.nan, block_end(demand_kw, k) * STEP_S)] if demand else []
            obs = observe(cfg, t_s=t, soc=soc, sessions=session, import_cap_kw=cap, target_kw=target)
            obs.export_cap_kw = export
            assert planner.due(t)
            plan = planner.plan(obs, schedule)
            plan_fields = dict(soc_target=plan.soc_target, support_max_kw=plan.support_max_kw,
                               charge_min_kw=plan.charge_min_kw)
            out.charge_min_kw.append(plan.charge_min_kw)
        inp = AllocationInput(
            dt_s=STEP_S, grid=GridInput(import_limit_kw=cap, export_limit_kw=export, target_kw=target),
            guns=(GunInput("G1", demand_kw=demand, vehicle_max_kw=demand, gun_max_kw=300.0),),
            bess=BessInput(soc=soc, capacity_kwh=b.capacity_kwh, soc_min=b.soc_min, soc_max=b.soc_max,
                           reserve_soc=b.reserve_soc, max_charge_kw=b.max_charge_kw,
                           max_discharge_kw=b.max_discharge_kw, charge_efficiency=b.charge_efficiency,
                           discharge_efficiency=b.discharge_efficiency, available=True, **plan_fields),
            aux_load_kw=cfg.grid.aux_load_kw,
        )
        a = allocate(inp)
        out.soc.append(soc)
        out.bess_kw.append(a.bess_kw)
        out.unserved_kw.append(a.unserved_kw)
        out.shortfall_kw.append(a.shortfall_kw)
        h = STEP_S / 3600.0
        if a.bess_kw >= 0:
            soc -= a.bess_kw * h / (b.discharge_efficiency * b.capacity_kwh)
        else:
            soc -= a.bess_kw * h * b.charge_efficiency / b.capacity_kwh
    out.soc.append(soc)
    return out
