"""The allocation core: per cycle, how much power each gun, the BESS and the grid carry.

``allocate(inp)`` runs the Numba kernel; ``allocate(inp, engine="reference")`` the pure-Python
specification of the same decision (reference.py). Both are pure functions of their input.
"""

from __future__ import annotations

from typing import Literal

from station.allocate.model import (
    Allocation,
    AllocationInput,
    BessInput,
    BoundBy,
    Flag,
    GridInput,
    GunInput,
    ModuleInput,
    Params,
)

__all__ = [
    "Allocation", "AllocationInput", "BessInput", "BoundBy", "Flag", "GridInput", "GunInput", "ModuleInput",
    "Params", "allocate",
]


def allocate(inp: AllocationInput, engine: Literal["numba", "reference"] = "numba") -> Allocation:
    if engine == "reference":
        from station.allocate.reference import allocate as reference

        return reference(inp)
    from station.allocate.kernel import allocate_kernel
    from station.allocate.packing import pack, unpack

    pk = pack(inp)
    allocate_kernel(*pk.args())
    return unpack(inp, pk)
