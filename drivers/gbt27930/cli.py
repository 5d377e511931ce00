"""``station gbt``: tools for the vehicle link.

``station gbt decode FILE`` prints one JSON object per GB/T message in a capture, transport-reassembled:
``{"t": ..., "name": "BCL", "from": "bms", "id": "181056F4", "fields": {...}}``. ``candump -l`` logs
(``.log``, or ``-`` for stdin) are read directly; ``.asc .blf .csv .db .mf4 .trc`` (and ``.gz``) go through
python-can's readers. Exit status: 0 decoded (even with bad records), 1 the log broke part-way, 2 unreadable.
``station gbt diagram`` re-renders the session state diagram into docs/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from drivers.gbt27930.candump import LogFrame, LogLineError, read_candump
from drivers.gbt27930.decode import decode_log
from drivers.gbt27930.frame import Frame

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


class LogUnreadable(Exception):
    """A log python-can cannot open: unknown suffix, missing optional package (asammdf for .mf4), bad header."""


def _open_python_can_log(path: str) -> Iterator[LogFrame | LogLineError]:
    """Frames of any python-can log format, as LogFrame (error frames and 11-bit frames are skipped). The
    file is opened here, so a log that cannot be read at all fails before anything is printed."""
    import can  # only here: the codec stays free of python-can

    suffixes = [s.lower() for s in Path(path).suffixes]
    try:
        # ASC stores times relative to its header's date: ask for absolute ones, like every other format
        # (python-can 4.6.1's LogReader drops keyword arguments for .gz files, so open those here)
        if suffixes[-1:] == [".asc"]:
            reader = can.ASCReader(path, relative_timestamp=False)
        elif suffixes[-2:] == [".asc", ".gz"]:
            reader = can.ASCReader(gzip.open(path, "rt"), relative_timestamp=False)
        else:
            reader = can.LogReader(path)
    except Exception as exc:  # each python-can reader fails its own way (ValueError, struct.error, sqlite3...)
        raise LogUnreadable(f"{type(exc).__name__}: {exc}") from exc
    return _python_can_frames(reader)


def _python_can_frames(reader: Any) -> Iterator[LogFrame | LogLineError]:
    count = 0
    with reader:
        try:
            for msg in reader:
                count += 1
                if msg.is_error_frame or not msg.is_extended_id or msg.is_remote_frame:
                    continue
                yield LogFrame(msg.timestamp, str(msg.channel or ""), Frame(msg.arbitration_id, bytes(msg.data)))
        except Exception as exc:  # a corrupt or truncated file: keep what was decoded, say where it broke
            yield LogLineError(None, f"log unreadable after {count} frames: {type(exc).__name__}: {exc}")


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
            try:
                items = _open_python_can_log(path)
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
