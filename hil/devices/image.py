"""The register content of one simulated Modbus unit, built from its register map (sans-IO).

The simulators keep their device state here, in *register words*, exactly as a real device would: the
plant writes physical values through :mod:`drivers.modbus.codec` (``set``), a client's write lands as
words (``apply_write``) and the simulator reads it back as a physical value (``get``). Because the words
are encoded by the same codec the driver decodes with, any disagreement between map, simulator and
driver shows up as a wrong value in a test, not as a silent convention mismatch.

For a SunSpec map the whole model chain is present, as a SunSpec client expects when it scans:
the 'SunS' marker, each model's (ID, L) header, every register of every model body (points the map does
not name read as 0), and the end model (0xFFFF, 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.modbus.codec import Value, decode, encode
from drivers.modbus.regmap import REGISTER_TABLES, RegisterMap

TABLES = ("coil", "discrete", "holding", "input")


@dataclass(frozen=True)
class Write:
    """One write request a client made: where, the words (0/1 for coils), the points it touched and the
    simulated time it arrived at."""

    unit: int
    table: str
    address: int
    words: tuple[int, ...]
    points: tuple[str, ...]
    at: float


class RegisterImage:
    """Words of every defined address of one unit, per table, and which addresses a client may write."""

    def __init__(self, regmap: RegisterMap) -> None:
        self.regmap = regmap
        self.words: dict[str, dict[int, int]] = {t: {} for t in TABLES}
        self.writable: dict[str, set[int]] = {t: set() for t in TABLES}
        self._owner: dict[tuple[str, int], str] = {}
        if regmap.sunspec is not None:
            self._lay_out_sunspec()
        for p in regmap.points.values():
            for a in range(p.address, p.end):
                self.words[p.table].setdefault(a, 0)
                self._owner[(p.table, a)] = p.name
                if p.writable:
                    self.writable[p.table].add(a)

    def _lay_out_sunspec(self) -> None:
        s = self.regmap.sunspec
        assert s is not None
        h = self.words["holding"]
        h[s.base], h[s.base + 1] = 0x5375, 0x6E53  # 'SunS'
        for model, header, end in s.model_spans():
            h[header], h[header + 1] = model.id, model.length
            for a in range(header + 2, end):
                h[a] = 0
        h[s.end_address], h[s.end_address + 1] = 0xFFFF, 0

    # ------------------------------------------------------------------ physical values

    def set(self, name: str, value: Value | list[str]) -> None:
        """Store the physical ``value`` of point ``name`` (None: the not-implemented pattern)."""
        p = self.regmap.point(name)
        words = encode(self.regmap, p, value, self._scale_factor(name))  # type: ignore[arg-type]
        for i, w in enumerate(words):
            self.words[p.table][p.address + i] = w

    def get(self, name: str) -> Value:
        """The physical value point ``name`` holds now (as a client would decode it)."""
        p = self.regmap.point(name)
        words = [self.words[p.table][a] for a in range(p.address, p.end)]
        return decode(self.regmap, p, words, self._scale_factor(name))

    def _scale_factor(self, name: str) -> int | None:
        p = self.regmap.points[name]
        if not isinstance(p.scale, str):
            return None
        sf = self.get(p.scale)
        return None if sf is None else int(sf)

    def has(self, name: str) -> bool:
        return name in self.regmap.points

    # ------------------------------------------------------------------ what clients see

    def defined(self, table: str, address: int, count: int) -> bool:
        """Whether every address of a request exists (a real device answers 'illegal address' otherwise)."""
        t = self.words[table]
        return all(a in t for a in range(address, address + count))

    def may_write(self, table: str, address: int, count: int) -> bool:
        w = self.writable[table]
        return all(a in w for a in range(address, address + count))

    def read(self, table: str, address: int, count: int) -> list[int]:
        t = self.words[table]
        return [t.get(a, 0) for a in range(address, address + count)]

    def apply_write(self, table: str, address: int, words: list[int]) -> tuple[str, ...]:
        """Store a client's write; return the names of the points it touched (in address order)."""
        touched: list[str] = []
        for i, w in enumerate(words):
            a = address + i
            self.words[table][a] = int(w) & 0xFFFF if table in REGISTER_TABLES else int(bool(w))
            name = self._owner.get((table, a))
            if name is not None and name not in touched:
                touched.append(name)
        return tuple(touched)

    def runs(self, table: str) -> list[tuple[int, int, bool]]:
        """Contiguous defined address runs as (first address, count, writable): the simulator's layout."""
        out: list[tuple[int, int, bool]] = []
        for a in sorted(self.words[table]):
            w = a in self.writable[table]
            if out and out[-1][0] + out[-1][1] == a and out[-1][2] == w:
                out[-1] = (out[-1][0], out[-1][1] + 1, w)
            else:
                out.append((a, 1, w))
        return out
