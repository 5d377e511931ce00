"""One pymodbus async client to one device: raw table reads and writes, pymodbus outcomes mapped to ours.

Why a thin wrapper of our own around the client:

- explicit timeouts and retries: pymodbus defaults (3 s, 3 retries) block 12 s on a dead device, longer
  than a hundred control periods. We pass ``retries=0`` to pymodbus and retry ourselves (``retries``,
  default 0), so one policy decides and the count is ours.
- no hidden reconnects: pymodbus's own reconnect task (``reconnect_delay``) is switched off, and so is
  its "close after N silent requests" rule; the device driver reconnects with its own backoff and
  re-applies setpoints first, which pymodbus cannot know about.
- a fresh client per connection: nothing from a half-dead connection (buffers, transaction ids, a late
  answer) leaks into the next one.
- pymodbus logs every timeout and failed connect at ERROR/WARNING; those lines are dropped here (a
  filter on its logger, for those messages only) because link health logs once per change instead.

TCP (``TcpEndpoint``) and RTU over a serial line (``SerialEndpoint``) share everything above the client.
An RS-485 line carries several devices (module, meter, BESS, each with its own device id) but a serial
port opens once: every ``Link`` on the same port shares one :class:`SerialLine` — one client, one request
on the wire at a time (the bus is half-duplex) — while health, timeouts counted, backoff and setpoints
stay per device. A device that stops answering costs the others one timeout of wire time, no more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from drivers.modbus.errors import CorruptResponse, DeviceException, DeviceTimeout, DeviceUnreachable

TABLES = ("holding", "input", "coil", "discrete")
WRITABLE = ("holding", "coil")


@dataclass(frozen=True)
class TcpEndpoint:
    host: str
    port: int = 502

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True)
class SerialEndpoint:
    """An RS-485 line (RTU framing). One client per line; several device ids may share it."""

    port: str
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    def __str__(self) -> str:
        return f"rtu://{self.port}@{self.baudrate}{self.parity}{self.bytesize}{self.stopbits}"


Endpoint = TcpEndpoint | SerialEndpoint


async def _connected(client: AsyncModbusTcpClient | AsyncModbusSerialClient, device: str, endpoint: Endpoint) -> None:
    """Connect ``client`` or close it and raise :class:`DeviceUnreachable` naming the device."""
    try:
        ok = await client.connect()
    except (OSError, ModbusException) as exc:  # a serial port that does not exist raises here
        client.close()
        raise DeviceUnreachable(device, f"cannot connect to {endpoint}: {exc}") from exc
    if not ok:
        client.close()
        raise DeviceUnreachable(device, f"cannot connect to {endpoint}")
    client.set_max_no_responses(1 << 30)  # we decide when a silent device's connection is dropped


class SerialLine:
    """One RS-485 line shared by the ``Link``s of every device on it: one pymodbus client, opened when the
    first device connects and closed when the last one leaves (or the port itself fails, for all of them),
    and a lock so a request and its answer are never interleaved with another device's."""

    def __init__(self, endpoint: SerialEndpoint, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.users: set[int] = set()  # id() of the attached links
        self.opened = 0  # clients opened over the line's life (tests: one for all devices)
        self.lock = asyncio.Lock()  # one exchange on the wire at a time
        self._opening = asyncio.Lock()  # devices connecting at once open the port once
        self.client: AsyncModbusSerialClient | None = None

    def check(self, endpoint: SerialEndpoint, timeout_s: float, device: str) -> None:
        if endpoint != self.endpoint:
            raise ValueError(f"{device}: serial port {endpoint.port} is already open as {self.endpoint}; every "
                             f"device on one RS-485 line must use the same baudrate/parity/stopbits/bytesize")
        if timeout_s != self.timeout_s:
            raise ValueError(f"{device}: timeout_s {timeout_s:g} differs from {self.timeout_s:g} of the other "
                             f"devices on {endpoint.port}; one line has one answer timeout")

    async def attach(self, link: Link) -> AsyncModbusSerialClient:
        self.users.add(id(link))
        async with self._opening:
            return await self._open(link)

    async def _open(self, link: Link) -> AsyncModbusSerialClient:
        if self.client is not None and self.client.connected:
            return self.client
        self.drop()
        ep = self.endpoint
        client = AsyncModbusSerialClient(ep.port, framer=FramerType.RTU, baudrate=ep.baudrate, parity=ep.parity,
                                         stopbits=ep.stopbits, bytesize=ep.bytesize, timeout=self.timeout_s,
                                         retries=0, reconnect_delay=0, name=ep.port)
        try:
            await _connected(client, link.device, ep)
        except DeviceUnreachable:
            self.detach(link)
            raise
        self.client = client
        self.opened += 1
        return client

    def detach(self, link: Link) -> None:
        self.users.discard(id(link))
        if not self.users:
            self.drop()
            _LINES.pop(self.endpoint.port, None)

    def drop(self) -> None:
        """Close the port (it failed, or nobody uses it); attached links reconnect on their own backoff."""
        if self.client is not None:
            self.client.close()
            self.client = None


_LINES: dict[str, SerialLine] = {}  # open RS-485 lines by port, for the links of one process


def serial_line(endpoint: SerialEndpoint, timeout_s: float, device: str) -> SerialLine:
    """The line on ``endpoint.port`` (created on first use); refuses settings that contradict it."""
    line = _LINES.get(endpoint.port)
    if line is None:
        line = _LINES[endpoint.port] = SerialLine(endpoint, timeout_s)
    line.check(endpoint, timeout_s, device)
    return line


class _DropPerRequestNoise(logging.Filter):
    """Drop pymodbus's per-failure lines; our link health reports the same thing once per change."""

    _PREFIXES = ("No response received", "Failed to connect", "Not connected, trying to connect",
                 "ERROR: received pdu without a corresponding request")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self._PREFIXES)


_pymodbus_log = logging.getLogger("pymodbus.logging")
if not any(isinstance(f, _DropPerRequestNoise) for f in _pymodbus_log.filters):
    _pymodbus_log.addFilter(_DropPerRequestNoise())


class Link:
    """Raw register/bit access to one device over one connection (no decoding, no health)."""

    def __init__(self, device: str, endpoint: Endpoint, *, device_id: int = 1, timeout_s: float = 0.2,
                 retries: int = 0) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.device = device
        self.endpoint = endpoint
        self.device_id = device_id
        self.timeout_s = timeout_s
        self.retries = retries
        self.requests = 0  # exchanges attempted (for the benchmark and tests: batching is visible here)
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._line: SerialLine | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        """Open a fresh connection (TCP) or attach to the device's RS-485 line, or raise
        :class:`DeviceUnreachable`."""
        self.close()
        if isinstance(self.endpoint, SerialEndpoint):
            line = serial_line(self.endpoint, self.timeout_s, self.device)
            self._client = await line.attach(self)
            self._line = line
            return
        ep = self.endpoint
        client = AsyncModbusTcpClient(ep.host, port=ep.port, timeout=self.timeout_s, retries=0, reconnect_delay=0,
                                      name=self.device)
        await _connected(client, self.device, ep)
        self._client = client

    def close(self) -> None:
        if self._line is not None:
            self._line.detach(self)  # the port closes when the last device on the line leaves
            self._line = None
        elif self._client is not None:
            self._client.close()
        self._client = None

    async def read(self, table: str, address: int, count: int, points: Sequence[str] = ()) -> list[int] | list[bool]:
        """``count`` registers (holding/input) or bits (coil/discrete) from ``address``."""
        op = f"reading {table} {address}+{count}"
        call = {"holding": "read_holding_registers", "input": "read_input_registers",
                "coil": "read_coils", "discrete": "read_discrete_inputs"}.get(table)
        if call is None:
            raise ValueError(f"unknown table {table!r} (one of {TABLES})")
        rsp = await self._exchange(op, points, lambda c: getattr(c, call)(address, count=count,
                                                                        device_id=self.device_id))
        if table in ("coil", "discrete"):
            bits = list(getattr(rsp, "bits", []) or [])
            if len(bits) < count:
                raise CorruptResponse(self.device, f"{op}: {len(bits)} bits in the answer")
            return [bool(b) for b in bits[:count]]
        regs = list(getattr(rsp, "registers", []) or [])
        if len(regs) != count:
            raise CorruptResponse(self.device, f"{op}: {len(regs)} registers in the answer")
        return regs

    async def write(self, table: str, address: int, values: Sequence[int] | Sequence[bool],
                    points: Sequence[str] = ()) -> None:
        """Write registers (function 16, or 6 for one) or coils (15, or 5 for one)."""
        op = f"writing {table} {address}+{len(values)}"
        dev = self.device_id
        if table == "holding":
            regs = [int(v) for v in values]
            if len(regs) == 1:
                await self._exchange(op, points, lambda c: c.write_register(address, regs[0], device_id=dev))
            else:
                await self._exchange(op, points, lambda c: c.write_registers(address, regs, device_id=dev))
        elif table == "coil":
            bits = [bool(v) for v in values]
            if len(bits) == 1:
                await self._exchange(op, points, lambda c: c.write_coil(address, bits[0], device_id=dev))
            else:
                await self._exchange(op, points, lambda c: c.write_coils(address, bits, device_id=dev))
        else:
            raise ValueError(f"table {table!r} is read-only (writable: {WRITABLE})")

    async def _exchange(self, op: str, points: Sequence[str], call):  # noqa: ANN001, ANN202
        client = self._client
        if client is None or not client.connected:
            raise DeviceUnreachable(self.device, f"{op}: not connected")
        last: Exception | None = None
        for _attempt in range(1 + self.retries):
            self.requests += 1
            try:
                if self._line is not None:
                    async with self._line.lock:  # half-duplex: one exchange on the wire at a time
                        rsp = await call(client)
                else:
                    rsp = await call(client)
            except ConnectionException as exc:
                if self._line is not None:
                    self._line.drop()  # the port itself failed: for every device on it
                self.close()
                raise DeviceUnreachable(self.device, f"{op}: connection lost ({exc})") from exc
            except ModbusIOException as exc:
                if "No response" in str(exc) or "not responding" in str(exc):
                    last = DeviceTimeout(self.device, f"{op}: no answer within {self.timeout_s * 1000:.0f} ms")
                    continue
                raise CorruptResponse(self.device, f"{op}: {exc}") from exc
            except (ModbusException, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                raise CorruptResponse(self.device, f"{op}: {exc}") from exc
            if rsp.isError():
                raise DeviceException(self.device, int(getattr(rsp, "exception_code", 0)), op, points)
            return rsp
        assert last is not None
        raise last
