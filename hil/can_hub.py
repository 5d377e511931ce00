"""A software CAN bus that separate processes share, speaking the socketcand protocol python-can's stock
``socketcand`` client uses (reference §6.2). These machines have no ``vcan``; the controller and the BMS
simulators connect with ``can.Bus(interface="socketcand", host=..., port=..., channel="A1")``.

* Many channels: each ``< open NAME >`` joins bus NAME; each channel is its own bus.
* Ordered delivery: every channel has one queue; all listeners see its frames in the same order, each
  stamped with the hub's time. A frame goes to every other raw-mode client on the channel, never back to
  its sender (socketcand's default).
* Optional pacing at a bitrate (default 250 kbit/s): a frame occupies the bus for ``67 + 8 * DLC`` bit
  times (29-bit identifier, no stuff bits), frames queue behind each other, and the timestamp is the end
  of transmission.
* Error frames: ``error_rate`` corrupts that share of frames (all listeners, sender included, see an error
  frame; the frame is then retransmitted, as a CAN controller does), and :meth:`CanHub.inject_error` sends
  one on demand.

What it does not model: arbitration by identifier (frames go in arrival order), bit stuffing, bus-off,
acknowledgement errors. The handshake pitfall of the python-can client (it compares one ``recv(256)``
with ``< ok >`` exactly) is handled by holding frames for a new client until ``grace_s`` after its
``< rawmode >`` reply; they are queued, not lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ERROR_FRAME_ID = "20000008"  # CAN_ERR_FLAG | CAN_ERR_PROT: a protocol violation (bit error) on the bus
ERROR_FRAME_BITS = 20  # error flag + delimiter, roughly
MAX_COMMAND = 256
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


@dataclass
class _Client:
    writer: asyncio.StreamWriter
    peer: str
    channel: str | None = None
    raw: bool = False
    active: bool = False  # frames may be written (after the handshake grace)
    pending: list[bytes] = field(default_factory=list)


@dataclass
class ChannelStats:
    frames: int = 0
    delivered: int = 0
    errors_injected: int = 0
    max_queue: int = 0
    busy_s: float = 0.0  # bus time occupied by frames and error frames (paced hubs only): the bus load


@dataclass
class _Channel:
    name: str
    clients: list[_Client] = field(default_factory=list)
    queue: deque[tuple[_Client | None, str, bytes]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    bus_free_at: float = 0.0
    task: asyncio.Task[None] | None = None
    stats: ChannelStats = field(default_factory=ChannelStats)


class CanHub:
    """The hub. ``clock`` gives the frame timestamps (wall time, as socketcand uses)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 29536, *, bitrate: int | None = None,
                 error_rate: float = 0.0, seed: int = 0, grace_s: float = 0.1,
                 clock: Callable[[], float] = time.time) -> None:
        if bitrate is not None and bitrate <= 0:
            raise ValueError("bitrate: must be > 0 (or None for no pacing)")
        if not 0.0 <= error_rate < 1.0:
            raise ValueError("error_rate: must be in [0, 1)")
        self.host = host
        self.port = port
        self.bitrate = bitrate
        self.error_rate = error_rate
        self.grace_s = grace_s
        self.clock = clock
        self._rng = random.Random(seed)
        self._channels: dict[str, _Channel] = {}
        self._server: asyncio.base_events.Server | None = None
        self.bad_commands = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_client, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for ch in self._channels.values():
            if ch.task is not None:
                ch.task.cancel()
            for c in ch.clients:
                c.writer.close()

    def stats(self) -> dict[str, object]:
        return {
            "channels": {n: vars(c.stats) | {"clients": len(c.clients)} for n, c in self._channels.items()},
            "bad_commands": self.bad_commands,
        }

    def inject_error(self, channel: str) -> None:
        """Put one error frame on ``channel`` now (in queue order)."""
        ch = self._channel(channel)
        ch.queue.append((None, "", b""))
        ch.wake.set()

    # ------------------------------------------------------------------ clients

    def _channel(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel(name)
            ch.task = asyncio.get_running_loop().create_task(self._dispatch(ch), name=f"can-hub-{name}")
        return ch

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = _Client(writer, str(writer.get_extra_info("peername")))
        writer.write(b"< hi >")
        buf = b""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if QUICKACK is not None and sock is not None:
                    # ACK at once: python-can's client leaves Nagle on (tcp_tune=False), so a delayed ACK
                    # here would hold its next frame back by ~40 ms
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
                buf += chunk
                buf = self._commands(client, buf)
                if len(buf) > MAX_COMMAND:  # no '>' in sight: garbage, not a command being split
                    self.bad_commands += 1
                    buf = b""
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if client.channel is not None:
                ch = self._channels[client.channel]
                if client in ch.clients:
                    ch.clients.remove(client)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _commands(self, client: _Client, buf: bytes) -> bytes:
        """Handle every complete ``< ... >`` in ``buf``; return the incomplete rest."""
        pos = 0
        while True:
            start = buf.find(b"<", pos)
            if start < 0:
                return b""
            end = buf.find(b">", start)
            if end < 0:
                return buf[start:]
            self._command(client, buf[start + 1 : end].split())
            pos = end + 1

    def _command(self, client: _Client, words: list[bytes]) -> None:
        if not words:
            self.bad_commands += 1
            return
        verb = words[0]
        if verb == b"send" and client.raw:
            self._on_send(client, words)
        elif verb == b"open" and len(words) == 2 and client.channel is None:
            client.channel = words[1].decode("ascii", "replace")
            client.writer.write(b"< ok >")
        elif verb == b"rawmode" and client.channel is not None and not client.raw:
            client.raw = True
            client.writer.write(b"< ok >")
            ch = self._channel(client.channel)
            ch.clients.append(client)
            asyncio.get_running_loop().call_later(self.grace_s, self._activate, client)
        elif verb == b"echo":
            client.writer.write(b"< echo >")
        else:
            self.bad_commands += 1

    def _activate(self, client: _Client) -> None:
        client.active = True
        if client.pending and not client.writer.is_closing():
            client.writer.write(b"".join(client.pending))
        client.pending.clear()

    def _on_send(self, client: _Client, words: list[bytes]) -> None:
        # < send ID LEN B0 B1 ... >  (ID: 3 or 8 hex digits; LEN and bytes in hex, bytes unpadded)
        try:
            ident = words[1]
            length = int(words[2], 16)
            data = bytes(int(b, 16) for b in words[3:])
            int(ident, 16)
        except (IndexError, ValueError):
            self.bad_commands += 1
            return
        if length > 8 or len(data) != length or len(ident) not in (3, 8):
            self.bad_commands += 1
            return
        assert client.channel is not None
        ch = self._channels[client.channel]
        ch.queue.append((client, ident.decode().upper(), data))
        ch.stats.max_queue = max(ch.stats.max_queue, len(ch.queue))
        ch.wake.set()

    # ------------------------------------------------------------------ the bus

    async def _dispatch(self, ch: _Channel) -> None:
        loop = asyncio.get_running_loop()
        clock_offset = self.clock() - loop.time()  # one offset: paced timestamps keep exact spacing
        while True:
            await ch.wake.wait()
            ch.wake.clear()
            while ch.queue:
                sender, ident, data = ch.queue[0]
                hit = sender is None or (self.error_rate > 0 and self._rng.random() < self.error_rate)
                if self.bitrate is None:
                    stamp = self.clock()
                else:
                    now = loop.time()
                    start = max(now, ch.bus_free_at)
                    bits = (ERROR_FRAME_BITS if hit else 0) + (0 if sender is None else 67 + 8 * len(data))
                    ch.bus_free_at = start + bits / self.bitrate
                    ch.stats.busy_s += bits / self.bitrate
                    if ch.bus_free_at > now + 0.001:  # asyncio sleeps in ~1 ms steps: batch below that
                        await asyncio.sleep(ch.bus_free_at - now)
                    stamp = ch.bus_free_at + clock_offset  # end of transmission, on the bus's own time line
                ch.queue.popleft()
                if hit:
                    self._deliver(ch, None, f"< error {ERROR_FRAME_ID} {stamp:.6f} >".encode())
                    ch.stats.errors_injected += 1
                    if sender is None:
                        continue
                hexdata = data.hex().upper()
                line = f"< frame {ident} {stamp:.6f} {hexdata} >".encode()
                ch.stats.frames += 1
                self._deliver(ch, sender, line)

    def _deliver(self, ch: _Channel, sender: _Client | None, line: bytes) -> None:
        for c in ch.clients:
            if c is sender:
                continue
            if not c.active:
                c.pending.append(line)
            elif not c.writer.is_closing():
                c.writer.write(line)
                ch.stats.delivered += 1


# ---------------------------------------------------------------------------- command

HELP = "software CAN hub speaking the socketcand protocol (python-can interface='socketcand')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=29536, help="TCP port (0: pick a free one)")
    parser.add_argument("--pace", action="store_true", help="pace each channel at --bitrate")
    parser.add_argument("--bitrate", type=int, default=250_000)
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of frames hit by an error frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grace", type=float, default=0.1, help="seconds before frames flow to a new client")


def run(args: argparse.Namespace) -> int:
    async def main() -> None:
        hub = CanHub(args.host, args.port, bitrate=args.bitrate if args.pace else None,
                     error_rate=args.error_rate, seed=args.seed, grace_s=args.grace)
        await hub.start()
        print(json.dumps({"listening": f"{hub.host}:{hub.port}"}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print(json.dumps({"stats": hub.stats()}), flush=True)
        await hub.close()

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"station-hil can-hub: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0
