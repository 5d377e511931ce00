"""Errors of the Modbus client drivers: each names the device, the point(s) and what went wrong.

Why these and not pymodbus's: pymodbus reports an exception response as a PDU with a number in it
(``exception_code=2``) and a timeout as a generic ``ModbusIOException``. An operator reading the log of a
station needs "dc-07: ILLEGAL DATA ADDRESS (exception 2) reading holding 4100+12 (dc_voltage,
dc_current)", and the controller needs to tell a device that refused (it answered: the link is fine)
from one that did not answer.
"""

from __future__ import annotations

from collections.abc import Sequence

# Modbus Application Protocol V1.1b3, section 7: the spec's own names.
EXCEPTION_NAMES = {
    0x01: "ILLEGAL FUNCTION",
    0x02: "ILLEGAL DATA ADDRESS",
    0x03: "ILLEGAL DATA VALUE",
    0x04: "SERVER DEVICE FAILURE",
    0x05: "ACKNOWLEDGE",
    0x06: "SERVER DEVICE BUSY",
    0x07: "NEGATIVE ACKNOWLEDGE",
    0x08: "MEMORY PARITY ERROR",
    0x0A: "GATEWAY PATH UNAVAILABLE",
    0x0B: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}


def exception_name(code: int) -> str:
    return EXCEPTION_NAMES.get(code, f"UNKNOWN EXCEPTION 0x{code:02X}")


class ModbusDeviceError(Exception):
    """Base: something about one device. ``link_failure`` says whether it counts against link health."""

    link_failure = True

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device


class DeviceUnreachable(ModbusDeviceError):
    """No connection: refused, connect timed out, port gone, or waiting out the reconnect backoff."""


class DeviceTimeout(ModbusDeviceError):
    """Connected, but no (valid) answer within the timeout and retries."""


class CorruptResponse(ModbusDeviceError):
    """An answer came but does not fit the request (wrong length, undecodable)."""


class DeviceException(ModbusDeviceError):
    """The device answered with a Modbus exception response.

    The link works (the device answered), so this does not by itself degrade link health, except for
    the codes that mean the device itself is unwell (SERVER DEVICE FAILURE, the gateway codes).
    """

    def __init__(self, device: str, code: int, operation: str, points: Sequence[str]) -> None:
        self.code = code
        self.name = exception_name(code)
        self.operation = operation
        self.points = tuple(points)
        super().__init__(device, f"{self.name} (exception {code}) {operation} ({', '.join(points) or '-'})")
        self.link_failure = code in (0x04, 0x0A, 0x0B)


class ReadBackMismatch(ModbusDeviceError):
    """A write that the map says to verify read back a different value: the device did not take it."""

    link_failure = False

    def __init__(self, device: str, point: str, written: object, read: object) -> None:
        super().__init__(device, f"write of {point} not taken: wrote {written!r}, read back {read!r}")
        self.point = point
        self.written = written
        self.read = read


class PointError(ModbusDeviceError):
    """The caller asked for something the map does not allow (unknown point, read-only, out of range)."""

    link_failure = False
