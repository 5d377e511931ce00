"""``station gbt``: tools for the vehicle link.

``station gbt decode FILE`` prints one JSON object per GB/T message in a capture, transport-reassembled:
``{"t": ..., "name": "BCL", "from": "bms", "id": "181056F4", "fields": {...}}``. ``candump -l`` logs
(``.log``, or ``-`` for stdin) are read directly; ``.asc .blf .csv .db .mf4 .trc`` (and ``.gz``) go through
python-can's readers. Exit status: 0 decoded (even with bad records), 1 the log broke part-way, 2 unreadable.
``station gbt diagram`` re-renders the session state diagram into docs/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from drivers.gbt27930.candump import LogFrame, LogLineError, read_candump
from drivers.gbt27930.decode import decode_log

HELP = "GB/T 27930 vehicle link: decode CAN captures, render the session state diagram"

CANDUMP_SUFFIXES = (".log", ".candump", ".txt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="gbt_command", metavar="ACTION", required=True)
    dec = sub.add_parser("decode", help="decode a CAN capture to JSON lines, one per message")
    dec.add_argument("file", help="candump -l log (or '-' for stdin), or any python-can log format")
    dec.add_argument("--foreign", action="store_true", help="also print frames not between charger and BMS")
    dec.add_argument("--pretty", action="store_true", help="indent the JSON (one object per block)")
    dia = sub.add_parser("diagram", help="render the session state diagram (Mermaid and Graphviz dot)")
    dia.add_argument("--out", default="docs", help="directory to write gbt27930-states.{mmd,dot} into")


def _decode(args: argparse.Namespace) -> int:
    path = args.file
    truncated = False
    items: Iterable[LogFrame | LogLineError]
    if path == "-":
        items = read_candump(sys.stdin)
    else:
        p = Path(path)
        if not p.is_file():
            print(f"station gbt decode: {path}: no such file", file=sys.stderr)
            return 2
        suffix = p.suffix.lower() if p.suffix.lower() != ".gz" else Path(p.stem).suffix.lower()
        if suffix in CANDUMP_SUFFIXES and p.suffix.lower() != ".gz":
            items = read_candump(p.open(encoding="ascii", errors="replace"))
        else:
            from drivers.can.logs import LogUnreadable, open_python_can_log  # python-can only when needed

            try:
                items = open_python_can_log(path)
            except LogUnreadable as exc:
                print(f"station gbt decode: {path}: cannot read: {exc}", file=sys.stderr)
                return 2
    errors = 0
    indent = 2 if args.pretty else None
    for record in decode_log(items, include_foreign=args.foreign):
        errors += "error" in record
        truncated |= "line" not in record and record.get("error", "").startswith("log unreadable")
        print(json.dumps(record, indent=indent, ensure_ascii=False))
    if errors:
        print(f"station gbt decode: {errors} record(s) with errors", file=sys.stderr)
    return 1 if truncated else 0


def run(args: argparse.Namespace) -> int:
    if args.gbt_command == "decode":
        return _decode(args)
    from drivers.gbt27930.diagram import write_diagrams

    for path in write_diagrams(Path(args.out)):
        print(path)
    return 0
