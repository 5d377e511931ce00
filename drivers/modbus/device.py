"""One field device over Modbus, driven by its register map: polls, verified writes, health, restore.

What this adds on top of :class:`~drivers.modbus.link.Link` (raw registers) and the codec (values):

- **batched reads**: a poll group is read with the codec's read plan (contiguous registers in one
  request), decoded, and stored as last good values with their timestamp (``LastValues``).
- **verified writes**: a write to a point the map marks ``verify`` is read back; a device that did not
  take it (clamped, read-only in its current mode, ignored) raises :class:`ReadBackMismatch` naming the
  point, the value written and the value read, compared as raw registers (exact, no float noise).
- **health and reconnection**: every exchange reports to :class:`LinkHealth`. When the link is lost the
  connection is dropped and re-opened on a capped, jittered exponential backoff timed on the injected
  clock (no sleeping here: a poll during the backoff fails at once). After every new connection the
  last commanded setpoints are re-applied, in the order they were commanded, and verified where the map
  says so, *before* the link counts as ok: a device that rebooted to its defaults must not be reported
  healthy while running on them.
- **fault attribution**: fault words are decoded into active faults with their meaning, the party they
  are attributed to and the reaction from the map, with the time each fault was first seen.

Time: ``clock`` gives "now" for health, ages and backoff; tests pass a manual clock while the I/O is
real. The driver never decides power: it reports values, ages, health and faults, and writes what it is
told.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.modbus import codec
from drivers.modbus.codec import Block, CodecError
from drivers.modbus.errors import (CorruptResponse, DeviceUnreachable, ModbusDeviceError, PointError,
                                   ReadBackMismatch)
from drivers.modbus.health import Health, HealthPolicy, LastValues, LinkHealth, Reading
from drivers.modbus.link import Endpoint, Link, SerialEndpoint, TcpEndpoint
from drivers.modbus.poller import DevicePoller, Sleep
from drivers.modbus.regmap import Point, RegisterMap
from drivers.mqtt.backoff import Backoff

log = logging.getLogger("drivers.modbus.device")

Clock = Callable[[], float]


@dataclass(frozen=True)
class DeviceConfig:
    """How to reach one device and how patient to be with it.

    ``timeout_s`` bounds one request (well under the control period); ``retries`` are immediate
    re-sends after a timeout (0 or 1 make sense: a third try rarely succeeds where two failed, and
    each costs a full timeout). ``max_age_s`` per poll group is how old a value may get before it is
    flagged stale; by default three periods of its group.
    """

    name: str
    endpoint: Endpoint
    device_id: int = 1
    timeout_s: float = 0.2
    retries: int = 0
    health: HealthPolicy = field(default_factory=HealthPolicy)
    backoff_min_s: float = 0.1
    backoff_max_s: float = 5.0
    poll_periods_s: Mapping[str, float] = field(default_factory=dict)  # overrides the map's periods
    max_age_s: Mapping[str, float] = field(default_factory=dict)


def config_from_station(name: str, endpoint: Any, *, unit_offset: int = 0, **overrides: Any) -> DeviceConfig:
    """A :class:`DeviceConfig` from a station config endpoint (``station.config.ModbusTcp``/``ModbusRtu``).

    ``unit_offset``: the n-th module of a cabinet answers on ``unit_id + n`` behind the same endpoint.
    """
    if endpoint.transport == "tcp":
        ep: Endpoint = TcpEndpoint(endpoint.host, endpoint.port)
    else:
        ep = SerialEndpoint(endpoint.serial_port, endpoint.baudrate, endpoint.parity, endpoint.stopbits)
    return DeviceConfig(name, ep, device_id=endpoint.unit_id + unit_offset, timeout_s=endpoint.timeout_s,
                        retries=endpoint.retries, **overrides)


@dataclass(frozen=True)
class ActiveFault:
    """A fault bit that is set, with what the map says it means and who it is attributed to."""

    device: str
    word: str  # the fault-word point
    bit: int
    code: str  # the bit's name in the map
    meaning: str  # its description
    party: str  # attributed_to: vehicle, charger_hardware, bess, grid_link, controller
    reaction: str  # derate, stop_gun, stop_station, keep_going
    since: float  # first poll that saw it set


@dataclass(frozen=True)
class PollResult:
    group: str
    values: Mapping[str, Any]
    error: ModbusDeviceError | None


@dataclass(frozen=True)
class DeviceSnapshot:
    """What the controller reads: everything carries its time, nothing silently stale."""

    device: str
    health: Health
    health_since: float
    readings: Mapping[str, Reading]
    stale: tuple[str, ...]
    implausible: tuple[str, ...]
    faults: tuple[ActiveFault, ...]
    last_error: str


class ModbusDevice:
    """A device from its register map over one connection. Methods are coroutines of one event loop."""

    def __init__(self, config: DeviceConfig, regmap: RegisterMap, *, clock: Clock = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.config = config
        self.name = config.name
        self.map = regmap
        self._clock = clock
        self.link = Link(config.name, config.endpoint, device_id=config.device_id, timeout_s=config.timeout_s,
                         retries=config.retries)
        self.health = LinkHealth(config.name, config.health, clock())
        self.values = LastValues()
        self.backoff = Backoff(config.backoff_min_s, config.backoff_max_s, rng)
        self.commanded: dict[str, Any] = {}  # last commanded setpoint per point, in command order
        self.journal: list[tuple[float, str, str]] = []  # (at, event, detail): connects, restores, health
        self.restores = 0
        self._next_attempt_at = clock()
        self._restored = False
        self._faults: dict[tuple[str, int], ActiveFault] = {}
        unknown = set(config.poll_periods_s) - set(regmap.poll_groups)
        if unknown:
            raise ValueError(f"{self.name}: poll_periods_s names groups the map lacks: {sorted(unknown)}")
        self.poll_periods = {g: float(config.poll_periods_s.get(g, pg.period_s)) for g, pg in regmap.poll_groups.items()}
        self._plans = {g: codec.read_plan(regmap, [p.name for p in regmap.polled(g)]) for g in self.poll_periods}
        self._max_age = {g: float(config.max_age_s.get(g, 3.0 * period)) for g, period in self.poll_periods.items()}
        self._fault_words = [p.name for p in regmap.points.values() if p.fault_bits()]

    # -- what the poller and the controller call ---------------------------------------------------

    def poller(self, sleep: Sleep = asyncio.sleep) -> DevicePoller:
        """The poll loop of this device: its groups at their periods, on this device's clock."""
        return DevicePoller(self.name, self.poll_periods, self.poll, clock=self._clock, sleep=sleep)

    def plan(self, group: str) -> list[Block]:
        """The batched reads of a poll group (what one poll sends)."""
        return self._plans[group]

    async def poll(self, group: str) -> PollResult:
        """Read one poll group (batched), update last values, health and faults. Never raises device errors."""
        try:
            values = await self._read_blocks(self._plans[group])
        except ModbusDeviceError as exc:
            self._failed(exc)
            return PollResult(group, {}, exc)
        self._store(values)
        return PollResult(group, values, None)

    async def read(self, points: Iterable[str]) -> dict[str, Any]:
        """Read the named points now (batched), outside the poll schedule. Raises device errors."""
        names = [self._point(n).name for n in points]
        try:
            blocks = codec.read_plan(self.map, names)
        except CodecError as exc:
            raise PointError(self.name, str(exc)) from None
        try:
            values = await self._read_blocks(blocks)
        except ModbusDeviceError as exc:
            self._failed(exc)
            raise
        self._store(values)
        return values

    async def write(self, point: str, value: Any) -> None:
        """Command a setpoint: remembered (re-applied after a reconnection), written, verified if mapped.

        Raises :class:`PointError` for a point the map does not let us write or a value out of its range
        (nothing is remembered then), :class:`ReadBackMismatch` if the device did not take it, or the
        link's errors. A setpoint that could not be written because the device is unreachable stays
        commanded and goes out with the restore on reconnection.
        """
        p = self._point(point)
        if not p.writable:
            raise PointError(self.name, f"{point} is not writable (access {p.access}, table {p.table})")
        if p.range is not None and isinstance(value, (int, float)) and not codec.in_range(p, value):
            raise PointError(self.name, f"{point}: {value!r} {p.unit} is outside {p.range.min}..{p.range.max}")
        self.commanded.pop(point, None)
        self.commanded[point] = value
        try:
            await self._ensure_ready()
            await self._write_verified(p, value)
        except ModbusDeviceError as exc:
            self._failed(exc)
            raise
        self._succeeded(self._clock())

    def reading(self, point: str) -> Reading | None:
        return self.values.get(point)

    def faults(self) -> tuple[ActiveFault, ...]:
        return tuple(self._faults.values())

    def snapshot(self, now: float | None = None) -> DeviceSnapshot:
        """Health, every last value with its time, which are stale or implausible, active faults."""
        now = self._clock() if now is None else now
        if (change := self.health.check(now)) is not None:
            self._note("health", change.new.value)
        return DeviceSnapshot(self.name, self.health.state, self.health.since, dict(self.values),
                              tuple(self.values.stale(now)), tuple(self.values.implausible()), self.faults(),
                              self.health.last_error)

    async def close(self) -> None:
        self.link.close()
        self._restored = False

    # -- reads, writes -----------------------------------------------------------------------------

    def _point(self, name: str) -> Point:
        try:
            return self.map.point(name)
        except KeyError as exc:
            raise PointError(self.name, str(exc.args[0])) from None

    def _known_scale_factors(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for sf in self.map.scale_factor_points():
            if (r := self.values.get(sf)) is not None:
                out[sf] = r.value
        return out

    async def _read_blocks(self, blocks: list[Block]) -> dict[str, Any]:
        await self._ensure_ready()
        words = [await self.link.read(b.table, b.address, b.count, b.points) for b in blocks]
        try:
            return codec.decode_blocks(self.map, blocks, words, self._known_scale_factors())
        except CodecError as exc:
            raise CorruptResponse(self.name, str(exc)) from None

    def _store(self, values: Mapping[str, Any]) -> None:
        now = self._clock()
        implausible = frozenset(n for n, v in values.items() if not codec.in_range(self.map.point(n), v))
        self.values.update(values, now, {n: self._max_age_of(n) for n in values}, implausible)
        self._update_faults(values, now)
        self._succeeded(now)

    async def _scale_factor(self, p: Point) -> int | None:
        """The current exponent of a SunSpec-scaled point (read once if not known yet)."""
        if not isinstance(p.scale, str):
            return None
        known = self._known_scale_factors()
        if p.scale not in known:
            sf_block = codec.read_plan(self.map, [p.scale])
            known.update(await self._read_blocks_raw(sf_block))
        return known[p.scale]

    async def _read_blocks_raw(self, blocks: list[Block]) -> dict[str, Any]:
        words = [await self.link.read(b.table, b.address, b.count, b.points) for b in blocks]
        try:
            values = codec.decode_blocks(self.map, blocks, words)
        except CodecError as exc:
            raise CorruptResponse(self.name, str(exc)) from None
        now = self._clock()
        self.values.update(values, now, {n: self._max_age_of(n) for n in values})
        return values

    async def _write_verified(self, p: Point, value: Any) -> None:
        sf = await self._scale_factor(p)
        try:
            words = codec.encode(self.map, p, value, sf)
        except CodecError as exc:
            raise PointError(self.name, str(exc)) from None
        await self.link.write(p.table, p.address, words, (p.name,))
        if p.verify:
            back = await self.link.read(p.table, p.address, p.size, (p.name,))
            if [int(w) for w in back] != [int(w) for w in words]:
                try:
                    read_value: Any = codec.decode(self.map, p, [int(w) for w in back], sf)
                except CodecError:
                    read_value = back
                raise ReadBackMismatch(self.name, p.name, value, read_value)

    # -- connection, restore, health ---------------------------------------------------------------

    async def _ensure_ready(self) -> None:
        """Connected and restored, or raise. Connects only when the backoff allows (no waiting here)."""
        if self.link.connected and self._restored:
            return
        now = self._clock()
        if not self.link.connected:
            if now < self._next_attempt_at:
                raise DeviceUnreachable(self.name, f"reconnect in {self._next_attempt_at - now:.3f} s (backoff)")
            self._restored = False
            try:
                await self.link.connect()
            except DeviceUnreachable:
                self._schedule_reconnect()
                raise
            self._note("connected", str(self.config.endpoint))
        await self._restore()

    async def _restore(self) -> None:
        """Re-apply the last commanded setpoints on a fresh connection, before anything else counts."""
        for point, value in list(self.commanded.items()):
            await self._write_verified(self.map.point(point), value)
        if self.commanded:
            self.restores += 1
            self._note("reapplied", ", ".join(f"{p}={v!r}" for p, v in self.commanded.items()))
        self._restored = True

    def _schedule_reconnect(self) -> None:
        self._next_attempt_at = self._clock() + self.backoff.next_delay()

    def _failed(self, exc: ModbusDeviceError) -> None:
        if not exc.link_failure:
            return
        now = self._clock()
        # no connection (refused, or dropped under this exchange): lost at once, not after the timer
        unreachable = isinstance(exc, DeviceUnreachable) or not self.link.connected
        reason = str(exc).removeprefix(f"{self.name}: ")
        if unreachable and not isinstance(exc, DeviceUnreachable):
            reason += " (connection closed)"
        if (change := self.health.record_failure(now, reason, connection_lost=unreachable)) is not None:
            self._note("health", change.new.value)
        if self.health.state is Health.LOST and self.link.connected:
            # a silent device on an open connection: start afresh (and restore) rather than wait on it
            self.link.close()
            self._restored = False
            self._schedule_reconnect()
        elif not self.link.connected and self._next_attempt_at <= now:
            self._schedule_reconnect()

    def _succeeded(self, now: float) -> None:
        if not self._restored:
            return  # an exchange during the restore: ok only once the restore is complete
        change = self.health.record_ok(now)
        self.backoff.reset()
        if change is not None:
            self._note("health", change.new.value)

    def _note(self, event: str, detail: str) -> None:
        self.journal.append((self._clock(), event, detail))

    def _max_age_of(self, point: str) -> float:
        group = self.map.point(point).poll
        return self._max_age.get(group, self.config.health.lost_after_s) if group else self.config.health.lost_after_s

    def _update_faults(self, values: Mapping[str, Any], now: float) -> None:
        for word in self._fault_words:
            if word not in values:
                continue
            p = self.map.point(word)
            fault_bits = p.fault_bits()
            active = {i: b for i, b in fault_bits.items() if values[word] is not None and values[word] >> i & 1}
            for key in [k for k in self._faults if k[0] == word and k[1] not in active]:
                cleared = self._faults.pop(key)
                log.info("modbus device %s: fault cleared: %s (%s)", self.name, cleared.code, cleared.meaning)
            for i, b in active.items():
                if (word, i) not in self._faults:
                    f = ActiveFault(self.name, word, i, b.name, b.description or b.name.replace("_", " "),
                                    str(b.attributed_to),
                                    str(b.reaction), now)
                    self._faults[(word, i)] = f
                    log.warning("modbus device %s: fault %s active (%s), attributed to %s, reaction %s",
                                self.name, f.code, f.meaning, f.party, f.reaction)
