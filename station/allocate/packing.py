"""Between the data model (model.py) and the kernel's packed arrays (layout.py).

``Packed`` holds the arrays of one station. The static parts (module ratings, the switch matrix as two
CSR indexes) are built once per station; the control cycle then only rewrites the dynamic columns,
which is how the service keeps the per-cycle cost at the kernel's own cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from station.allocate import layout as L
from station.allocate.model import (
    Allocation,
    AllocationInput,
    BoundBy,
    Flag,
    GunResult,
    ModuleResult,
)


@dataclass(frozen=True)
class Packed:
    """The kernel's two arrays, and named views of the parts of ``io`` (layout.py). The views share
    ``io``'s memory: write into them in place (frozen, so a view cannot be replaced by an array the
    kernel never sees)."""

    io: np.ndarray  # every input and output and the float scratch (float64): one call at a time per Packed
    topo: np.ndarray  # switch matrix, module groups, where the parts of io start, int scratch (layout.T_*)
    st: np.ndarray
    st_out: np.ndarray
    gun_in: np.ndarray
    gun_out: np.ndarray
    mod_in: np.ndarray
    mod_out: np.ndarray

    def args(self) -> tuple[np.ndarray, np.ndarray]:
        """Arguments of ``kernel.allocate_kernel`` in order."""
        return (self.io, self.topo)


def csr(allowed: list[tuple[int, ...]], n_guns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Module->guns and gun->modules adjacency of the switch matrix, as CSR index arrays."""
    mod_ptr = np.zeros(len(allowed) + 1, dtype=np.int64)
    for m, guns in enumerate(allowed):
        mod_ptr[m + 1] = mod_ptr[m] + len(guns)
    mod_guns = np.array([g for guns in allowed for g in sorted(guns)], dtype=np.int64)
    by_gun: list[list[int]] = [[] for _ in range(n_guns)]
    for m, guns in enumerate(allowed):
        for g in guns:
            by_gun[g].append(m)
    gun_ptr = np.zeros(n_guns + 1, dtype=np.int64)
    for g in range(n_guns):
        gun_ptr[g + 1] = gun_ptr[g] + len(by_gun[g])
    gun_mods = np.array([m for mods in by_gun for m in mods], dtype=np.int64)
    return mod_ptr, mod_guns, gun_ptr, gun_mods


def components(allowed: list[tuple[int, ...]], n_guns: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the switch matrix: each gun's component (numbered in order of their lowest
    gun) and where each component's guns start in an order by component. Guns of different components
    share no module, so the kernel covers them with one small heap each instead of one station-wide heap
    (the same result: nothing one component does changes another's keys)."""
    parent = list(range(n_guns))

    def root(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for guns in allowed:
        gs = sorted(guns)
        for g in gs[1:]:
            a, b = root(gs[0]), root(g)
            if a != b:
                parent[max(a, b)] = min(a, b)
    number: dict[int, int] = {}
    gun_comp = np.array([number.setdefault(root(g), len(number)) for g in range(n_guns)], dtype=np.int64)
    sizes = np.bincount(gun_comp, minlength=len(number))
    return gun_comp, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def groups(inp: AllocationInput) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Group identical modules (same rating, same allowed guns): a cabinet's crossbar block is one group.
    The kernel evaluates capacity once per group and gun instead of once per module and gun."""
    index: dict[tuple, int] = {}
    group_of, reps, allowed = [], [], []
    for m, mod in enumerate(inp.modules):
        key = (mod.allowed, mod.rated_kw, mod.max_current_a, mod.min_voltage_v, mod.max_voltage_v)
        if key not in index:
            index[key] = len(reps)
            reps.append(m)
            allowed.append(tuple(sorted(mod.allowed)))
        group_of.append(index[key])
    grp_ptr = np.zeros(len(reps) + 1, dtype=np.int64)
    for i, guns in enumerate(allowed):
        grp_ptr[i + 1] = grp_ptr[i] + len(guns)
    grp_guns = np.array([g for guns in allowed for g in guns], dtype=np.int64)
    return group_of, grp_ptr, grp_guns, np.array(reps, dtype=np.int64)


def io_parts(n: int, nm: int, n_pairs: int, n_grp: int) -> tuple[list[int], list[int]]:
    """Where each part of ``io`` starts (layout.P_*, then the end) and where each part of the int scratch
    starts (layout.K_*, then the end; a bool part takes whole int64 words). The covering parts' inner
    layout is kernel.assign_modules': the short-gun heap (at most 2 (n + nm) + 4 entries), the group
    cursors, guns by component, runs and the short guns of stage d."""
    heap_cap = 2 * (n + nm) + 4
    floats = [L.S_IN_LEN, L.SO_LEN, n * L.G_IN_COLS, n * L.GO_COLS, nm * L.M_IN_COLS, nm * L.MO_COLS,
              L.W_CYCLE_F * n, L.W_ASSIGN_F * n, L.W_MOD_F * nm, n_pairs + n_grp + 2 * heap_cap]
    words = [L.W_CYCLE_I * (n + 1), L.W_MOD_I * nm, heap_cap + n_grp + 3 * n + 1,
             -(-L.W_CYCLE_B * n // 8), -(-L.W_ASSIGN_B * n // 8), -(-L.W_MOD_B * nm // 8)]
    return [int(x) for x in np.cumsum([0] + floats)], [int(x) for x in np.cumsum([0] + words)]


def pack(inp: AllocationInput) -> Packed:
    n, nm = len(inp.guns), len(inp.modules)
    group_of, topo = topology(inp)
    at = topo[topo[L.T_IO] + L.IO_PARTS:]
    io = np.zeros(int(at[L.P_COVER_F + 1]))

    def part(k: int) -> np.ndarray:
        return io[at[k]:at[k + 1]]

    st, so = part(L.P_ST), part(L.P_ST_OUT)
    gi, go = part(L.P_GUN_IN).reshape(n, L.G_IN_COLS), part(L.P_GUN_OUT).reshape(n, L.GO_COLS)
    mi, mo = part(L.P_MOD_IN).reshape(nm, L.M_IN_COLS), part(L.P_MOD_OUT).reshape(nm, L.MO_COLS)
    for g, gun in enumerate(inp.guns):
        gi[g] = _gun_row(gun)
    for m, mod in enumerate(inp.modules):
        mi[m, L.M_RATED] = mod.rated_kw
        mi[m, L.M_IMAX] = mod.max_current_a
        mi[m, L.M_VMIN] = mod.min_voltage_v
        mi[m, L.M_VMAX] = mod.max_voltage_v
        mi[m, L.M_AVAILABLE] = 1.0 if mod.available else 0.0
        mi[m, L.M_GUN] = mod.gun
        mi[m, L.M_CURRENT] = mod.current_a
        mi[m, L.M_DRAINING] = 1.0 if mod.draining else 0.0
        mi[m, L.M_SURPLUS_S] = mod.surplus_s
    fill_station(st, inp)
    mi[:, L.M_GROUP] = group_of
    return Packed(io, topo, st, so, gi, go, mi, mo)


def topology(inp: AllocationInput) -> tuple[list[int], np.ndarray]:
    """Each module's group, and the static index arrays of the switch matrix, the io layout and the
    kernel's int scratch as one ``topo`` array (segments in layout.T_* order)."""
    n = len(inp.guns)
    allowed = [m.allowed for m in inp.modules]
    mod_ptr, mod_guns, gun_ptr, gun_mods = csr(allowed, n)
    group_of, grp_ptr, grp_guns, grp_rep = groups(inp)
    n_grp = len(grp_rep)
    members: list[list[int]] = [[] for _ in range(n_grp)]
    for m, gr in enumerate(group_of):
        members[gr].append(m)
    grp_start = np.cumsum([0] + [len(ms) for ms in members], dtype=np.int64)
    grp_mem = np.array([m for ms in members for m in ms], dtype=np.int64)
    by_gun: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for gr in range(n_grp):
        for k in range(int(grp_ptr[gr]), int(grp_ptr[gr + 1])):
            by_gun[int(grp_guns[k])].append((gr, k))
    gg_ptr = np.cumsum([0] + [len(x) for x in by_gun], dtype=np.int64)
    gg_grp = np.array([gr for x in by_gun for gr, _ in x], dtype=np.int64)
    gg_pair = np.array([k for x in by_gun for _, k in x], dtype=np.int64)
    gun_comp, comp_start = components(allowed, n)
    floats, words = io_parts(n, len(inp.modules), len(grp_guns), n_grp)
    io = [n, len(inp.modules)] + floats + words
    assert len(io) == L.IO_LEN
    segments = [mod_ptr, mod_guns, gun_ptr, gun_mods, grp_ptr, grp_guns, grp_rep, grp_start, grp_mem, gg_ptr,
                gg_grp, gg_pair, gun_comp, comp_start, io, np.zeros(words[-1], dtype=np.int64)]
    assert len(segments) == L.T_SEGMENTS
    bounds = np.cumsum([L.T_SEGMENTS + 1] + [len(a) for a in segments], dtype=np.int64)
    topo = np.concatenate([bounds] + [np.asarray(a, dtype=np.int64) for a in segments]).astype(np.int64)
    return group_of, topo


def _gun_row(gun) -> list[float]:  # noqa: ANN001 - GunInput
    row = [0.0] * L.G_IN_COLS
    row[L.G_DEMAND] = gun.demand_kw
    row[L.G_VEHICLE_MAX] = gun.vehicle_max_kw
    row[L.G_GUN_MAX] = gun.gun_max_kw
    row[L.G_V2G] = gun.v2g_kw
    row[L.G_PRIORITY] = gun.priority
    row[L.G_VOLTAGE] = gun.voltage_v
    row[L.G_EFF] = gun.efficiency
    row[L.G_MEASURED] = gun.measured_kw
    row[L.G_PREV_ALLOC] = gun.prev_alloc_kw
    row[L.G_UNDER_S] = gun.under_s
    row[L.G_DRAW_CAP] = gun.draw_cap_kw
    return row


def fill_station(st: np.ndarray, inp: AllocationInput) -> None:
    b, gr, prm = inp.bess, inp.grid, inp.params
    st[L.S_DT] = inp.dt_s
    st[L.S_IMPORT_CAP] = gr.import_limit_kw
    st[L.S_EXPORT_CAP] = gr.export_limit_kw
    st[L.S_TARGET] = gr.target_kw
    st[L.S_RAMP] = gr.ramp_kw_per_s
    st[L.S_LAST_GRID] = gr.last_kw
    st[L.S_AUX] = inp.aux_load_kw
    st[L.S_BESS_AVAILABLE] = 1.0 if b.available else 0.0
    st[L.S_SOC] = b.soc
    st[L.S_CAPACITY] = b.capacity_kwh
    st[L.S_SOC_MIN] = b.soc_min
    st[L.S_SOC_MAX] = b.soc_max
    st[L.S_RESERVE] = b.reserve_soc
    st[L.S_MAX_CHARGE] = b.max_charge_kw
    st[L.S_MAX_DISCHARGE] = b.max_discharge_kw
    st[L.S_ETA_CHARGE] = b.charge_efficiency
    st[L.S_ETA_DISCHARGE] = b.discharge_efficiency
    st[L.S_SOC_TARGET] = b.soc_target
    st[L.S_SUPPORT_MAX] = b.support_max_kw
    st[L.S_CHARGE_MIN] = b.charge_min_kw
    st[L.S_CL_SETTLE] = prm.closed_loop_settle_s
    st[L.S_CL_MARGIN] = prm.closed_loop_margin_kw
    st[L.S_CL_TOL] = prm.closed_loop_tolerance_kw
    st[L.S_MOD_HOLD] = prm.module_release_hold_s
    st[L.S_MOD_MARGIN] = prm.module_release_margin_kw
    st[L.S_MOD_IDLE_A] = prm.module_idle_current_a
    st[L.S_HAS_MODULES] = 1.0 if inp.modules else 0.0


def unpack(inp: AllocationInput, pk: Packed) -> Allocation:
    go, so, mo = pk.gun_out, pk.st_out, pk.mod_out
    guns = tuple(
        GunResult(g.id, float(go[i, L.GO_POWER]), BoundBy(int(go[i, L.GO_BOUND])), float(go[i, L.GO_MODULE_CAP]),
                  float(go[i, L.GO_UNDER_S]), float(go[i, L.GO_DRAW_CAP]))
        for i, g in enumerate(inp.guns)
    )
    modules = tuple(
        ModuleResult(m.id, int(mo[i, L.MO_GUN]), bool(mo[i, L.MO_DRAINING] > 0.5), float(mo[i, L.MO_SURPLUS_S]))
        for i, m in enumerate(inp.modules)
    )
    return Allocation(guns, float(so[L.SO_BESS]), float(so[L.SO_GRID]), float(so[L.SO_UNSERVED]),
                      float(so[L.SO_SHORTFALL]), Flag(int(so[L.SO_FLAGS])), modules)


def is_nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)
