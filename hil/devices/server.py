"""A pymodbus TCP server over :class:`~hil.devices.image.RegisterImage` units, with fault knobs.

Built on the new datastore (``pymodbus.simulator.SimDevice``/``SimData``, one ``SimDevice`` per unit id,
with separate coil/discrete/holding/input blocks). What ``SimDevice`` does for us: framing, unit ids,
function codes, 'illegal address' for registers outside the declared ``SimData`` runs, and refusing writes
to read-only runs. What it cannot do, and how it is done instead:

- *live values*: ``SimDevice`` owns its register lists; the only supported way in is its ``action`` hook,
  called on every request with the live registers. Our action copies the image into them before a read
  and hands every write to the simulator (so the plant sees commands at once, under its lock).
- *per-point exception codes* and *late answers*: also in the action (it may return an ``ExcCodes`` and
  may await).
- *no answer* and *corrupt frames*: ``SimDevice`` always answers. The server's ``trace_packet`` hook sees
  every outgoing frame: it drops the frame (silence) or replaces it with garbage bytes.
- *unknown unit ids*: a catch-all ``SimDevice(id=0)`` answers 0x0B (gateway target did not respond),
  as a Modbus TCP gateway in front of an RS-485 line would; without it pymodbus answers 0x04 and logs an
  error per request.
- *coils in separate blocks* are packed 16 to a register inside ``SimDevice``; the action reads and
  writes them bit by bit.

The server runs its asyncio loop in a thread of its own, so blocking clients (tests, pysunspec2, mbpoll
through a subprocess) and the physics ``step`` can run in the caller's thread.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hil.devices.image import RegisterImage

#: function code -> table
FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 6: "holding", 16: "holding",
            22: "holding", 23: "holding", 4: "input"}
BIT_TABLES = ("coil", "discrete")
#: order of the four blocks SimDevice expects
BLOCK_ORDER = ("coil", "discrete", "holding", "input")

OnWrite = Callable[[int, str, int, list[int]], None]


@dataclass
class Knobs:
    """Faults of one unit. Change them at any time from any thread; the next request sees them.

    - ``silent``: requests are processed but no answer goes out (a dead device behind a live gateway);
    - ``delay_s``: every answer goes out this late (a busy device; beyond the client timeout it arrives
      after the client gave up, as a stale answer);
    - ``corrupt``: answers are replaced by garbage bytes on the wire (a noisy line, a broken gateway);
    - ``exceptions``: (table, address) -> Modbus exception code returned for any request touching it.
    """

    silent: bool = False
    delay_s: float = 0.0
    corrupt: bool = False
    exceptions: dict[tuple[str, int], int] = field(default_factory=dict)

    def clear(self) -> None:
        self.silent, self.delay_s, self.corrupt = False, 0.0, False
        self.exceptions.clear()


GARBAGE = bytes.fromhex("a5 5a ff 00 13 37 de ad be ef")


class SimServer:
    """Serve ``units`` (unit id -> image) on ``host:port`` (port 0: the OS picks one; see ``port``).

    ``on_write(unit, table, address, words)`` is called (in the server thread, under ``lock``) for every
    accepted write, after the image holds the new words.
    """

    def __init__(self, units: dict[int, RegisterImage], lock: threading.Lock, on_write: OnWrite,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.units = units
        self.lock = lock
        self.on_write = on_write
        self.host = host
        self.port = port
        self.knobs: dict[int, Knobs] = {u: Knobs() for u in units}
        self.requests = 0  # every request the action saw (tests use it to know a request arrived)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ layout

    def _device(self, unit: int, image: RegisterImage) -> SimDevice:
        blocks: list[list[SimData]] = []
        for table in BLOCK_ORDER:
            runs = image.runs(table)
            if table in BIT_TABLES:
                data = [SimData(address=a, values=[False] * n, datatype=DataType.BITS, readonly=not w)
                        for a, n, w in runs] or [SimData(address=0, values=[False], datatype=DataType.BITS)]
            else:
                data = [SimData(address=a, count=n, values=0, datatype=DataType.REGISTERS, readonly=not w)
                        for a, n, w in runs] or [SimData(address=0, datatype=DataType.INVALID)]
            blocks.append(data)
        return SimDevice(id=unit, simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
                         action=functools.partial(self._action, unit))

    @staticmethod
    def _catch_all() -> SimDevice:
        async def no_such_unit(*_: object) -> ExcCodes:
            return ExcCodes.GATEWAY_NO_RESPONSE

        # the whole address space, so that every request reaches the action (and its 0x0B)
        regs = [SimData(address=0, count=65536, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(address=0, values=[0] * 4096, datatype=DataType.BITS)]
        return SimDevice(id=0, simdata=(bits, list(bits), regs, list(regs)), action=no_such_unit)

    # ------------------------------------------------------------------ per request

    async def _action(self, unit: int, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        self.requests += 1
        table = FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        knobs = self.knobs[unit]
        if knobs.delay_s > 0:
            await asyncio.sleep(knobs.delay_s)  # the fault itself: this device answers late
        image = self.units[unit]
        bit_table = table in BIT_TABLES
        n = len(set_values) if set_values else (1 if bit_table else count)
        for a in range(address, address + n):
            if (table, a) in knobs.exceptions:
                return ExcCodes(knobs.exceptions[(table, a)])
        if not image.defined(table, address, n):
            return ExcCodes.ILLEGAL_ADDRESS
        with self.lock:
            if set_values:
                words = [int(v) for v in set_values]
                if not image.may_write(table, address, len(words)):
                    return ExcCodes.ILLEGAL_ADDRESS
                image.apply_write(table, address, words)
                self.on_write(unit, table, address, words)
            if bit_table:
                self._fill_bits(image, table, start_address, registers)
            else:
                offset = address - start_address
                registers[offset:offset + count] = image.read(table, address, count)
        return None

    @staticmethod
    def _fill_bits(image: RegisterImage, table: str, start_register: int, registers: list[int]) -> None:
        """Copy every defined bit into SimDevice's packed registers (16 bits each, bit 0 first)."""
        for a, v in image.words[table].items():
            i = a // 16 - start_register
            if 0 <= i < len(registers):
                registers[i] = registers[i] | 1 << a % 16 if v else registers[i] & ~(1 << a % 16)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or len(data) < 7:
            return data
        knobs = self.knobs.get(data[6])  # MBAP header: unit id is byte 6
        if knobs is None:
            return data
        if knobs.silent:
            return b""  # nothing goes on the wire
        if knobs.corrupt:
            return GARBAGE
        return data

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 5.0) -> SimServer:
        """Start listening; return once the port accepts connections (``port`` is then the real one)."""
        self._thread = threading.Thread(target=self._run, name=f"modbus-sim-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("the Modbus simulator did not start listening")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _listen(self) -> None:
        devices = [self._device(u, img) for u, img in sorted(self.units.items())] + [self._catch_all()]
        self._server = ModbusTcpServer(devices, address=(self.host, self.port), trace_packet=self._trace_packet)
        await self._server.serve_forever(background=True)
        sockets = getattr(self._server.transport, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop listening, drop the connections and end the thread."""
        loop, server = self._loop, self._server
        if loop is None or self._thread is None:
            return
        if server is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=5)
        self._loop = None

