"""The BESS horizon planner: foresight for the battery that the per-cycle allocation kernel cannot have.

``Planner(cfg, start_hour=...)`` re-plans every ``control.planner.period_s`` over
``control.planner.horizon_s`` (``due(t_s)``, ``plan(obs, schedule) -> BessPlan``); the controller copies
the plan's ``soc_target``, ``support_max_kw`` and ``charge_min_kw`` into the kernel's ``BessInput``.
The solve is a dynamic programme over the battery's SoC, compiled with Numba (kernel.py), specified by a
pure-Python reference of the same computation (reference.py). See docs/planner.md.
"""

from __future__ import annotations

from station.plan.planner import BessPlan, Planner, Window

__all__ = ["BessPlan", "Planner", "Window"]
