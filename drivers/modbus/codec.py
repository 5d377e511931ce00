"""Sans-IO Modbus codec: physical values <-> register words, per the point's type, word order and scale.

No sockets and no pymodbus here, so the same code serves the drivers, the simulators and the tests.

Conventions (docs/modbus.md):

- a register is an int 0..65535; a 32-bit value takes two registers, high word first (``big``) or low
  word first (``little``); bytes inside a register are always big-endian (Modbus);
- ``value = raw * 10**scale`` (SunSpec). With a fixed ``scale`` 0 integers stay ``int``; any other scale
  gives ``float``. A scale that names a ``*_SF`` point needs that point's current value (an exponent);
- with ``not_implemented: sunspec`` (the default), SunSpec's "not implemented" patterns decode to
  ``None``: 0xFFFF (u16, bits16), 0x8000 (s16), 0xFFFFFFFF (u32, bits32), 0x80000000 (s32), NaN (f32)
  and an all-NUL string. A scale factor that is not implemented makes its scaled points ``None``;
- strings are 2 characters per register, padded with NUL; ``bool`` points (coil/discrete) are
  ``[0]``/``[1]`` in and out.

Public API::

    encode(regmap, point, value, scale_factor=None) -> list[int]
    decode(regmap, point, words, scale_factor=None) -> Value
    in_range(point, value) -> bool
    read_plan(regmap, points=None, max_gap=None) -> list[Block]
    decode_block(regmap, block, words, scale_factors=None) -> dict[str, Value]
    decode_blocks(regmap, blocks, words_per_block, scale_factors=None) -> dict[str, Value]
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from drivers.modbus.regmap import BIT_TABLES, BIT_WIDTH, Point, RegisterMap

Value = int | float | str | bool | None

#: Modbus limits per read request (function codes 3/4 and 1/2)
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000

_INT_BOUNDS = {
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "s32": (-0x80000000, 0x7FFFFFFF),
    "bits16": (0, 0xFFFF),
    "bits32": (0, 0xFFFFFFFF),
}
#: raw (already sign-converted) values SunSpec uses for "not implemented"
_SENTINEL = {"u16": 0xFFFF, "s16": -0x8000, "u32": 0xFFFFFFFF, "s32": -0x80000000,
             "bits16": 0xFFFF, "bits32": 0xFFFFFFFF}


class CodecError(ValueError):
    """A value that cannot be encoded, or words that do not fit the point (message names the point)."""


# --------------------------------------------------------------------------- words <-> raw


def _split32(raw: int, word_order: str) -> list[int]:
    hi, lo = raw >> 16 & 0xFFFF, raw & 0xFFFF
    return [hi, lo] if word_order == "big" else [lo, hi]


def _join32(words: Sequence[int], word_order: str) -> int:
    hi, lo = (words[0], words[1]) if word_order == "big" else (words[1], words[0])
    return hi << 16 | lo


def raw_to_words(type_: str, raw: int | float | str, word_order: str = "big", length: int = 1) -> list[int]:
    """Raw register content (integer, float for f32, text for string) to words. No scaling."""
    if type_ == "f32":
        bits = struct.unpack(">I", struct.pack(">f", float(raw)))[0]
        return _split32(bits, word_order)
    if type_ == "string":
        data = str(raw).encode("utf-8")
        if len(data) > 2 * length:
            raise CodecError(f"text of {len(data)} bytes does not fit {length} register(s)")
        data = data.ljust(2 * length, b"\0")
        return [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]
    if type_ == "bool":
        return [1 if raw else 0]
    lo, hi = _INT_BOUNDS[type_]
    if not isinstance(raw, int) or not lo <= raw <= hi:
        raise CodecError(f"raw value {raw!r} does not fit {type_} ({lo}..{hi})")
    unsigned = raw & 0xFFFFFFFF if type_ in ("s16", "s32") else raw
    if type_ in ("u16", "s16", "bits16"):
        return [unsigned & 0xFFFF]
    return _split32(unsigned, word_order)


def words_to_raw(type_: str, words: Sequence[int], word_order: str = "big") -> int | float | str | bool:
    """Words to raw register content (sign applied, float unpacked, text decoded). No scaling."""
    if type_ == "string":
        data = b"".join(bytes((w >> 8 & 0xFF, w & 0xFF)) for w in words)
        return data.split(b"\0", 1)[0].decode("utf-8", errors="replace").rstrip()
    if type_ == "bool":
        return bool(words[0])
    if type_ in ("u16", "bits16"):
        return words[0]
    if type_ == "s16":
        return words[0] - 0x10000 if words[0] & 0x8000 else words[0]
    raw = _join32(words, word_order)
    if type_ == "f32":
        return struct.unpack(">f", struct.pack(">I", raw))[0]
    if type_ == "s32":
        return raw - 0x100000000 if raw & 0x80000000 else raw
    return raw  # u32, bits32


# --------------------------------------------------------------------------- points


def _exponent(regmap: RegisterMap, point: Point, scale_factor: int | None) -> int | None:
    """The power of ten of ``point``; None when its scale factor is not implemented."""
    if isinstance(point.scale, int):
        return point.scale
    if scale_factor is None:
        raise CodecError(f"points.{point.name}: needs the value of scale-factor point '{point.scale}'")
    return scale_factor


def encode(regmap: RegisterMap, point: Point, value: Value, scale_factor: int | None = None) -> list[int]:
    """Physical ``value`` of ``point`` to the words to write (``[0]``/``[1]`` for a coil).

    ``scale_factor`` is the current value of the point's ``*_SF`` point when its scale names one.
    A bits point takes an int or an iterable of bit names. ``None`` writes the not-implemented pattern
    (what a SunSpec device reports for a point it lacks; used by the simulators).
    """
    t, order = point.type, regmap.word_order_of(point)
    if value is None:
        if t == "f32":
            return raw_to_words("f32", math.nan, order)
        if t == "string":
            return [0] * point.size
        if t in _SENTINEL:
            return raw_to_words(t, _SENTINEL[t], order)
        raise CodecError(f"points.{point.name}: a {t} point has no not-implemented value")
    if t == "string":
        if not isinstance(value, str):
            raise CodecError(f"points.{point.name}: expects text, got {value!r}")
        try:
            return raw_to_words(t, value, order, point.size)
        except CodecError as exc:
            raise CodecError(f"points.{point.name}: {exc}") from None
    if t == "bool":
        return [1 if value else 0]
    if t in BIT_WIDTH:
        return raw_to_words(t, _bits_value(point, value), order)
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
        raise CodecError(f"points.{point.name}: expects a number, got {value!r}")
    exp = _exponent(regmap, point, scale_factor)
    if exp is None:
        raise CodecError(f"points.{point.name}: scale factor '{point.scale}' is not implemented")
    if not math.isfinite(value) and t != "f32":
        raise CodecError(f"points.{point.name}: {value} cannot be written to a {t}")
    if t == "f32":
        return raw_to_words(t, value / 10.0**exp if exp else value, order)
    raw = round(value / 10.0**exp) if exp else round(value)
    lo, hi = _INT_BOUNDS[t]
    if not lo <= raw <= hi:
        raise CodecError(f"points.{point.name}: {value:g} {point.unit} (raw {raw}) does not fit {t} "
                         f"({lo}..{hi} at scale 10^{exp})")
    return raw_to_words(t, raw, order)


def _bits_value(point: Point, value: Value | Iterable[str]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Iterable) and not isinstance(value, str):
        index = {b.name: i for i, b in (point.bits or {}).items()}
        word = 0
        for name in value:
            if name not in index:
                raise CodecError(f"points.{point.name}: no bit named '{name}'")
            word |= 1 << index[name]
        return word
    raise CodecError(f"points.{point.name}: expects an int or bit names, got {value!r}")


def decode(regmap: RegisterMap, point: Point, words: Sequence[int], scale_factor: int | None = None) -> Value:
    """Words of ``point`` to its physical value (None for SunSpec "not implemented")."""
    if len(words) != point.size:
        raise CodecError(f"points.{point.name}: expects {point.size} word(s), got {len(words)}")
    t = point.type
    raw = words_to_raw(t, words, regmap.word_order_of(point))
    sunspec = regmap.not_implemented == "sunspec"
    if sunspec:
        if t == "string" and raw == "" and not any(words):
            return None
        if t == "f32" and math.isnan(raw):  # type: ignore[arg-type]
            return None
        if t in _SENTINEL and raw == _SENTINEL[t]:
            return None
    if t in ("string", "bool") or t in BIT_WIDTH:
        return raw
    if isinstance(point.scale, str) and sunspec and scale_factor == _SENTINEL["s16"]:
        return None  # the scale factor itself is not implemented
    exp = _exponent(regmap, point, scale_factor)
    if exp is None:
        return None
    if isinstance(point.scale, int) and exp == 0:
        return raw
    return float(raw) * 10.0**exp  # type: ignore[arg-type]


def in_range(point: Point, value: Value) -> bool:
    """Whether a decoded value lies in the point's plausible range (None and unranged points: True)."""
    if point.range is None or value is None or isinstance(value, (str, bool)):
        return True
    return point.range.contains(float(value))


# --------------------------------------------------------------------------- batching


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``, covering ``points``
    (names, in address order). Registers between points are read and ignored (``max_gap``)."""

    table: str
    address: int
    count: int
    points: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def read_plan(
    regmap: RegisterMap,
    points: Iterable[str | Point] | None = None,
    max_gap: int | None = None,
    max_count: int = MAX_REGISTERS_PER_READ,
) -> list[Block]:
    """Batch ``points`` (default: every readable point) into as few reads as the Modbus limits allow.

    Points of one table whose registers are at most ``max_gap`` apart (default: the map's ``max_gap``)
    share a block, as long as it stays within ``max_count`` registers (2000 bits for coil/discrete).
    The scale-factor points the selected points need are added, so one pass of reads decodes everything.
    """
    gap = regmap.max_gap if max_gap is None else max_gap
    if points is None:
        chosen = [p for p in regmap.points.values() if p.readable]
    else:
        chosen = [regmap.point(p) if isinstance(p, str) else p for p in points]
    names = {p.name for p in chosen}
    for p in list(chosen):
        if not p.readable:
            raise CodecError(f"points.{p.name}: is write-only and cannot be read")
        if isinstance(p.scale, str) and p.scale not in names:
            names.add(p.scale)
            chosen.append(regmap.point(p.scale))
    blocks: list[Block] = []
    for table in sorted({p.table for p in chosen}):
        limit = MAX_BITS_PER_READ if table in BIT_TABLES else max_count
        run: list[Point] = []
        start = end = 0
        for p in sorted((q for q in chosen if q.table == table), key=lambda q: q.address):
            if run and p.address - end <= gap and max(end, p.end) - start <= limit:
                run.append(p)
                end = max(end, p.end)
                continue
            if run:
                blocks.append(Block(table, start, end - start, tuple(q.name for q in run)))
            run, start, end = [p], p.address, p.end
        if run:
            blocks.append(Block(table, start, end - start, tuple(q.name for q in run)))
    return blocks


def decode_block(
    regmap: RegisterMap,
    block: Block,
    words: Sequence[int],
    scale_factors: Mapping[str, int | None] | None = None,
) -> dict[str, Value]:
    """Values of every point of ``block`` from the words read for it (bools for coil/discrete blocks).

    Scale factors come from the block itself when it holds them, else from ``scale_factors`` (e.g. the
    ones a driver read earlier; SunSpec scale factors rarely change).
    """
    if len(words) < block.count:
        raise CodecError(f"block {block.table}@{block.address}: expects {block.count} words, got {len(words)}")
    sfs: dict[str, int | None] = dict(scale_factors or {})
    points = [regmap.point(n) for n in block.points]
    for p in points:  # scale factors of this block first: other points need them
        if p.name in regmap.scale_factor_points():
            sfs[p.name] = _sf_value(regmap, p, words[p.address - block.address:p.end - block.address])
    out: dict[str, Value] = {}
    for p in points:
        chunk = [int(w) for w in words[p.address - block.address:p.end - block.address]]
        if isinstance(p.scale, str):
            if p.scale not in sfs:
                raise CodecError(f"points.{p.name}: scale factor '{p.scale}' was not read")
            sf = sfs[p.scale]
            out[p.name] = None if sf is None else decode(regmap, p, chunk, sf)
        else:
            out[p.name] = decode(regmap, p, chunk)
    return out


def _sf_value(regmap: RegisterMap, p: Point, words: Sequence[int]) -> int | None:
    v = decode(regmap, p, [int(w) for w in words])
    return None if v is None else int(v)


def decode_blocks(
    regmap: RegisterMap,
    blocks: Sequence[Block],
    words_per_block: Sequence[Sequence[int]],
    scale_factors: Mapping[str, int | None] | None = None,
) -> dict[str, Value]:
    """Decode a whole read plan: scale factors from any block apply to points of every other block."""
    sfs: dict[str, int | None] = dict(scale_factors or {})
    sf_names = regmap.scale_factor_points()
    for block, words in zip(blocks, words_per_block):
        for n in block.points:
            if n in sf_names:
                p = regmap.point(n)
                sfs[n] = _sf_value(regmap, p, words[p.address - block.address:p.end - block.address])
    out: dict[str, Value] = {}
    for block, words in zip(blocks, words_per_block):
        out.update(decode_block(regmap, block, words, sfs))
    return out
