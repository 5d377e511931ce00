"""From one cycle to the next: the allocation's state travels in its input.

The kernel is a pure function; what it must remember (closed-loop timers and caps, module assignment,
draining, hysteresis timers, what each gun was given, grid power last cycle) comes back in the next
cycle's input. ``carry`` is the one place that does this, for the controller, the simulator and the tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from station.allocate.model import Allocation, AllocationInput


def carry(
    prev_in: AllocationInput,
    prev_out: Allocation,
    *,
    measured_kw: Mapping[str, float] | None = None,
    module_current_a: Mapping[str, float] | None = None,
    grid_kw: float | None = None,
) -> AllocationInput:
    """``prev_in`` with the state of ``prev_out`` carried into it and new measurements applied.

    Measurements default to "the plant did exactly what was commanded": each gun drew its allocation,
    draining modules reached zero current, the grid carried the expected power. Pass real measurements
    to close the loop.
    """
    measured_kw = measured_kw or {}
    module_current_a = module_current_a or {}
    guns = tuple(
        dataclasses.replace(
            g,
            prev_alloc_kw=r.power_kw,
            measured_kw=measured_kw.get(g.id, r.power_kw),
            under_s=r.under_s,
            draw_cap_kw=r.draw_cap_kw,
        )
        for g, r in zip(prev_in.guns, prev_out.guns)
    )
    modules = tuple(
        dataclasses.replace(
            m,
            gun=r.gun,
            draining=r.draining,
            surplus_s=r.surplus_s,
            current_a=module_current_a.get(m.id, 0.0 if (r.draining or r.gun < 0) else _share_a(prev_in, prev_out, r.gun)),
        )
        for m, r in zip(prev_in.modules, prev_out.modules)
    )
    grid = dataclasses.replace(prev_in.grid, last_kw=prev_out.grid_kw if grid_kw is None else grid_kw)
    return dataclasses.replace(prev_in, guns=guns, modules=modules, grid=grid)


def _share_a(inp: AllocationInput, out: Allocation, g: int) -> float:
    """Current of one module of gun ``g``: the gun's power shared by its active modules."""
    active = sum(1 for r in out.modules if r.gun == g and not r.draining)
    volts = inp.guns[g].voltage_v
    volts = 400.0 if math.isnan(volts) else volts
    return abs(out.guns[g].power_kw) * 1000.0 / volts / active if active else 0.0
