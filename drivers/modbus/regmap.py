"""Register maps: one YAML file describes what a Modbus device holds and where (config/devices/*.yaml).

A map names each *point* (``voltage_setpoint``, ``soc``, ``fault_word`` ...) and says where it lives
(table + address), how its registers encode the physical value (type, word order, scale), who may write it
(access, read-back verification), what is plausible (range), how often it is read (poll group) and, for
fault words, what each bit means and whom a fault is attributed to. Drivers are generic: everything that
differs between a DC module, a SunSpec battery and a meter is in the map, so a new device is a new file.

Validation works like the station config (:mod:`station.config`): field rules first (pydantic, unknown
keys are errors), then cross-checks over the whole map (overlapping registers, scale-factor references,
SunSpec model layout). Every problem is a :class:`station.config.ConfigIssue` naming the key path and the
rule, e.g. ``points.soc.scale: SunSpec scale-factor point 'soc_sf' is not defined``; all of them are
collected and raised together as :class:`MapError`.

Public API::

    load_map(path) -> RegisterMap              # read + validate a YAML file, raise MapError
    parse_map(data, source="") -> RegisterMap  # the same on already-parsed data
    RegisterMap.points: dict[str, Point]       # in file order
    RegisterMap.poll_groups: dict[str, PollGroup]
    RegisterMap.sunspec: SunSpecLayout | None
    Point.size -> int                          # registers (or coils) the point occupies
    Point.fault_bits() / Point.active_bits(word)

Scale convention (SunSpec's, used for every map): ``value = raw * 10**scale``; ``scale`` is either a
fixed integer exponent or the name of an ``s16`` scale-factor point (``*_SF``) of the same map whose
current value is the exponent.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from station.attribution import Party
from station.config import ConfigError, ConfigIssue, issues_from_validation_error, read_yaml

Table = Literal["holding", "input", "coil", "discrete"]
PointType = Literal["u16", "s16", "u32", "s32", "f32", "string", "bits16", "bits32", "bool"]
Access = Literal["r", "rw", "w"]
WordOrder = Literal["big", "little"]
Reaction = Literal["derate", "stop_gun", "stop_station", "keep_going"]

PointName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

#: registers per type (``string`` takes ``length``; ``bool`` lives in the bit tables, one coil each)
TYPE_SIZE: dict[str, int] = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2, "bits16": 1, "bits32": 2, "bool": 1}
BIT_WIDTH: dict[str, int] = {"bits16": 16, "bits32": 32}
REGISTER_TABLES = ("holding", "input")
BIT_TABLES = ("coil", "discrete")
READ_ONLY_TABLES = ("input", "discrete")
MAX_ADDRESS = 65535


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PollGroup(_Strict):
    """How often the points of a group are read; the station config may override ``period_s``."""

    period_s: float = Field(gt=0)
    description: str = ""


class Range(_Strict):
    """Plausible physical values: a reading outside is a fault of the device, a write outside a bug."""

    min: float | None = None
    max: float | None = None

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class Bit(_Strict):
    """One bit of a ``bits16``/``bits32`` point. A bit with ``attributed_to`` and ``reaction`` is a fault
    bit (the safety supervisor acts on it); without them it is status information."""

    name: PointName
    description: str = ""
    attributed_to: Party | None = None
    reaction: Reaction | None = None

    @model_validator(mode="after")
    def _fault_pair(self) -> Bit:
        if (self.attributed_to is None) != (self.reaction is None):
            raise ValueError("a fault bit needs both attributed_to and reaction")
        return self

    @property
    def is_fault(self) -> bool:
        return self.reaction is not None


class Point(_Strict):
    """One named value of a device. ``name`` is filled in from its key in ``points``."""

    name: str = ""
    address: int
    table: Table
    type: PointType
    length: int | None = Field(default=None, gt=0, le=125)  # registers, strings only
    word_order: WordOrder | None = None  # 32-bit types; None = the map's default
    scale: int | str = 0  # exponent, or the name of an s16 scale-factor point
    unit: str = ""
    access: Access = "r"
    verify: bool = False  # check each write by reading it back
    range: Range | None = None
    poll: str | None = None  # poll group; None = read on demand only
    bits: dict[int, Bit] | None = None  # bits16/bits32 only
    description: str = ""

    @property
    def size(self) -> int:
        """Registers (coils for ``bool``) the point occupies."""
        return self.length if self.type == "string" and self.length else TYPE_SIZE.get(self.type, 1)

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.size

    @property
    def readable(self) -> bool:
        return self.access in ("r", "rw")

    @property
    def writable(self) -> bool:
        return self.access in ("rw", "w")

    def fault_bits(self) -> dict[int, Bit]:
        """The bits that are faults (with attribution and reaction), by bit index."""
        return {i: b for i, b in (self.bits or {}).items() if b.is_fault}

    def active_bits(self, word: int | None) -> list[Bit]:
        """The named bits set in ``word`` (None, i.e. not implemented, has none)."""
        if word is None:
            return []
        return [b for i, b in sorted((self.bits or {}).items()) if word >> i & 1]


class SunSpecModel(_Strict):
    id: int = Field(ge=1, le=65534)
    length: int = Field(ge=0, le=65535)  # registers after the two-register header (ID, L)


class SunSpecLayout(_Strict):
    """SunSpec chain: 'SunS' at ``base``, then each model as (ID, L, body), then the end model 0xFFFF/0."""

    base: int = Field(default=40000, ge=0, le=MAX_ADDRESS)
    models: list[SunSpecModel] = Field(min_length=1)

    def model_spans(self) -> list[tuple[SunSpecModel, int, int]]:
        """(model, header address, one past the body) for every model, in chain order."""
        spans = []
        addr = self.base + 2
        for m in self.models:
            spans.append((m, addr, addr + 2 + m.length))
            addr += 2 + m.length
        return spans

    @property
    def end_address(self) -> int:
        """Address of the end-model header (0xFFFF, 0)."""
        return self.base + 2 + sum(2 + m.length for m in self.models)


class RegisterMap(_Strict):
    """A validated register map (see the module docstring and docs/modbus.md)."""

    device: str = Field(min_length=1)
    description: str = ""
    word_order: WordOrder = "big"  # default for 32-bit points
    not_implemented: Literal["sunspec", "none"] = "sunspec"  # decode SunSpec sentinels as None?
    max_gap: int = Field(default=8, ge=0, le=124)  # registers a read may skip to batch two points
    poll_groups: dict[str, PollGroup] = Field(default_factory=dict)
    sunspec: SunSpecLayout | None = None
    points: dict[PointName, Point] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("points"), dict):
            pts = {}
            for k, v in data["points"].items():
                pts[k] = {**v, "name": k} if isinstance(v, dict) and "name" not in v else v
            data = {**data, "points": pts}
        return data

    def word_order_of(self, point: Point) -> WordOrder:
        return point.word_order or self.word_order

    def point(self, name: str) -> Point:
        try:
            return self.points[name]
        except KeyError:
            raise KeyError(f"map '{self.device}' has no point '{name}'") from None

    def polled(self, group: str) -> list[Point]:
        """Points read in poll group ``group``, in address order."""
        return sorted((p for p in self.points.values() if p.poll == group), key=lambda p: (p.table, p.address))

    def scale_factor_points(self) -> set[str]:
        return {p.scale for p in self.points.values() if isinstance(p.scale, str)}


class MapError(ConfigError):
    """Every problem of a map (``.issues``: list of :class:`ConfigIssue` with ``path`` and ``rule``); the
    station file's error, so the two share one message format and one handler."""


# --------------------------------------------------------------------------- cross-checks


def cross_check(m: RegisterMap) -> list[ConfigIssue]:
    """Rules that need the whole map or several keys of a point. Returns the issues found."""
    issues: list[ConfigIssue] = []

    def err(path: str, rule: str) -> None:
        issues.append(ConfigIssue(path, rule))

    for name, p in m.points.items():
        at = f"points.{name}"
        if not 0 <= p.address <= MAX_ADDRESS:
            err(f"{at}.address", f"must be within 0..{MAX_ADDRESS}")
        elif p.end - 1 > MAX_ADDRESS:
            err(f"{at}.address", f"{p.size} register(s) from {p.address} run past {MAX_ADDRESS}")
        if p.type == "string" and p.length is None:
            err(f"{at}.length", "is required for a string (registers, 2 characters each)")
        if p.type != "string" and p.length is not None:
            err(f"{at}.length", "only strings have a length")
        if p.type == "bool" and p.table in REGISTER_TABLES:
            err(f"{at}.type", f"bool lives in a coil or discrete table, not in '{p.table}'")
        if p.type != "bool" and p.table in BIT_TABLES:
            err(f"{at}.type", f"a {p.table} holds single bits: type must be bool")
        if p.table in READ_ONLY_TABLES and p.writable:
            err(f"{at}.access", f"'{p.table}' is read-only: access must be r")
        if p.word_order is not None and (p.size != 2 or p.type in ("string", "bool")):
            err(f"{at}.word_order", "only 32-bit types have a word order")
        if p.verify and p.access != "rw":
            err(f"{at}.verify", "read-back needs access rw")
        if p.poll is not None:
            if p.poll not in m.poll_groups:
                err(f"{at}.poll", f"poll group '{p.poll}' is not defined in poll_groups")
            if not p.readable:
                err(f"{at}.poll", "a write-only point cannot be polled")
        if p.bits is not None:
            width = BIT_WIDTH.get(p.type)
            if width is None:
                err(f"{at}.bits", "only bits16/bits32 points name their bits")
            else:
                for i in p.bits:
                    if not 0 <= i < width:
                        err(f"{at}.bits[{i}]", f"bit index must be within 0..{width - 1} for {p.type}")
                seen: dict[str, int] = {}
                for i, b in p.bits.items():
                    if b.name in seen:
                        err(f"{at}.bits[{i}].name", f"'{b.name}' already names bit {seen[b.name]}")
                    seen[b.name] = i
        if p.type in ("string", "bool", "bits16", "bits32") and p.scale != 0:
            err(f"{at}.scale", f"a {p.type} point has no scale")
        if p.type in ("string", "bool", "bits16", "bits32") and p.range is not None:
            err(f"{at}.range", f"a {p.type} point has no range")
        if p.range is not None:
            if p.range.min is None and p.range.max is None:
                err(f"{at}.range", "needs min, max or both")
            elif p.range.min is not None and p.range.max is not None and p.range.min > p.range.max:
                err(f"{at}.range", "min must not exceed max")
            for key in ("min", "max"):
                v = getattr(p.range, key)
                if v is not None and not math.isfinite(v):
                    err(f"{at}.range.{key}", "must be a finite number")
        if isinstance(p.scale, str):
            sf = m.points.get(p.scale)
            if sf is None:
                err(f"{at}.scale", f"SunSpec scale-factor point '{p.scale}' is not defined")
            elif sf.type != "s16":
                err(f"{at}.scale", f"scale-factor point '{p.scale}' must be of type s16, not {sf.type}")
            elif isinstance(sf.scale, str) or sf.scale != 0:
                err(f"points.{p.scale}.scale", "a scale-factor point is not itself scaled")
            elif not sf.readable:
                err(f"{at}.scale", f"scale-factor point '{p.scale}' must be readable")
        elif not -10 <= p.scale <= 10:
            err(f"{at}.scale", "exponent must be within -10..10")

    # registers of two points must not overlap (per table)
    by_table: dict[str, list[Point]] = {}
    for p in m.points.values():
        by_table.setdefault(p.table, []).append(p)
    for table, pts in by_table.items():
        pts.sort(key=lambda q: q.address)
        for a, b in zip(pts, pts[1:]):
            if b.address < a.end:
                err(f"points.{b.name}.address",
                    f"{table} registers {b.address}..{b.end - 1} overlap '{a.name}' ({a.address}..{a.end - 1})")

    if m.sunspec is not None:
        issues.extend(_check_sunspec(m))
    return issues


def _check_sunspec(m: RegisterMap) -> list[ConfigIssue]:
    """A SunSpec map: the chain fits the address space, points lie in model bodies of holding registers."""
    s = m.sunspec
    assert s is not None
    out: list[ConfigIssue] = []
    if s.end_address + 1 > MAX_ADDRESS:
        out.append(ConfigIssue("sunspec.models", f"the model chain runs past {MAX_ADDRESS}"))
        return out
    if s.models[0].id != 1:
        out.append(ConfigIssue("sunspec.models[0].id", "the first SunSpec model must be the common model 1"))
    bodies = [(hdr + 2, end) for _, hdr, end in s.model_spans()]
    for name, p in m.points.items():
        if p.table != "holding":
            out.append(ConfigIssue(f"points.{name}.table", "SunSpec points are holding registers"))
        elif not any(lo <= p.address and p.end <= hi for lo, hi in bodies):
            out.append(ConfigIssue(f"points.{name}.address",
                                   f"{p.address}..{p.end - 1} is not inside a SunSpec model body"))
    return out


# --------------------------------------------------------------------------- loading


def parse_map(data: Any, source: str = "") -> RegisterMap:
    """Validate already-parsed map data (both stages); raise :class:`MapError` with every issue."""
    if not isinstance(data, dict):
        raise MapError([ConfigIssue("(top level)", "must be a mapping")], source)
    try:
        regmap = RegisterMap.model_validate(data)
    except ValidationError as exc:
        raise MapError(issues_from_validation_error(exc), source) from None
    issues = cross_check(regmap)
    if issues:
        raise MapError(issues, source)
    return regmap


def load_map(path: str | Path) -> RegisterMap:
    """Read and validate a register-map YAML file; raise :class:`MapError` listing every problem."""
    from station.config import ConfigError

    try:
        data = read_yaml(path)
    except ConfigError as exc:  # YAML syntax
        raise MapError(exc.issues, str(path)) from None
    except OSError as exc:
        raise MapError([ConfigIssue("(file)", f"cannot read: {exc.strerror}")], str(path)) from None
    return parse_map(data, str(path))


def resolve_map_path(station_file: str | Path, ref: str) -> Path:
    """A station config's ``map:`` entry, relative to the station file's folder unless absolute."""
    p = Path(ref)
    return p if p.is_absolute() else Path(station_file).resolve().parent / p
