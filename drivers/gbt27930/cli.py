"""``station gbt``: tools for the vehicle link.

``station gbt decode FILE`` prints one JSON object per GB/T message in a capture, transport-reassembled:
``{"t": ..., "name": "BCL", "from": "bms", "id": "181056F4", "fields": {...}}``. ``candump -l`` logs
(``.log``, or ``-`` for stdin) are read directly; ``.asc .blf .csv .db .mf4 .trc`` (and ``.gz``) go through
python-can's ``can.LogReader``. ``station gbt diagram`` re-renders the session state diagram into docs/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

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


def _python_can_frames(path: str) -> Iterator[object]:
    """Frames of any python-can log format, as LogFrame (error frames and 11-bit frames are skipped)."""
    import can  # only here: the codec stays free of python-can

    from drivers.gbt27930.candump import LogFrame
    from drivers.gbt27930.frame import Frame

    suffixes = [s.lower() for s in Path(path).suffixes]
    # ASC stores times relative to its header's date: ask for absolute ones, like every other format
    kwargs = {"relative_timestamp": False} if ".asc" in suffixes else {}
    with can.LogReader(path, **kwargs) as reader:
        for msg in reader:
            if msg.is_error_frame or not msg.is_extended_id or msg.is_remote_frame:
                continue
            yield LogFrame(msg.timestamp, str(msg.channel or ""), Frame(msg.arbitration_id, bytes(msg.data)))


def _decode(args: argparse.Namespace) -> int:
    from drivers.gbt27930.candump import read_candump
    from drivers.gbt27930.decode import decode_log

    path = args.file
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
            try:
                items = _python_can_frames(path)  # type: ignore[assignment]
            except ValueError as exc:
                print(f"station gbt decode: {path}: {exc}", file=sys.stderr)
                return 2
    errors = 0
    indent = 2 if args.pretty else None
    for record in decode_log(items, include_foreign=args.foreign):  # type: ignore[arg-type]
        errors += "error" in record
        print(json.dumps(record, indent=indent, ensure_ascii=False))
    if errors:
        print(f"station gbt decode: {errors} record(s) with errors", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.gbt_command == "decode":
        return _decode(args)
    from drivers.gbt27930.diagram import write_diagrams

    for path in write_diagrams(Path(args.out)):
        print(path)
    return 0
