"""Hypothesis strategies: random stations and cycle inputs for the allocation tests."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from station.allocate.model import AllocationInput, BessInput, GridInput, GunInput, ModuleInput, Params

NAN = math.nan


@st.composite
def guns(draw: st.DrawFn, n: int, uniform_eff: float | None, with_v2g: bool, closed_loop: bool,
         classes: int = 3) -> tuple[GunInput, ...]:
    out = []
    for i in range(n):
        demand = draw(st.one_of(st.just(0.0), st.floats(0.0, 400.0)))
        v2g = draw(st.one_of(st.just(0.0), st.floats(0.0, 150.0))) if with_v2g else 0.0
        eff = uniform_eff if uniform_eff is not None else draw(st.floats(0.85, 1.0))
        measured, prev, under, draw_cap = NAN, NAN, 0.0, math.inf
        if closed_loop and draw(st.booleans()):
            prev = draw(st.floats(0.0, 400.0))
            measured = draw(st.floats(0.0, 400.0))
            under = draw(st.sampled_from([0.0, 0.5, 1.99, 2.5]))
            draw_cap = draw(st.one_of(st.just(math.inf), st.floats(0.0, 400.0)))
        out.append(
            GunInput(
                id=f"G{i}",
                demand_kw=demand,
                vehicle_max_kw=draw(st.one_of(st.just(math.inf), st.floats(10.0, 500.0))),
                gun_max_kw=draw(st.floats(20.0, 600.0)),
                v2g_kw=v2g,
                priority=draw(st.integers(1, classes)),
                voltage_v=draw(st.one_of(st.just(NAN), st.floats(150.0, 950.0))),
                efficiency=eff,
                measured_kw=measured,
                prev_alloc_kw=prev,
                under_s=under,
                draw_cap_kw=draw_cap,
            )
        )
    return tuple(out)


@st.composite
def modules(draw: st.DrawFn, n_guns: int) -> tuple[ModuleInput, ...]:
    out = []
    n_cab = draw(st.integers(1, 3))
    for c in range(n_cab):
        count = draw(st.integers(1, 8))
        guns_of_cab = draw(st.lists(st.integers(0, n_guns - 1), min_size=1, max_size=n_guns, unique=True))
        rated = draw(st.sampled_from([20.0, 30.0, 40.0, 60.0]))
        for k in range(count):
            allowed = tuple(sorted(guns_of_cab))
            if draw(st.integers(0, 4)) == 0:  # a partial row (bridges, rings)
                allowed = tuple(sorted(draw(st.lists(st.sampled_from(guns_of_cab), min_size=1, unique=True))))
            gun = draw(st.one_of(st.just(-1), st.sampled_from(allowed)))
            out.append(
                ModuleInput(
                    id=f"C{c}.M{k}",
                    rated_kw=rated,
                    allowed=allowed,
                    max_current_a=draw(st.sampled_from([math.inf, 100.0, 134.0])),
                    min_voltage_v=150.0,
                    max_voltage_v=draw(st.sampled_from([1000.0, 750.0])),
                    available=draw(st.integers(0, 9)) > 0,
                    gun=gun,
                    current_a=draw(st.sampled_from([0.0, 0.5, 30.0])) if gun >= 0 else 0.0,
                    draining=draw(st.integers(0, 5)) == 0 if gun >= 0 else False,
                    surplus_s=draw(st.sampled_from([0.0, 4.99, 6.0])) if gun >= 0 else 0.0,
                )
            )
    return tuple(out)


@st.composite
def bess(draw: st.DrawFn, uniform_eff: float | None) -> BessInput:
    if not draw(st.booleans()):
        return BessInput()
    soc_min = draw(st.floats(0.0, 0.2))
    soc_max = draw(st.floats(0.8, 1.0))
    reserve = draw(st.floats(soc_min, 0.5))
    return BessInput(
        soc=draw(st.floats(soc_min, soc_max)),
        capacity_kwh=draw(st.floats(1.0, 3000.0)),
        soc_min=soc_min,
        soc_max=soc_max,
        reserve_soc=reserve,
        max_charge_kw=draw(st.floats(0.0, 1000.0)),
        max_discharge_kw=draw(st.floats(0.0, 1000.0)),
        charge_efficiency=uniform_eff or draw(st.floats(0.85, 1.0)),
        discharge_efficiency=uniform_eff or draw(st.floats(0.85, 1.0)),
        available=draw(st.integers(0, 5)) > 0,
        soc_target=draw(st.one_of(st.just(NAN), st.floats(0.0, 1.0))),
        support_max_kw=draw(st.one_of(st.just(NAN), st.floats(0.0, 1000.0))),
        charge_min_kw=draw(st.one_of(st.just(0.0), st.floats(0.0, 300.0))),
    )


@st.composite
def cycle_inputs(
    draw: st.DrawFn,
    *,
    tracking: bool | None = None,
    with_modules: bool | None = None,
    uniform_eff: bool = False,
    unit_eff: bool = False,
    with_v2g: bool = True,
    closed_loop: bool = True,
    ramp: bool | None = None,
    n_guns: tuple[int, int] = (1, 8),
    classes: int = 3,
) -> AllocationInput:
    """One cycle's input: ``n_guns`` (min, max) guns in priority classes 1..``classes``."""
    n = draw(st.integers(*n_guns))
    eff = 1.0 if unit_eff else (draw(st.floats(0.9, 1.0)) if uniform_eff else None)
    g = draw(guns(n, eff, with_v2g, closed_loop, classes))
    mods = draw(modules(n)) if (with_modules if with_modules is not None else draw(st.booleans())) else ()
    is_tracking = tracking if tracking is not None else draw(st.booleans())
    has_ramp = ramp if ramp is not None else draw(st.booleans())
    grid = GridInput(
        import_limit_kw=draw(st.floats(0.0, 1500.0)),
        export_limit_kw=draw(st.floats(0.0, 600.0)),
        target_kw=draw(st.floats(-800.0, 1500.0)) if is_tracking else NAN,
        ramp_kw_per_s=draw(st.floats(10.0, 2000.0)) if has_ramp else NAN,
        last_kw=draw(st.floats(-600.0, 1600.0)) if has_ramp else NAN,
    )
    return AllocationInput(
        dt_s=draw(st.sampled_from([0.02, 0.1, 1.0])),
        grid=grid,
        guns=g,
        bess=draw(bess(eff)),
        aux_load_kw=draw(st.floats(0.0, 120.0)),
        modules=mods,
        params=Params(),
    )
