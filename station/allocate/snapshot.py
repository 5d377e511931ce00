"""The JSON snapshot of one cycle (``station allocate``) and the decision as JSON.

The format is documented in docs/allocation.md. Only ``dt_s``, ``grid.import_limit_kw`` and the guns'
``id`` are required; everything else has the defaults of the data model (no BESS, no modules, no
losses, no ramp). Unknown keys are errors, reported with their key path like the station file.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, ValidationError, model_validator

from station.allocate.model import (
    Allocation, AllocationInput, BessInput, Flag, GridInput, GunInput, ModuleInput, Params,
)
from station.config import ConfigError, ConfigIssue, Section, issues_from_validation_error

NAN = math.nan


def _num(v: float | None, default: float) -> float:
    return default if v is None else float(v)


class GridJson(Section):
    import_limit_kw: float = Field(ge=0)
    export_limit_kw: float = Field(default=0.0, ge=0)
    target_kw: float | None = None
    ramp_kw_per_s: float | None = Field(default=None, gt=0)
    last_kw: float | None = None


class BessJson(Section):
    soc: float = Field(ge=0, le=1)
    capacity_kwh: float = Field(gt=0)
    soc_min: float = Field(default=0.05, ge=0, le=1)
    soc_max: float = Field(default=0.95, ge=0, le=1)
    reserve_soc: float = Field(default=0.2, ge=0, le=1)
    max_charge_kw: float = Field(ge=0)
    max_discharge_kw: float = Field(ge=0)
    charge_efficiency: float = Field(default=1.0, gt=0, le=1)
    discharge_efficiency: float = Field(default=1.0, gt=0, le=1)
    available: bool = True
    soc_target: float | None = Field(default=None, ge=0, le=1)
    support_max_kw: float | None = Field(default=None, ge=0)
    charge_min_kw: float = Field(default=0.0, ge=0)


class GunJson(Section):
    id: str = Field(min_length=1)
    demand_kw: float = Field(default=0.0, ge=0)
    max_kw: float | None = Field(default=None, gt=0, description="the gun's rating (at the present voltage)")
    vehicle_max_kw: float | None = Field(default=None, ge=0)
    v2g_available_kw: float = Field(default=0.0, ge=0)
    priority: int = Field(default=1, ge=1, le=9)
    voltage_v: float | None = Field(default=None, gt=0)
    efficiency: float = Field(default=1.0, gt=0, le=1)
    measured_kw: float | None = None
    prev_alloc_kw: float | None = None
    under_s: float = Field(default=0.0, ge=0)
    draw_cap_kw: float | None = Field(default=None, ge=0)


class ModuleJson(Section):
    id: str = Field(min_length=1)
    rated_kw: float = Field(gt=0)
    guns: list[str] = Field(min_length=1, description="guns it can be switched to")
    max_current_a: float | None = Field(default=None, gt=0)
    min_voltage_v: float = Field(default=0.0, ge=0)
    max_voltage_v: float | None = Field(default=None, gt=0)
    available: bool = True
    gun: str | None = None
    current_a: float = 0.0
    draining: bool = False
    surplus_s: float = Field(default=0.0, ge=0)


class ParamsJson(Section):
    closed_loop_settle_s: float = Field(default=Params.closed_loop_settle_s, ge=0)
    closed_loop_margin_kw: float = Field(default=Params.closed_loop_margin_kw, ge=0)
    closed_loop_tolerance_kw: float = Field(default=Params.closed_loop_tolerance_kw, ge=0)
    module_release_hold_s: float = Field(default=Params.module_release_hold_s, ge=0)
    module_release_margin_kw: float = Field(default=Params.module_release_margin_kw, ge=0)
    module_idle_current_a: float = Field(default=Params.module_idle_current_a, gt=0)


class SnapshotJson(Section):
    dt_s: float = Field(gt=0, le=60)
    grid: GridJson
    guns: list[GunJson] = Field(min_length=1)
    bess: BessJson | None = None
    aux_load_kw: float = Field(default=0.0, ge=0)
    modules: list[ModuleJson] = Field(default_factory=list)
    params: ParamsJson = ParamsJson()

    @model_validator(mode="after")
    def _references(self) -> "SnapshotJson":
        ids = [g.id for g in self.guns]
        if len(set(ids)) != len(ids):
            raise ValueError("gun ids must be unique")
        for m in self.modules:
            for gid in m.guns + ([m.gun] if m.gun else []):
                if gid not in ids:
                    raise ValueError(f"module '{m.id}' refers to unknown gun '{gid}'")
            if m.gun and m.gun not in m.guns:
                raise ValueError(f"module '{m.id}' is switched to '{m.gun}', which is not in its guns")
        return self


def parse_snapshot(data: Any, source: str = "snapshot") -> AllocationInput:
    """Validate a JSON snapshot and build the allocation input; raises ConfigError with key paths."""
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue("(top level)", "must be a JSON object")], source)
    try:
        s = SnapshotJson.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation_error(exc), source) from None
    index = {g.id: i for i, g in enumerate(s.guns)}
    guns = tuple(
        GunInput(
            id=g.id, demand_kw=g.demand_kw, vehicle_max_kw=_num(g.vehicle_max_kw, math.inf),
            gun_max_kw=_num(g.max_kw, math.inf), v2g_kw=g.v2g_available_kw, priority=g.priority,
            voltage_v=_num(g.voltage_v, NAN), efficiency=g.efficiency, measured_kw=_num(g.measured_kw, NAN),
            prev_alloc_kw=_num(g.prev_alloc_kw, NAN), under_s=g.under_s, draw_cap_kw=_num(g.draw_cap_kw, math.inf),
        )
        for g in s.guns
    )
    modules = tuple(
        ModuleInput(
            id=m.id, rated_kw=m.rated_kw, allowed=tuple(sorted(index[x] for x in set(m.guns))),
            max_current_a=_num(m.max_current_a, math.inf), min_voltage_v=m.min_voltage_v,
            max_voltage_v=_num(m.max_voltage_v, math.inf), available=m.available,
            gun=index[m.gun] if m.gun else -1, current_a=m.current_a, draining=m.draining, surplus_s=m.surplus_s,
        )
        for m in s.modules
    )
    b = s.bess
    bess = BessInput() if b is None else BessInput(
        soc=b.soc, capacity_kwh=b.capacity_kwh, soc_min=b.soc_min, soc_max=b.soc_max, reserve_soc=b.reserve_soc,
        max_charge_kw=b.max_charge_kw, max_discharge_kw=b.max_discharge_kw, charge_efficiency=b.charge_efficiency,
        discharge_efficiency=b.discharge_efficiency, available=b.available, soc_target=_num(b.soc_target, NAN),
        support_max_kw=_num(b.support_max_kw, NAN), charge_min_kw=b.charge_min_kw,
    )
    gr = s.grid
    grid = GridInput(
        import_limit_kw=gr.import_limit_kw, export_limit_kw=gr.export_limit_kw, target_kw=_num(gr.target_kw, NAN),
        ramp_kw_per_s=_num(gr.ramp_kw_per_s, NAN), last_kw=_num(gr.last_kw, NAN),
    )
    return AllocationInput(dt_s=s.dt_s, grid=grid, guns=guns, bess=bess, aux_load_kw=s.aux_load_kw,
                           modules=modules, params=Params(**s.params.model_dump()))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def decision_json(inp: AllocationInput, out: Allocation) -> dict[str, Any]:
    """The decision with the signs of docs/allocation.md; infinities (no limit) become null."""
    ids = [g.id for g in inp.guns]
    return {
        "guns": [
            {
                "id": r.id,
                "power_kw": r.power_kw,
                "bound_by": r.bound_by.label,
                "demand_kw": g.demand_kw,
                "module_cap_kw": _finite(r.module_cap_kw),
                "state": {"under_s": r.under_s, "draw_cap_kw": _finite(r.draw_cap_kw)},
            }
            for g, r in zip(inp.guns, out.guns)
        ],
        "bess_kw": out.bess_kw,
        "grid_import_kw": out.grid_kw,
        "unserved_kw": out.unserved_kw,
        "shortfall_kw": out.shortfall_kw,
        "flags": [f.name.lower() for f in Flag if f in out.flags],
        "modules": [
            {"id": r.id, "gun": ids[r.gun] if r.gun >= 0 else None, "draining": r.draining, "surplus_s": r.surplus_s}
            for r in out.modules
        ],
    }


def explain(inp: AllocationInput, out: Allocation) -> str:
    """One line per gun and a station line: what each got and why, for a person at a terminal."""
    why = {
        "vehicle": "what its vehicle asks or can take",
        "gun": "the gun's rating",
        "modules": "the power modules switched to it",
        "grid": "the grid cap" + (" / dispatch target" if not math.isnan(inp.grid.target_kw) else ""),
        "ramp": "the grid ramp limit",
        "priority": "higher-priority guns took the power first",
    }
    lines = []
    for g, r in zip(inp.guns, out.guns):
        verb = "discharges" if r.power_kw < 0 else "gets"
        lines.append(
            f"{r.id:<8} {verb} {abs(r.power_kw):8.1f} kW of {g.demand_kw:7.1f} asked (prio {g.priority}): "
            f"{why[r.bound_by.label]}"
        )
    sign = "discharges" if out.bess_kw > 0 else "charges"
    lines.append(
        f"grid import {out.grid_kw:.1f} kW (cap {inp.grid.import_limit_kw:g}), BESS {sign} {abs(out.bess_kw):.1f} kW, "
        f"aux {inp.aux_load_kw:g} kW, unserved {out.unserved_kw:.1f} kW"
        + (f", shortfall {out.shortfall_kw:.1f} kW" if out.shortfall_kw > 0 else "")
    )
    flags = [f.name.lower() for f in Flag if f in out.flags]
    if flags:
        lines.append("flags: " + ", ".join(flags))
    return "\n".join(lines)
