"""What every device simulator shares: units with register images, the server, the injected clock, the
write log, forced values and the fault knobs.

Programmatic API (the same for the cabinet, the BESS and the meter)::

    sim = BessSim(regmap, rating).start(port=0)     # free loopback port: sim.port
    sim.step(0.1)                                   # physics on the injected clock (sim.now += dt)
    sim.value("soc")                                # what a client would read now
    sim.writes / sim.last_written("p_setpoint")     # what clients wrote
    sim.knobs(unit).silent = True                   # fault knobs, see hil.devices.server.Knobs
    sim.set_exception("soc", 4)                     # exception code for any request touching a point
    sim.force("soc", 250.0)                         # a value out of range, fault bits, ... until release()
    sim.stop()

Subclasses implement ``_on_write`` (a client command reaches the plant at once) and ``_refresh`` (copy
the plant's state into the images); ``step`` runs the plant between the two under the lock, so a client
never reads a half-updated image.
"""

from __future__ import annotations

import threading
from typing import Any

from drivers.modbus.codec import Value
from drivers.modbus.regmap import RegisterMap
from hil.devices.image import RegisterImage, Write
from hil.devices.server import Knobs, SimServer


class DeviceSim:
    """Base of the device simulators: ``units`` maps unit id to its register image."""

    def __init__(self, regmap: RegisterMap, units: list[int]) -> None:
        if not units or any(not 1 <= u <= 247 for u in units):
            raise ValueError(f"unit ids must be within 1..247, got {units}")
        self.regmap = regmap
        self.images: dict[int, RegisterImage] = {u: RegisterImage(regmap) for u in units}
        self.lock = threading.Lock()
        self.now = 0.0
        self.writes: list[Write] = []
        self._forced: dict[tuple[int, str], Any] = {}
        self.server: SimServer | None = None
        self._server_knobs = {u: Knobs() for u in units}

    def require(self, *names: str) -> None:
        """Refuse a map that lacks a point this simulator drives (a typo would otherwise read 0 forever)."""
        missing = [n for n in names if n not in self.regmap.points]
        if missing:
            raise ValueError(f"map '{self.regmap.device}' lacks the point(s) {', '.join(missing)} "
                             f"that {type(self).__name__} needs")

    @property
    def units(self) -> list[int]:
        return sorted(self.images)

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("the simulator is not started")
        return self.server.port

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> DeviceSim:
        """Listen on ``host:port`` (0: a free port, see ``port``) and serve the current state."""
        with self.lock:
            self._refresh()
            self._apply_forced()
        self.server = SimServer(self.images, self.lock, self._write_hook, host, port)
        self.server.knobs = self._server_knobs
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> DeviceSim:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ physics

    def step(self, dt_s: float) -> None:
        """Advance the plant by ``dt_s`` seconds of simulated time and publish the new state."""
        if dt_s < 0:
            raise ValueError("dt must be >= 0")
        with self.lock:
            self.now += dt_s
            self._advance(dt_s)
            self._refresh()
            self._apply_forced()

    def _advance(self, dt_s: float) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _refresh(self) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _on_write(self, unit: int, points: tuple[str, ...]) -> None:
        """A client wrote ``points`` of ``unit``; the image already holds the new words."""

    def _write_hook(self, unit: int, table: str, address: int, words: list[int]) -> None:
        points = self.images[unit].apply_write(table, address, words)
        self.writes.append(Write(unit, table, address, tuple(words), points, self.now))
        self._on_write(unit, points)
        self._refresh()  # a command's immediate effects (a reset fault word, a status bit) show at once
        self._apply_forced()

    # ------------------------------------------------------------------ observation

    def value(self, name: str, unit: int | None = None) -> Value:
        """The physical value of ``name`` as a client would read it now."""
        with self.lock:
            return self.images[self._unit(unit)].get(name)

    def last_written(self, name: str, unit: int | None = None) -> Value:
        """The value a client last wrote to ``name`` (None if never written)."""
        u = self._unit(unit)
        with self.lock:
            for w in reversed(self.writes):
                if w.unit == u and name in w.points:
                    return self.images[u].get(name)
        return None

    def _unit(self, unit: int | None) -> int:
        if unit is None:
            return self.units[0]
        if unit not in self.images:
            raise KeyError(f"no unit {unit} (units: {self.units})")
        return unit

    # ------------------------------------------------------------------ fault knobs

    def knobs(self, unit: int | None = None) -> Knobs:
        """Wire-level faults of ``unit``: ``silent``, ``delay_s``, ``corrupt``, ``exceptions``."""
        return self._server_knobs[self._unit(unit)]

    def set_exception(self, name_or_address: str | int, code: int, unit: int | None = None,
                      table: str = "holding") -> None:
        """Answer any request touching a point (or a single address of ``table``) with exception ``code``."""
        k = self.knobs(unit)
        if isinstance(name_or_address, str):
            p = self.regmap.point(name_or_address)
            for a in range(p.address, p.end):
                k.exceptions[(p.table, a)] = code
        else:
            k.exceptions[(table, name_or_address)] = code

    def force(self, name: str, value: Any, unit: int | None = None) -> None:
        """Report ``value`` for ``name`` whatever the plant says (out-of-range values, fault bits), until
        :meth:`release`. Bypasses ranges on purpose: that is the point of the knob."""
        self.regmap.point(name)
        with self.lock:
            self._forced[(self._unit(unit), name)] = value
            self._apply_forced()

    def release(self, name: str, unit: int | None = None) -> None:
        with self.lock:
            self._forced.pop((self._unit(unit), name), None)
            self._refresh()
            self._apply_forced()

    def clear_faults(self) -> None:
        """Every knob back to normal and every forced value released."""
        for k in self._server_knobs.values():
            k.clear()
        with self.lock:
            self._forced.clear()
            self._refresh()

    def _apply_forced(self) -> None:
        for (unit, name), value in self._forced.items():
            self.images[unit].set(name, value)

    def _publish(self, unit: int, values: dict[str, Value]) -> None:
        """Write plant values to points the map has (a map may leave optional points out)."""
        img = self.images[unit]
        for name, v in values.items():
            if name in self.regmap.points:
                img.set(name, v)
