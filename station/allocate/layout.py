"""Column layout of the packed arrays the Numba kernel reads and writes.

Numba charges ~55 ns per array argument at each call (docs/benchmarks.md), so the kernel takes two:
one float64 buffer ``io`` and the int64 ``topo``. ``io`` is cut into the station scalars in and out
(``st``, ``st_out``), 2-D per-gun and per-module tables (``gun_in``, ``gun_out``, ``mod_in``,
``mod_out``, rows C-contiguous) and the kernel's float scratch; ``topo`` holds the station's static
structure (segments T_*) and, in its last segment, the kernel's int and bool scratch. Where each part
starts is in the T_IO segment, so ``packing.py`` alone decides it; the kernel allocates nothing per
call (a control cycle without malloc). Integers (priorities, gun indices, flags) are stored as floats
in ``io``; they are small and exact. This module is the one place that names the columns and parts:
the kernel and ``packing.py`` both import it.
"""

# per gun, inputs (gun_in[g, col])
G_DEMAND = 0
G_VEHICLE_MAX = 1
G_GUN_MAX = 2
G_V2G = 3
G_PRIORITY = 4
G_VOLTAGE = 5
G_EFF = 6
G_MEASURED = 7
G_PREV_ALLOC = 8
G_UNDER_S = 9
G_DRAW_CAP = 10
G_IN_COLS = 11

# per gun, outputs (gun_out[g, col])
GO_POWER = 0
GO_BOUND = 1
GO_MODULE_CAP = 2
GO_UNDER_S = 3
GO_DRAW_CAP = 4
GO_COLS = 5

# per module, inputs (mod_in[m, col])
M_RATED = 0
M_IMAX = 1
M_VMIN = 2
M_VMAX = 3
M_AVAILABLE = 4
M_GUN = 5
M_CURRENT = 6
M_DRAINING = 7
M_SURPLUS_S = 8
M_GROUP = 9  # modules with the same rating and the same allowed guns form a group (packing.py)
M_IN_COLS = 10

# per module, outputs (mod_out[m, col])
MO_GUN = 0
MO_DRAINING = 1
MO_SURPLUS_S = 2
MO_COLS = 3

# station scalars, inputs (st_in[i])
S_DT = 0
S_IMPORT_CAP = 1
S_EXPORT_CAP = 2
S_TARGET = 3
S_RAMP = 4
S_LAST_GRID = 5
S_AUX = 6
S_BESS_AVAILABLE = 7
S_SOC = 8
S_CAPACITY = 9
S_SOC_MIN = 10
S_SOC_MAX = 11
S_RESERVE = 12
S_MAX_CHARGE = 13
S_MAX_DISCHARGE = 14
S_ETA_CHARGE = 15
S_ETA_DISCHARGE = 16
S_SOC_TARGET = 17
S_SUPPORT_MAX = 18
S_CHARGE_MIN = 19
S_CL_SETTLE = 20
S_CL_MARGIN = 21
S_CL_TOL = 22
S_MOD_HOLD = 23
S_MOD_MARGIN = 24
S_MOD_IDLE_A = 25
S_HAS_MODULES = 26
S_IN_LEN = 27

# station scalars, outputs (st_out[i])
SO_BESS = 0
SO_GRID = 1
SO_UNSERVED = 2
SO_SHORTFALL = 3
SO_FLAGS = 4
SO_LEN = 5

# the switch matrix and module groups, static per station, as segments of one int64 array ``topo``:
# segment i is topo[topo[i]:topo[i + 1]] (packing.topology builds it, kernel.segment reads it). One array
# instead of a dozen because each array argument costs Numba ~50 ns per call.
T_MOD_PTR = 0  # CSR module -> guns it may be switched to
T_MOD_GUNS = 1
T_GUN_PTR = 2  # CSR gun -> modules that may be switched to it
T_GUN_MODS = 3
T_GRP_PTR = 4  # CSR group -> guns its modules reach (pair index k: one (group, gun) pair)
T_GRP_GUNS = 5
T_GRP_REP = 6  # one module of each group
T_GRP_START = 7  # group -> start of its members in T_GRP_MEM (n_groups + 1 entries)
T_GRP_MEM = 8  # modules by group, in index order within a group
T_GG_PTR = 9  # CSR gun -> the groups it reaches ...
T_GG_GRP = 10
T_GG_PAIR = 11  # ... and the pair index of each, into the T_GRP_GUNS order
T_GUN_COMP = 12  # gun -> its component of the switch matrix (the guns that share modules, directly or through
#                  other guns; numbered by lowest gun): the module assignment of one never touches another's
T_COMP_START = 13  # component -> start of its guns in an order by component (n_components + 1 entries)
T_IO = 14  # the gun and module counts and where each part of io and of the scratch starts (IO_* index it)
T_WORK = 15  # the kernel's int and bool scratch: rewritten at every call, so a Packed serves one call at a time
T_SEGMENTS = 16

# the T_IO segment
IO_GUNS = 0
IO_MODULES = 1
IO_PARTS = 2  # part k of io is io[at[IO_PARTS + k]:at[IO_PARTS + k + 1]], k one of P_* (at: the T_IO segment)
P_ST, P_ST_OUT, P_GUN_IN, P_GUN_OUT, P_MOD_IN, P_MOD_OUT = 0, 1, 2, 3, 4, 5
P_CYCLE_F, P_ASSIGN_F, P_MOD_F, P_COVER_F = 6, 7, 8, 9  # float scratch: rows of W_* below
IO_WORK = IO_PARTS + 11  # part k of the T_WORK segment starts at at[IO_WORK + k], k one of K_*
K_CYCLE_I, K_MOD_I, K_COVER_I, K_CYCLE_B, K_ASSIGN_B, K_MOD_B = 0, 1, 2, 3, 4, 5  # the _B parts: bytes (bool)
IO_LEN = IO_WORK + 7

# rows of the scratch parts (per gun: n columns, n + 1 for W_CYCLE_I; per module: one per module)
W_CYCLE_F = 15  # allocate_kernel's per-gun vectors
W_ASSIGN_F = 4  # assign_modules' per-gun vectors
W_MOD_F = 2
W_CYCLE_I = 6  # why, cls_order, members, cls_start, two rows of sort scratch
W_MOD_I = 4
W_CYCLE_B = 3  # decide_power's selections of guns
W_ASSIGN_B = 2
W_MOD_B = 5
