"""Allocation kernel benchmark: time per call at 8, 64 and 512 guns, Numba kernel vs the pure-Python
reference side by side, steady-state and worst-case cycles; cold and cached start-up.

    .venv/bin/python -m bench.bench_allocate            # prints a markdown table
    .venv/bin/python -m bench.bench_allocate --quick    # fewer repeats
    .venv/bin/python -m bench.bench_allocate --kernel-only  # kernel rows, best of 15 batches

``--kernel-only`` is for comparing two trees side by side: run it alternately in each (separate
``NUMBA_CACHE_DIR``s) and compare the best rows; on this shared machine slow phases come and go within
a run, so the best batch says more about the code than the median.

* steady: a cycle after 200 cycles of operation (modules assigned, closed loop settled): what the
  control loop pays nearly every tick;
* session start: the steady cycle in which one idle gun's vehicle starts asking for power, so modules
  are switched in for it: the busiest cycle that happens in operation (sessions start one at a time: a
  plug-in, handshake, insulation check and precharge take seconds);
* reassign: every module free and every gun demanding (controller start-up with all sessions already
  running): the worst case of the module assignment, once.
Times are the median of repeated batches of calls to the kernel on packed arrays (what the service
calls); the reference is timed on the same inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from bench.synthetic import station
from station.allocate import allocate
from station.allocate.cycle import carry
from station.allocate.kernel import allocate_kernel
from station.allocate.model import AllocationInput
from station.allocate.packing import pack


def per_call_us(fn: Callable[[], object], min_time: float, repeats: int, best: bool = False) -> float:
    """Time per call in us: the median of ``repeats`` batches of ~min_time / 5 (their minimum if ``best``)."""
    n = 1
    while True:  # calibrate a batch that takes ~min_time
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t >= min_time / 5 or n >= 1 << 20:
            break
        n *= 2
    batches = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        batches.append((time.perf_counter() - t) / n)
    return (min(batches) if best else statistics.median(batches)) * 1e6


def steady_input(n: int) -> AllocationInput:
    inp = station(n)
    out = allocate(inp)
    for _ in range(200):
        inp = carry(inp, out)
        out = allocate(inp)
    return carry(inp, out)


def start_input(n: int) -> AllocationInput:
    """``steady_input`` with one idle gun starting a session (demand 150 kW, no module yet): the first
    idle gun whose class gets power now (a lower class may get nothing while the grid is full)."""
    inp = steady_input(n)
    for i, gun in enumerate(inp.guns):
        if gun.demand_kw != 0.0:
            continue
        guns = list(inp.guns)
        guns[i] = dataclasses.replace(gun, demand_kw=150.0, vehicle_max_kw=250.0)
        start = dataclasses.replace(inp, guns=tuple(guns))
        if any(m.gun == i for m in allocate(start).modules):  # the row must measure a switch-in
            return start
    raise AssertionError("no idle gun gets modules when it starts")


def kernel_call(inp: AllocationInput) -> Callable[[], object]:
    args = pack(inp).args()
    return lambda: allocate_kernel(*args)


def startup(kind: str) -> float:
    """Seconds from a fresh interpreter to the first decision (import included); kind: cold or cached."""
    code = (
        "import time; t = time.perf_counter(); "
        "from bench.synthetic import station; from station.allocate import allocate; "
        "allocate(station(8)); print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                env=os.environ | {"NUMBA_CACHE_DIR": CACHE}).stdout)


CACHE = ""


def main() -> None:
    global CACHE
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--kernel-only", action="store_true", help="kernel rows only, best of 15 batches")
    args = ap.parse_args()
    min_time, repeats = (0.05, 3) if args.quick else (0.3, 7)
    allocate(station(8))  # compile once (cache) before timing
    if args.kernel_only:
        print("| guns | cycle | Numba kernel (best of 15 batches) |\n|---:|---|---:|")
        for n in (8, 64, 512):
            for label, inp in (("steady", steady_input(n)), ("session start", start_input(n)),
                               ("reassign", station(n))):
                print(f"| {n} | {label} | {per_call_us(kernel_call(inp), min_time, 15, best=True):.2f} us |")
        return
    print(f"Allocation kernel, per call (median of {repeats} batches), {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}\n")
    print("| guns | modules | cycle | Numba kernel | pure-Python reference | ratio |")
    print("|---:|---:|---|---:|---:|---:|")
    for n in (8, 64, 512):
        for label, inp in (("steady", steady_input(n)), ("session start", start_input(n)),
                           ("reassign", station(n))):
            fast = per_call_us(kernel_call(inp), min_time, repeats)
            ref = per_call_us(lambda: allocate(inp, "reference"), min_time, max(3, repeats // 2))
            print(f"| {n} | {len(inp.modules)} | {label} | {fast:.1f} us | {ref:,.0f} us | {ref / fast:,.0f}x |")
    with tempfile.TemporaryDirectory() as cache:
        CACHE = cache
        cold = [startup("cold")]
        cached = [startup("cached") for _ in range(3)]  # they reuse the cache the cold start wrote
        for _ in range(2):
            with tempfile.TemporaryDirectory() as fresh:
                CACHE = fresh
                cold.append(startup("cold"))
    print()
    print("| start-up to first decision | seconds (median of 3) |")
    print("|---|---:|")
    print(f"| cold (empty NUMBA_CACHE_DIR: import + compile) | {statistics.median(cold):.2f} |")
    print(f"| cached (NUMBA_CACHE_DIR populated) | {statistics.median(cached):.2f} |")


if __name__ == "__main__":
    main()
