"""Synthetic stations for the benchmarks: ``n`` guns in cabinets of 8 guns sharing a crossbar of 40 kW
modules (4 per gun), a grid cap at 40 % of the guns' total, a BESS, a quarter of the guns offering V2G.
Seeded, so every run measures the same inputs."""

from __future__ import annotations

import random

from station.allocate.model import AllocationInput, BessInput, GridInput, GunInput, ModuleInput, Params


def station(n_guns: int, seed: int = 1, modules: bool = True) -> AllocationInput:
    rng = random.Random(seed)
    guns = tuple(
        GunInput(
            id=f"G{i}",
            demand_kw=rng.uniform(20.0, 350.0) if rng.random() < 0.85 else 0.0,
            vehicle_max_kw=rng.choice([150.0, 250.0, 400.0]),
            gun_max_kw=160.0,
            v2g_kw=rng.uniform(10.0, 60.0) if rng.random() < 0.25 else 0.0,
            priority=rng.choice([1, 2, 2, 3]),
            voltage_v=rng.uniform(350.0, 820.0),
            efficiency=0.96,
        )
        for i in range(n_guns)
    )
    mods = []
    if modules:
        per_cab_guns, per_gun_mods = 8, 4
        for c in range(0, n_guns, per_cab_guns):
            cab_guns = tuple(range(c, min(c + per_cab_guns, n_guns)))
            for k in range(per_gun_mods * len(cab_guns)):
                mods.append(ModuleInput(f"C{c // per_cab_guns}.M{k}", 40.0, allowed=cab_guns, max_current_a=134.0,
                                        min_voltage_v=150.0, max_voltage_v=1000.0))
    cap = 0.4 * 160.0 * n_guns
    return AllocationInput(
        dt_s=0.05,
        grid=GridInput(import_limit_kw=cap, export_limit_kw=0.2 * cap, ramp_kw_per_s=cap, last_kw=0.9 * cap),
        guns=guns,
        bess=BessInput(soc=0.6, capacity_kwh=20.0 * n_guns, max_charge_kw=0.2 * cap, max_discharge_kw=0.2 * cap,
                       charge_efficiency=0.96, discharge_efficiency=0.96, available=True),
        aux_load_kw=0.01 * cap,
        modules=tuple(mods),
        params=Params(),
    )
