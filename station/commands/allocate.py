"""``station allocate SNAPSHOT.json``: what would the controller decide for this cycle, and why."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "print the allocation decision for one snapshot (JSON file or - for stdin)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("snapshot", help="snapshot JSON file (docs/allocation.md), or - for stdin")
    p.add_argument("--explain", action="store_true", help="a line per gun saying what bound it, instead of JSON")
    p.add_argument("--engine", choices=["numba", "reference"], default="numba",
                   help="the compiled kernel (default) or the pure-Python reference")


def run(args: argparse.Namespace) -> int:
    from station.allocate import allocate
    from station.allocate.snapshot import decision_json, explain, parse_snapshot
    from station.config import ConfigError

    source = "stdin" if args.snapshot == "-" else args.snapshot
    try:
        text = sys.stdin.read() if args.snapshot == "-" else open(args.snapshot, encoding="utf-8").read()
    except OSError as exc:
        print(f"{source}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"{source}: not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", file=sys.stderr)
        return 1
    try:
        inp = parse_snapshot(data, source)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    out = allocate(inp, args.engine)
    print(explain(inp, out) if args.explain else json.dumps(decision_json(inp, out), indent=2))
    return 0
