"""Reading ``candump -l`` logs: ``(1703560127.487397) can0 1826F456#010100`` per line (sans-IO: lines in,
timestamped frames out). python-can's other log formats are read by the CLI through ``can.LogReader``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from drivers.gbt27930.frame import Frame, parse_candump_frame


@dataclass(frozen=True)
class LogFrame:
    t: float
    channel: str
    frame: Frame


class LogLineError(ValueError):
    """A part of a log that is not a frame. ``line_no`` is None where the format has no lines to count
    (the rest of a corrupt binary log)."""

    def __init__(self, line_no: int | None, reason: str) -> None:
        self.line_no = line_no
        self.reason = reason
        super().__init__(reason if line_no is None else f"line {line_no}: {reason}")


def parse_line(line: str, line_no: int = 0) -> LogFrame | None:
    """One log line -> LogFrame; None for blank lines and comments; LogLineError for anything else."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    parts = text.split()
    if len(parts) < 3 or not (parts[0].startswith("(") and parts[0].endswith(")")):
        raise LogLineError(line_no, f"not a candump -l line: '{text[:60]}'")
    try:
        t = float(parts[0][1:-1])
    except ValueError:
        raise LogLineError(line_no, f"bad timestamp {parts[0]}") from None
    try:
        frame = parse_candump_frame(parts[2])
    except ValueError as exc:
        raise LogLineError(line_no, str(exc)) from None
    return LogFrame(t, parts[1], frame)


def read_candump(lines: Iterable[str]) -> Iterator[LogFrame | LogLineError]:
    """Every frame of a candump log, in file order; a bad line yields its error and reading goes on."""
    for n, line in enumerate(lines, 1):
        try:
            item = parse_line(line, n)
        except LogLineError as exc:
            yield exc
            continue
        if item is not None:
            yield item
