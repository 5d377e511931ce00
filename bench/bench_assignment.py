"""Quality of the module assignment against exhaustive answers on small random stations.

    .venv/bin/python -m bench.bench_assignment            # 3000 stations per row, prints a markdown table
    .venv/bin/python -m bench.bench_assignment --n 500

Two measures, on 1-3 guns and up to 7 modules (small enough for brute force and an exact MILP):

* **switches**: where the free modules can cover every gun's need, how often the assignment switches in
  more modules than the fewest possible (brute force over every module-to-gun choice). The tests prove
  it never does when every gun sees one module size; this counts it with mixed sizes.
* **served**: where no assignment covers the fair split (modules are the scarce resource), two
  references. *Fairness*: the leximin-best assignment (brute force: for every choice of free modules,
  the power step with those capacities; per class in order, the sorted gun powers compared
  lexicographically), which is the decision's own objective: a gun that needs power gets a module before
  another gun of its class gets its second. *Total*: a MILP (scipy HiGHS) that maximises served power
  per class and may leave a gun with nothing; the gap to it is the price of that fairness, not an error.

The exhaustive helpers are the tests' own (tests/allocate/test_module_assignment.py), so the bench and
the tests judge by one definition.
"""

from __future__ import annotations

import argparse
import random

from station.allocate import allocate
from station.allocate.model import AllocationInput, BessInput, GridInput, GunInput, ModuleInput
from station.allocate.reference import assign_modules, decide_power, gun_bounds
from tests.allocate.test_module_assignment import (
    every_assignment,
    fair_split_with_reach,
    fewest_switch_ins,
    milp_max_served,
)

SIZES = (20.0, 30.0, 40.0, 60.0)


def modules(rng: random.Random, n_guns: int, sizes: tuple[float, ...], count: int) -> tuple[ModuleInput, ...]:
    out = []
    for k in range(count):
        allowed = tuple(sorted(rng.sample(range(n_guns), rng.randint(1, n_guns))))
        busy = rng.random() < 0.2
        out.append(ModuleInput(f"M{k}", rng.choice(sizes), allowed, gun=rng.choice(allowed) if busy else -1,
                               current_a=30.0 if busy else 0.0))
    return tuple(out)


def cover_station(rng: random.Random, sizes: tuple[float, ...]) -> tuple[AllocationInput, list[float]]:
    n = rng.randint(1, 3)
    mods = modules(rng, n, sizes, rng.randint(1, 7))
    unit = min(sizes)
    need = [max(0.0, rng.randint(0, 3) * unit - rng.choice((0.0, 1.0, 0.5 * unit))) for _ in range(n)]
    gs = tuple(GunInput(f"G{i}", priority=rng.randint(1, 2)) for i in range(n))
    return AllocationInput(dt_s=0.1, grid=GridInput(1e9), guns=gs, modules=mods), need


def step_station(rng: random.Random, sizes: tuple[float, ...]) -> AllocationInput:
    n = rng.randint(1, 3)
    gs = tuple(GunInput(f"G{i}", demand_kw=rng.uniform(0, 150), gun_max_kw=rng.choice((60.0, 120.0, 150.0)),
                        priority=rng.randint(1, 2)) for i in range(n))
    return AllocationInput(dt_s=1.0, grid=GridInput(import_limit_kw=rng.uniform(20, 400)), guns=gs,
                           bess=BessInput(available=False), modules=modules(rng, n, sizes, rng.randint(1, 6)))


def switches_row(name: str, sizes: tuple[float, ...], count: int, seed: int) -> str:
    rng = random.Random(seed)
    cases = worse = extra = 0
    while cases < count:
        inp, need = cover_station(rng, sizes)
        best = fewest_switch_ins(inp, need)
        if best is None:
            continue
        state, _ = assign_modules(inp, need)
        used = sum(1 for m, g in zip(inp.modules, state.gun) if m.gun < 0 and g >= 0)
        cases += 1
        if used > best or any(state.draining):
            worse += 1
            extra += max(0, used - best)
    return f"| switches, {name} | {cases} | {worse} ({100 * worse / cases:.2f} %) | {extra} extra switches |"


def leximin_key(inp: AllocationInput, p: list[float]) -> tuple[tuple[float, ...], ...]:
    classes = sorted({g.priority for g in inp.guns})
    return tuple(tuple(sorted(round(p[i], 6) for i, g in enumerate(inp.guns) if g.priority == c)) for c in classes)


def leximin_best(inp: AllocationInput) -> tuple[tuple[float, ...], ...]:
    """The fairest outcome over every assignment of the free modules (busy ones stay)."""
    upper, _, lower, _ = gun_bounds(inp)
    best = None
    for _, cap in every_assignment(inp):
        dec = decide_power(inp, [min(u, c) for u, c in zip(upper, cap)], [max(v, -c) for v, c in zip(lower, cap)])
        key = leximin_key(inp, dec.p)
        best = key if best is None or key > best else best
    return best


def served_row(name: str, sizes: tuple[float, ...], count: int, seed: int) -> str:
    rng = random.Random(seed)
    cases = below = unfair = 0
    gaps: list[float] = []
    while cases < count:
        inp = step_station(rng, sizes)
        if fewest_switch_ins(inp, [abs(p) for p in fair_split_with_reach(inp)]) is not None:
            continue  # a cover exists: the tests require the optimum there
        out = allocate(inp)
        if any(r.draining for r in out.modules):
            continue
        cases += 1
        if leximin_key(inp, [r.power_kw for r in out.guns]) < leximin_best(inp):
            unfair += 1
        want = sum(milp_max_served(inp))
        got = sum(max(r.power_kw, 0.0) for r in out.guns)
        if got < want - 1e-5:
            below += 1
            gaps.append((want - got) / want)
    worst = f"{100 * max(gaps):.1f} %" if gaps else "-"
    mean = f"{100 * sum(gaps) / len(gaps):.1f} %" if gaps else "-"
    return (f"| served, {name}, no cover: fairness | {cases} | {unfair} ({100 * unfair / cases:.2f} %) | "
            f"below the leximin-best assignment |\n"
            f"| served, {name}, no cover: total | {cases} | {below} ({100 * below / cases:.2f} %) | "
            f"mean {mean}, worst {worst} below the total-maximising MILP |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="stations per row")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print("| measure | stations | not optimal | size of the miss |")
    print("|---|---:|---:|---|")
    print(switches_row("one module size", (40.0,), a.n, a.seed))
    print(switches_row("two sizes (20/40 kW)", (20.0, 40.0), a.n, a.seed))
    print(switches_row("four sizes", SIZES, a.n, a.seed))
    print(served_row("one module size", (40.0,), a.n, a.seed))
    print(served_row("four sizes", SIZES, a.n, a.seed))


if __name__ == "__main__":
    main()
