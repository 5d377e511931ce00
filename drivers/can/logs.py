"""Reading python-can's log formats (.asc .blf .csv .db .mf4 .trc, and .gz) as GB/T log frames.

This lives in the CAN adapter layer, not in ``drivers/gbt27930``: the codec and its tools stay free of
python-can, and this is the one place a capture in another tool's format is turned into our frames.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can

from drivers.gbt27930.candump import LogFrame, LogLineError
from drivers.gbt27930.frame import Frame


class LogUnreadable(Exception):
    """A log python-can cannot open: unknown suffix, missing optional package (asammdf for .mf4), bad header."""


def open_python_can_log(path: str) -> Iterator[LogFrame | LogLineError]:
    """Frames of any python-can log format, as LogFrame (error frames and 11-bit frames are skipped). The
    file is opened here, so a log that cannot be read at all fails before anything is printed."""
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
    return python_can_frames(reader)


def python_can_frames(reader: Any) -> Iterator[LogFrame | LogLineError]:
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
