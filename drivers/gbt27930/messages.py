"""The 22 GB/T 27930-2015 messages as typed objects with physical units (reference §2).

Conventions, everywhere in this module:

* **Currents are charging-positive.** The wire uses the J1939 sign (positive = discharge) with 0.1 A/bit
  and a -400 A offset, so a charging current of I amps is ``raw = (400 - I) * 10``; the objects carry I.
  A V2G discharge is a negative current.
* Multi-byte values are little-endian; bit fields are Intel order (bit 1 = least significant).
* Each message is sent with the DLC the standard gives it (short DLCs: CHM 3, BHM 2, BRO 1, BCL 5, ...);
  undefined bits and bytes inside that length are ones. Undefined bits are *kept* on receive (``spare``)
  so a decoded frame re-encodes byte for byte - real vehicles do not always fill them with ones.
* Receiving is lenient where the field is (§2.1, §7): BRM of 41 or 49 bytes, CCS of 6 to 8 bytes, CML of
  6 or 8, optional fields (all 0xFF = absent = ``None``), invalid codes kept as they came. Anything a
  message cannot be raises :class:`MalformedMessage` naming the message and the rule.
* "Untrustworthy" (10b) codes are decoded as such; *keeping the previous state* is the session's job.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from drivers.gbt27930.frame import BMS_ADDRESS, CHARGER_ADDRESS, Frame, make_id

M = TypeVar("M", bound="Message")


class Sender(enum.Enum):
    CHARGER = "charger"
    BMS = "bms"

    @property
    def address(self) -> int:
        return CHARGER_ADDRESS if self is Sender.CHARGER else BMS_ADDRESS

    @property
    def peer_address(self) -> int:
        return BMS_ADDRESS if self is Sender.CHARGER else CHARGER_ADDRESS


class MalformedMessage(ValueError):
    """A payload that cannot be the message its identifier says (wrong length, impossible value)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class State2(enum.IntEnum):
    """The common 2-bit status code: normal / set (reached, fault, timeout) / untrustworthy / not available."""

    OFF = 0
    ON = 1
    UNTRUSTWORTHY = 2
    NOT_AVAILABLE = 3


class Level(enum.IntEnum):
    """BSM cell-voltage and SoC state (SPN3090/3091)."""

    NORMAL = 0
    HIGH = 1
    LOW = 2
    NOT_AVAILABLE = 3


class Permission(enum.IntEnum):
    """BSM charging permission (SPN3096) and CCS charging permitted (SPN3929)."""

    FORBIDDEN = 0  # BSM: pause; CCS: charger pauses
    ALLOWED = 1
    INVALID = 2
    NOT_AVAILABLE = 3


class Ready(enum.IntEnum):
    """BRO/CRO (SPN2829/2830) and CRM recognition (SPN2560) codes; other values are kept as raw ints."""

    NOT_READY = 0x00
    READY = 0xAA
    INVALID = 0xFF


BATTERY_TYPES: Mapping[int, str] = {
    0x01: "lead-acid", 0x02: "NiMH", 0x03: "LFP", 0x04: "LMO", 0x05: "LCO", 0x06: "NMC/NCA",
    0x07: "Li-polymer", 0x08: "LTO", 0xFF: "other",
}

CHARGE_MODES: Mapping[int, str] = {0x01: "constant-voltage", 0x02: "constant-current"}


# --------------------------------------------------------------------------- scaling helpers


def _u(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "little")


def _le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def _raw(name: str, value: float, scale: float, offset: float, bits: int) -> int:
    """Physical -> raw with a range check; ``value = raw * scale + offset``."""
    raw = round((value - offset) / scale)
    if not 0 <= raw < (1 << bits):
        lo = offset
        hi = ((1 << bits) - 1) * scale + offset
        raise ValueError(f"{name} = {value:g} is outside the encodable range {lo:g}..{hi:g}")
    return raw


def _current(raw: int) -> float:
    """Wire current (0.1 A/bit, -400 A offset, positive = discharge) -> charging-positive amps."""
    return (4000 - raw) / 10


def _current_raw(name: str, amps: float) -> int:
    raw = round(4000 - amps * 10)
    if not 0 <= raw <= 0xFFFF:
        raise ValueError(f"{name} = {amps:g} A is outside the encodable range -6153.5..400 A")
    return raw


def _ascii(data: bytes) -> str | None:
    """An optional ASCII field: all 0xFF means absent. latin-1 maps every byte, so nothing is lost."""
    if not data or all(b == 0xFF for b in data):
        return None
    return data.decode("latin-1")


def _ascii_bytes(name: str, value: str | None, size: int) -> bytes:
    if value is None:
        return b"\xff" * size
    raw = value.encode("latin-1")
    if len(raw) != size:
        raise ValueError(f"{name} must be {size} characters, got {len(raw)}")
    return raw


def _opt(data: bytes, start: int, size: int) -> int | None:
    """An optional integer field: absent when every byte is 0xFF."""
    chunk = data[start : start + size]
    if all(b == 0xFF for b in chunk):
        return None
    return int.from_bytes(chunk, "little")


def _opt_bytes(value: int | None, size: int) -> bytes:
    return b"\xff" * size if value is None else _le(value, size)


# --------------------------------------------------------------------------- base


@dataclass(frozen=True)
class Message:
    """Base of every message. Subclasses set the class constants and implement ``_decode``/``encode``."""

    NAME: ClassVar[str]
    PGN: ClassVar[int]
    PRIORITY: ClassVar[int]
    SENDER: ClassVar[Sender]
    PERIOD_S: ClassVar[float | None]  # None: sent on event / no period
    LENGTHS: ClassVar[tuple[int, int]]  # accepted payload length range (inclusive)
    DESCRIPTION: ClassVar[str]

    @classmethod
    def decode(cls: type[M], data: bytes) -> M:
        lo, hi = cls.LENGTHS
        if not lo <= len(data) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise MalformedMessage(cls.NAME, f"{len(data)} bytes, expected {want}")
        return cls._decode(bytes(data))

    @classmethod
    def _decode(cls: type[M], data: bytes) -> M:
        raise NotImplementedError

    def encode(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def multi_packet(cls) -> bool:
        """True when the message is longer than one frame and always travels by the transport protocol."""
        return cls.LENGTHS[1] > 8

    def can_id(self) -> int:
        """The identifier of the single-frame form (TP messages use TP.CM/TP.DT identifiers instead)."""
        return make_id(self.PRIORITY, self.PGN, self.SENDER.peer_address, self.SENDER.address)

    def frame(self) -> Frame:
        if self.multi_packet():
            raise ValueError(f"{self.NAME} travels by the transport protocol, not as one frame")
        return Frame(self.can_id(), self.encode())

    def fields(self) -> dict[str, Any]:
        """JSON-ready field values (enums by name, bytes as hex); spare bits only when not all ones, the
        length only when it is not the standard one."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (f.name.startswith("spare") or f.name == "length") and value == _default_of(type(self), f):
                continue
            out[f.name] = _jsonable(value)
        return out


def _default_of(cls: type, f: dataclasses.Field[Any]) -> Any:
    """A field's default as an instance would hold it (bit-field spares are masked on construction)."""
    if issubclass(cls, _BitFields) and f.name == "spare":
        return cls._spare_mask()
    return f.default


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _code(enum_type: type[enum.IntEnum], raw: int) -> Any:
    """A known code as its enum member, any other byte kept as the raw int (lenient receive)."""
    try:
        return enum_type(raw)
    except ValueError:
        return raw


# --------------------------------------------------------------------------- flag messages


@dataclass(frozen=True)
class _BitFields(Message):
    """Messages made only of 2-bit codes (BST, CST, BEM, CEM): one layout table drives both directions.

    ``LAYOUT`` maps field name -> (bit offset in the little-endian payload, width). ``spare`` holds every
    bit no field covers, as received; senders leave it at its default (all ones)."""

    LAYOUT: ClassVar[dict[str, tuple[int, int]]]

    def __post_init__(self) -> None:
        # keep only the bits no field covers, so equal messages compare equal however they were built
        object.__setattr__(self, "spare", self.spare & self._spare_mask())  # type: ignore[attr-defined]

    @classmethod
    def _spare_mask(cls) -> int:
        used = 0
        for offset, width in cls.LAYOUT.values():
            used |= ((1 << width) - 1) << offset
        return ((1 << (8 * cls.LENGTHS[1])) - 1) & ~used

    @classmethod
    def _decode(cls: type[M], data: bytes) -> M:
        value = int.from_bytes(data, "little")
        kwargs: dict[str, Any] = {}
        for name, (offset, width) in cls.LAYOUT.items():  # type: ignore[attr-defined]
            raw = (value >> offset) & ((1 << width) - 1)
            kwargs[name] = State2(raw) if width == 2 else raw
        kwargs["spare"] = value & cls._spare_mask()  # type: ignore[attr-defined]
        return cls(**kwargs)

    def encode(self) -> bytes:
        value = self.spare & self._spare_mask()  # type: ignore[attr-defined]
        for name, (offset, width) in self.LAYOUT.items():
            raw = int(getattr(self, name))
            if not 0 <= raw < (1 << width):
                raise ValueError(f"{self.NAME}.{name} = {raw} does not fit in {width} bits")
            value |= raw << offset
        return _le(value, self.LENGTHS[1])

    def set_fields(self) -> list[str]:
        """Names of the fields that are set (01b): the reasons this message carries."""
        return [n for n, (_, w) in self.LAYOUT.items() if w == 2 and getattr(self, n) is State2.ON]


_ALL_ONES_32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class BST(_BitFields):
    """BMS stop charging (4 bytes, 10 ms): why the vehicle stops (SPN3511-3513)."""

    NAME = "BST"
    PGN = 0x1900
    PRIORITY = 4
    SENDER = Sender.BMS
    PERIOD_S = 0.010
    LENGTHS = (4, 4)
    DESCRIPTION = "BMS stop charging"
    LAYOUT = {
        "soc_reached": (0, 2),
        "total_voltage_reached": (2, 2),
        "cell_voltage_reached": (4, 2),
        "charger_stopped": (6, 2),
        "insulation_fault": (8, 2),
        "connector_over_temperature": (10, 2),
        "bms_over_temperature": (12, 2),
        "connector_fault": (14, 2),
        "pack_over_temperature": (16, 2),
        "hv_relay_fault": (18, 2),
        "detection_point2_fault": (20, 2),
        "other_fault": (22, 2),
        "current_too_high": (24, 2),
        "voltage_abnormal": (26, 2),
    }

    soc_reached: State2 = State2.OFF
    total_voltage_reached: State2 = State2.OFF
    cell_voltage_reached: State2 = State2.OFF
    charger_stopped: State2 = State2.OFF
    insulation_fault: State2 = State2.OFF
    connector_over_temperature: State2 = State2.OFF
    bms_over_temperature: State2 = State2.OFF
    connector_fault: State2 = State2.OFF
    pack_over_temperature: State2 = State2.OFF
    hv_relay_fault: State2 = State2.OFF
    detection_point2_fault: State2 = State2.OFF
    other_fault: State2 = State2.OFF
    current_too_high: State2 = State2.OFF
    voltage_abnormal: State2 = State2.OFF
    spare: int = _ALL_ONES_32


BST_TARGETS = ("soc_reached", "total_voltage_reached", "cell_voltage_reached")
BST_FAULTS = (
    "insulation_fault", "connector_over_temperature", "bms_over_temperature", "connector_fault",
    "pack_over_temperature", "hv_relay_fault", "detection_point2_fault", "other_fault",
)
BST_ERRORS = ("current_too_high", "voltage_abnormal")


@dataclass(frozen=True)
class CST(_BitFields):
    """Charger stop charging (4 bytes, 10 ms): why the charger stops (SPN3521-3523)."""

    NAME = "CST"
    PGN = 0x1A00
    PRIORITY = 4
    SENDER = Sender.CHARGER
    PERIOD_S = 0.010
    LENGTHS = (4, 4)
    DESCRIPTION = "Charger stop charging"
    LAYOUT = {
        "conditions_reached": (0, 2),
        "manual_stop": (2, 2),
        "fault_stop": (4, 2),
        "bms_stopped": (6, 2),
        "over_temperature": (8, 2),
        "connector_fault": (10, 2),
        "internal_over_temperature": (12, 2),
        "energy_unavailable": (14, 2),
        "emergency_stop": (16, 2),
        "other_fault": (18, 2),
        "current_mismatch": (24, 2),
        "voltage_abnormal": (26, 2),
    }

    conditions_reached: State2 = State2.OFF
    manual_stop: State2 = State2.OFF
    fault_stop: State2 = State2.OFF
    bms_stopped: State2 = State2.OFF
    over_temperature: State2 = State2.OFF
    connector_fault: State2 = State2.OFF
    internal_over_temperature: State2 = State2.OFF
    energy_unavailable: State2 = State2.OFF
    emergency_stop: State2 = State2.OFF
    other_fault: State2 = State2.OFF
    current_mismatch: State2 = State2.OFF
    voltage_abnormal: State2 = State2.OFF
    spare: int = _ALL_ONES_32


@dataclass(frozen=True)
class BEM(_BitFields):
    """BMS error (4 bytes, 250 ms): which charger message the vehicle timed out on (SPN3901-3907)."""

    NAME = "BEM"
    PGN = 0x1E00
    PRIORITY = 2
    SENDER = Sender.BMS
    PERIOD_S = 0.250
    LENGTHS = (4, 4)
    DESCRIPTION = "BMS error"
    LAYOUT = {
        "crm_00_timeout": (0, 2),
        "crm_aa_timeout": (2, 2),
        "cts_cml_timeout": (8, 2),
        "cro_timeout": (10, 2),
        "ccs_timeout": (16, 2),
        "cst_timeout": (18, 2),
        "csd_timeout": (24, 2),
        "other": (26, 6),
    }

    crm_00_timeout: State2 = State2.OFF
    crm_aa_timeout: State2 = State2.OFF
    cts_cml_timeout: State2 = State2.OFF
    cro_timeout: State2 = State2.OFF
    ccs_timeout: State2 = State2.OFF
    cst_timeout: State2 = State2.OFF
    csd_timeout: State2 = State2.OFF
    other: int = 0x3F
    spare: int = _ALL_ONES_32


@dataclass(frozen=True)
class CEM(_BitFields):
    """Charger error (4 bytes, 250 ms): which vehicle message the charger timed out on (SPN3921-3927)."""

    NAME = "CEM"
    PGN = 0x1F00
    PRIORITY = 2
    SENDER = Sender.CHARGER
    PERIOD_S = 0.250
    LENGTHS = (4, 4)
    DESCRIPTION = "Charger error"
    LAYOUT = {
        "brm_timeout": (0, 2),
        "bcp_timeout": (8, 2),
        "bro_timeout": (10, 2),
        "bcs_timeout": (16, 2),
        "bcl_timeout": (18, 2),
        "bst_timeout": (20, 2),
        "bsd_timeout": (24, 2),
        "other": (26, 6),
    }

    brm_timeout: State2 = State2.OFF
    bcp_timeout: State2 = State2.OFF
    bro_timeout: State2 = State2.OFF
    bcs_timeout: State2 = State2.OFF
    bcl_timeout: State2 = State2.OFF
    bst_timeout: State2 = State2.OFF
    bsd_timeout: State2 = State2.OFF
    other: int = 0x3F
    spare: int = _ALL_ONES_32


# --------------------------------------------------------------------------- handshake


@dataclass(frozen=True)
class CHM(Message):
    """Charger handshake (3 bytes, 250 ms): the charger's protocol version, V1.1 = ``01 01 00``."""

    NAME = "CHM"
    PGN = 0x2600
    PRIORITY = 6
    SENDER = Sender.CHARGER
    PERIOD_S = 0.250
    LENGTHS = (3, 3)
    DESCRIPTION = "Charger handshake"

    version_major: int = 1
    version_minor: int = 1

    @classmethod
    def _decode(cls, data: bytes) -> CHM:
        return cls(version_major=_u(data, 1, 2), version_minor=data[0])

    def encode(self) -> bytes:
        return bytes([self.version_minor]) + _le(self.version_major, 2)


@dataclass(frozen=True)
class BHM(Message):
    """BMS handshake (2 bytes, 250 ms): maximum allowable total charging voltage (sets the insulation test)."""

    NAME = "BHM"
    PGN = 0x2700
    PRIORITY = 6
    SENDER = Sender.BMS
    PERIOD_S = 0.250
    LENGTHS = (2, 2)
    DESCRIPTION = "BMS handshake"

    max_voltage_v: float

    @classmethod
    def _decode(cls, data: bytes) -> BHM:
        return cls(max_voltage_v=_u(data, 0, 2) / 10)

    def encode(self) -> bytes:
        return _le(_raw("BHM.max_voltage_v", self.max_voltage_v, 0.1, 0, 16), 2)


@dataclass(frozen=True)
class CRM(Message):
    """Charger recognition (8 bytes, 250 ms): 0x00 before, 0xAA after the BRM was received."""

    NAME = "CRM"
    PGN = 0x0100
    PRIORITY = 6
    SENDER = Sender.CHARGER
    PERIOD_S = 0.250
    LENGTHS = (5, 8)
    DESCRIPTION = "Charger recognition"

    result: Ready | int = Ready.NOT_READY
    charger_number: int = 1
    region: str | None = None  # ASCII, optional: 3 characters in the 8-byte form
    length: int = 8  # 5 to 8: chargers that omit the optional region send fewer bytes

    @property
    def recognized(self) -> bool:
        return self.result == Ready.READY

    @classmethod
    def _decode(cls, data: bytes) -> CRM:
        return cls(result=_code(Ready, data[0]), charger_number=_u(data, 1, 4), region=_ascii(data[5:8]),
                   length=len(data))

    def encode(self) -> bytes:
        if not 5 <= self.length <= 8:
            raise ValueError(f"CRM.length must be 5 to 8, got {self.length}")
        return (
            bytes([int(self.result)])
            + _le(self.charger_number, 4)
            + _ascii_bytes("CRM.region", self.region, self.length - 5)
        )


@dataclass(frozen=True)
class SoftwareVersion:
    """BRM bytes 42-49 (2015 form): BMS software serial number and date."""

    serial: int
    day: int
    month: int
    year: int
    reserved: int = 0xFFFFFF


@dataclass(frozen=True)
class BRM(Message):
    """BMS and vehicle identification (TP, 41 bytes per table 3, 49 in practice)."""

    NAME = "BRM"
    PGN = 0x0200
    PRIORITY = 7
    SENDER = Sender.BMS
    PERIOD_S = 0.250
    LENGTHS = (41, 49)
    DESCRIPTION = "BMS and vehicle identification"

    battery_type: int
    capacity_ah: float
    rated_voltage_v: float
    version_major: int = 1
    version_minor: int = 1
    manufacturer: str | None = None  # 4 ASCII characters
    pack_serial: int | None = None
    production_year: int | None = None
    production_month: int | None = None
    production_day: int | None = None
    charge_count: int | None = None
    owned: int | None = None  # 0 leased, 1 owned by the vehicle
    reserved: int = 0xFF
    vin: str | None = None  # 17 ASCII characters
    software_version: SoftwareVersion | None = None  # None: the 41-byte form

    @property
    def battery_type_name(self) -> str:
        return BATTERY_TYPES.get(self.battery_type, f"unknown 0x{self.battery_type:02X}")

    @classmethod
    def _decode(cls, data: bytes) -> BRM:
        if len(data) not in (41, 49):
            raise MalformedMessage(cls.NAME, f"{len(data)} bytes, expected 41 or 49")
        year = _opt(data, 16, 1)
        sw = None
        if len(data) == 49:
            sw = SoftwareVersion(data[41], data[42], data[43], _u(data, 44, 2), _u(data, 46, 3))
        return cls(
            version_minor=data[0],
            version_major=_u(data, 1, 2),
            battery_type=data[3],
            capacity_ah=_u(data, 4, 2) / 10,
            rated_voltage_v=_u(data, 6, 2) / 10,
            manufacturer=_ascii(data[8:12]),
            pack_serial=_opt(data, 12, 4),
            production_year=None if year is None else 1985 + year,
            production_month=_opt(data, 17, 1),
            production_day=_opt(data, 18, 1),
            charge_count=_opt(data, 19, 3),
            owned=_opt(data, 22, 1),
            reserved=data[23],
            vin=_ascii(data[24:41]),
            software_version=sw,
        )

    def encode(self) -> bytes:
        year = None if self.production_year is None else self.production_year - 1985
        out = (
            bytes([self.version_minor])
            + _le(self.version_major, 2)
            + bytes([self.battery_type])
            + _le(_raw("BRM.capacity_ah", self.capacity_ah, 0.1, 0, 16), 2)
            + _le(_raw("BRM.rated_voltage_v", self.rated_voltage_v, 0.1, 0, 16), 2)
            + _ascii_bytes("BRM.manufacturer", self.manufacturer, 4)
            + _opt_bytes(self.pack_serial, 4)
            + _opt_bytes(year, 1)
            + _opt_bytes(self.production_month, 1)
            + _opt_bytes(self.production_day, 1)
            + _opt_bytes(self.charge_count, 3)
            + _opt_bytes(self.owned, 1)
            + bytes([self.reserved])
            + _ascii_bytes("BRM.vin", self.vin, 17)
        )
        sw = self.software_version
        if sw is not None:
            out += bytes([sw.serial, sw.day, sw.month]) + _le(sw.year, 2) + _le(sw.reserved, 3)
        return out


# --------------------------------------------------------------------------- parameter configuration


@dataclass(frozen=True)
class BCP(Message):
    """Battery charging parameters (TP, 13 bytes, 500 ms): the vehicle's limits."""

    NAME = "BCP"
    PGN = 0x0600
    PRIORITY = 7
    SENDER = Sender.BMS
    PERIOD_S = 0.500
    LENGTHS = (13, 13)
    DESCRIPTION = "Battery charging parameters"

    max_cell_voltage_v: float
    max_current_a: float
    nominal_energy_kwh: float
    max_voltage_v: float
    max_temperature_c: int
    soc_percent: float
    battery_voltage_v: float

    @classmethod
    def _decode(cls, data: bytes) -> BCP:
        return cls(
            max_cell_voltage_v=_u(data, 0, 2) / 100,
            max_current_a=_current(_u(data, 2, 2)),
            nominal_energy_kwh=_u(data, 4, 2) / 10,
            max_voltage_v=_u(data, 6, 2) / 10,
            max_temperature_c=data[8] - 50,
            soc_percent=_u(data, 9, 2) / 10,
            battery_voltage_v=_u(data, 11, 2) / 10,
        )

    def encode(self) -> bytes:
        return (
            _le(_raw("BCP.max_cell_voltage_v", self.max_cell_voltage_v, 0.01, 0, 16), 2)
            + _le(_current_raw("BCP.max_current_a", self.max_current_a), 2)
            + _le(_raw("BCP.nominal_energy_kwh", self.nominal_energy_kwh, 0.1, 0, 16), 2)
            + _le(_raw("BCP.max_voltage_v", self.max_voltage_v, 0.1, 0, 16), 2)
            + bytes([_raw("BCP.max_temperature_c", self.max_temperature_c, 1, -50, 8)])
            + _le(_raw("BCP.soc_percent", self.soc_percent, 0.1, 0, 16), 2)
            + _le(_raw("BCP.battery_voltage_v", self.battery_voltage_v, 0.1, 0, 16), 2)
        )


def _bcd_digit_pair(b: int) -> int | None:
    hi, lo = b >> 4, b & 0xF
    return None if hi > 9 or lo > 9 else hi * 10 + lo


def _to_bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


@dataclass(frozen=True)
class CTS(Message):
    """Charger time sync (7 bytes, 500 ms, all optional): packed BCD s, min, h, day, month, year (LE).

    Kept as the 7 BCD bytes because chargers in the field send invalid BCD; :meth:`timestamp` decodes."""

    NAME = "CTS"
    PGN = 0x0700
    PRIORITY = 6
    SENDER = Sender.CHARGER
    PERIOD_S = 0.500
    LENGTHS = (7, 7)
    DESCRIPTION = "Charger time sync"

    bcd: bytes = b"\xff" * 7

    @classmethod
    def at(cls, when: datetime) -> CTS:
        parts = (when.second, when.minute, when.hour, when.day, when.month, when.year % 100, when.year // 100)
        return cls(bcd=bytes(_to_bcd(p) for p in parts))

    def timestamp(self) -> datetime | None:
        """The time carried, or None when omitted (all 0xFF) or not a valid BCD date."""
        digits = [d for d in (_bcd_digit_pair(b) for b in self.bcd) if d is not None]
        if len(digits) != 7:
            return None
        s, mi, h, d, mo, yy, cc = digits
        try:
            return datetime(cc * 100 + yy, mo, d, h, mi, s)
        except ValueError:
            return None

    @classmethod
    def _decode(cls, data: bytes) -> CTS:
        return cls(bcd=data)

    def encode(self) -> bytes:
        if len(self.bcd) != 7:
            raise ValueError("CTS.bcd must be 7 bytes")
        return self.bcd

    def fields(self) -> dict[str, Any]:
        ts = self.timestamp()
        return {"bcd": self.bcd.hex(), "time": ts.isoformat() if ts else None}


@dataclass(frozen=True)
class CML(Message):
    """Charger maximum output capability (8 bytes, 250 ms; 6 bytes without minimum current in 2011)."""

    NAME = "CML"
    PGN = 0x0800
    PRIORITY = 6
    SENDER = Sender.CHARGER
    PERIOD_S = 0.250
    LENGTHS = (6, 8)
    DESCRIPTION = "Charger maximum output capability"

    max_voltage_v: float
    min_voltage_v: float
    max_current_a: float
    min_current_a: float | None = 0.0

    @classmethod
    def _decode(cls, data: bytes) -> CML:
        if len(data) == 7:
            raise MalformedMessage(cls.NAME, "7 bytes, expected 6 or 8")
        return cls(
            max_voltage_v=_u(data, 0, 2) / 10,
            min_voltage_v=_u(data, 2, 2) / 10,
            max_current_a=_current(_u(data, 4, 2)),
            min_current_a=_current(_u(data, 6, 2)) if len(data) == 8 else None,
        )

    def encode(self) -> bytes:
        out = (
            _le(_raw("CML.max_voltage_v", self.max_voltage_v, 0.1, 0, 16), 2)
            + _le(_raw("CML.min_voltage_v", self.min_voltage_v, 0.1, 0, 16), 2)
            + _le(_current_raw("CML.max_current_a", self.max_current_a), 2)
        )
        if self.min_current_a is not None:
            out += _le(_current_raw("CML.min_current_a", self.min_current_a), 2)
        return out


@dataclass(frozen=True)
class BRO(Message):
    """BMS ready for charging (1 byte, 250 ms): 0x00 not ready, 0xAA ready."""

    NAME = "BRO"
    PGN = 0x0900
    PRIORITY = 4
    SENDER = Sender.BMS
    PERIOD_S = 0.250
    LENGTHS = (1, 1)
    DESCRIPTION = "BMS ready for charging"

    ready: Ready | int = Ready.NOT_READY

    @classmethod
    def _decode(cls, data: bytes) -> BRO:
        return cls(ready=_code(Ready, data[0]))

    def encode(self) -> bytes:
        return bytes([int(self.ready)])


@dataclass(frozen=True)
class CRO(Message):
    """Charger output ready (1 byte, 250 ms): 0x00 while precharging, 0xAA once output is ready."""

    NAME = "CRO"
    PGN = 0x0A00
    PRIORITY = 4
    SENDER = Sender.CHARGER
    PERIOD_S = 0.250
    LENGTHS = (1, 1)
    DESCRIPTION = "Charger output ready"

    ready: Ready | int = Ready.NOT_READY

    @classmethod
    def _decode(cls, data: bytes) -> CRO:
        return cls(ready=_code(Ready, data[0]))

    def encode(self) -> bytes:
        return bytes([int(self.ready)])


# --------------------------------------------------------------------------- charging


@dataclass(frozen=True)
class BCL(Message):
    """Battery charging demand (5 bytes, 50 ms): voltage and current the vehicle asks for, and the mode."""

    NAME = "BCL"
    PGN = 0x1000
    PRIORITY = 6
    SENDER = Sender.BMS
    PERIOD_S = 0.050
    LENGTHS = (5, 5)
    DESCRIPTION = "Battery charging demand"

    voltage_v: float
    current_a: float
    mode: int = 0x02  # 0x01 constant voltage, 0x02 constant current

    @property
    def mode_name(self) -> str:
        return CHARGE_MODES.get(self.mode, f"unknown 0x{self.mode:02X}")

    @classmethod
    def _decode(cls, data: bytes) -> BCL:
        return cls(voltage_v=_u(data, 0, 2) / 10, current_a=_current(_u(data, 2, 2)), mode=data[4])

    def encode(self) -> bytes:
        return (
            _le(_raw("BCL.voltage_v", self.voltage_v, 0.1, 0, 16), 2)
            + _le(_current_raw("BCL.current_a", self.current_a), 2)
            + bytes([self.mode])
        )


@dataclass(frozen=True)
class BCS(Message):
    """Battery charging total status (TP, 9 bytes, 250 ms)."""

    NAME = "BCS"
    PGN = 0x1100
    PRIORITY = 7
    SENDER = Sender.BMS
    PERIOD_S = 0.250
    LENGTHS = (9, 9)
    DESCRIPTION = "Battery charging total status"

    measured_voltage_v: float
    measured_current_a: float
    max_cell_voltage_v: float
    max_cell_group: int
    soc_percent: int
    remaining_min: int

    @classmethod
    def _decode(cls, data: bytes) -> BCS:
        cell = _u(data, 4, 2)
        return cls(
            measured_voltage_v=_u(data, 0, 2) / 10,
            measured_current_a=_current(_u(data, 2, 2)),
            max_cell_voltage_v=(cell & 0x0FFF) / 100,
            max_cell_group=cell >> 12,
            soc_percent=data[6],
            remaining_min=_u(data, 7, 2),
        )

    def encode(self) -> bytes:
        cell = _raw("BCS.max_cell_voltage_v", self.max_cell_voltage_v, 0.01, 0, 12)
        if not 0 <= self.max_cell_group <= 15:
            raise ValueError("BCS.max_cell_group must be 0..15")
        return (
            _le(_raw("BCS.measured_voltage_v", self.measured_voltage_v, 0.1, 0, 16), 2)
            + _le(_current_raw("BCS.measured_current_a", self.measured_current_a), 2)
            + _le(cell | (self.max_cell_group << 12), 2)
            + bytes([_raw("BCS.soc_percent", self.soc_percent, 1, 0, 8)])
            + _le(_raw("BCS.remaining_min", self.remaining_min, 1, 0, 16), 2)
        )


@dataclass(frozen=True)
class CCS(Message):
    """Charger charging status (8 bytes per table 5; real chargers send 7, 2011 chargers 6; 50 ms)."""

    NAME = "CCS"
    PGN = 0x1200
    PRIORITY = 6
    SENDER = Sender.CHARGER
    PERIOD_S = 0.050
    LENGTHS = (6, 8)
    DESCRIPTION = "Charger charging status"

    voltage_v: float
    current_a: float
    charging_minutes: int
    permission: Permission | None = Permission.ALLOWED  # None: the 6-byte (2011) form
    length: int = 8
    spare_bits: int = 0x3F  # byte 7 bits 3-8
    spare_byte: int = 0xFF  # byte 8

    @classmethod
    def _decode(cls, data: bytes) -> CCS:
        permission = None if len(data) < 7 else Permission(data[6] & 0x3)
        return cls(
            voltage_v=_u(data, 0, 2) / 10,
            current_a=_current(_u(data, 2, 2)),
            charging_minutes=_u(data, 4, 2),
            permission=permission,
            length=len(data),
            spare_bits=(data[6] >> 2) if len(data) >= 7 else 0x3F,
            spare_byte=data[7] if len(data) == 8 else 0xFF,
        )

    def encode(self) -> bytes:
        if self.length not in (6, 7, 8) or (self.permission is None) != (self.length == 6):
            raise ValueError("CCS.length must be 6 without permission, 7 or 8 with it")
        out = (
            _le(_raw("CCS.voltage_v", self.voltage_v, 0.1, 0, 16), 2)
            + _le(_current_raw("CCS.current_a", self.current_a), 2)
            + _le(_raw("CCS.charging_minutes", self.charging_minutes, 1, 0, 16), 2)
        )
        if self.permission is not None:
            out += bytes([(self.spare_bits & 0x3F) << 2 | int(self.permission)])
        if self.length == 8:
            out += bytes([self.spare_byte])
        return out


@dataclass(frozen=True)
class BSM(Message):
    """Battery status information (7 bytes, 250 ms): extremes, alarm states and the charging permission."""

    NAME = "BSM"
    PGN = 0x1300
    PRIORITY = 6
    SENDER = Sender.BMS
    PERIOD_S = 0.250
    LENGTHS = (7, 7)
    DESCRIPTION = "Battery status information"

    max_cell_number: int  # 1-based
    max_temperature_c: int
    max_temperature_probe: int  # 1-based
    min_temperature_c: int
    min_temperature_probe: int  # 1-based
    cell_voltage: Level = Level.NORMAL
    soc: Level = Level.NORMAL
    over_current: State2 = State2.OFF
    over_temperature: State2 = State2.OFF
    insulation: State2 = State2.OFF
    connector: State2 = State2.OFF
    charging: Permission = Permission.ALLOWED
    spare_bits: int = 0x3  # byte 7 bits 7-8

    ALARMS: ClassVar[tuple[str, ...]] = (
        "cell_voltage", "soc", "over_current", "over_temperature", "insulation", "connector",
    )

    @classmethod
    def _decode(cls, data: bytes) -> BSM:
        b6, b7 = data[5], data[6]
        return cls(
            max_cell_number=data[0] + 1,
            max_temperature_c=data[1] - 50,
            max_temperature_probe=data[2] + 1,
            min_temperature_c=data[3] - 50,
            min_temperature_probe=data[4] + 1,
            cell_voltage=Level(b6 & 3),
            soc=Level((b6 >> 2) & 3),
            over_current=State2((b6 >> 4) & 3),
            over_temperature=State2((b6 >> 6) & 3),
            insulation=State2(b7 & 3),
            connector=State2((b7 >> 2) & 3),
            charging=Permission((b7 >> 4) & 3),
            spare_bits=b7 >> 6,
        )

    def encode(self) -> bytes:
        b6 = int(self.cell_voltage) | int(self.soc) << 2 | int(self.over_current) << 4 | int(self.over_temperature) << 6
        b7 = int(self.insulation) | int(self.connector) << 2 | int(self.charging) << 4 | (self.spare_bits & 3) << 6
        return bytes(
            [
                _raw("BSM.max_cell_number", self.max_cell_number, 1, 1, 8),
                _raw("BSM.max_temperature_c", self.max_temperature_c, 1, -50, 8),
                _raw("BSM.max_temperature_probe", self.max_temperature_probe, 1, 1, 8),
                _raw("BSM.min_temperature_c", self.min_temperature_c, 1, -50, 8),
                _raw("BSM.min_temperature_probe", self.min_temperature_probe, 1, 1, 8),
                b6,
                b7,
            ]
        )


@dataclass(frozen=True)
class BMV(Message):
    """Individual cell voltages (TP, optional, 10 s): (voltage, group) per cell, up to 256 cells."""

    NAME = "BMV"
    PGN = 0x1500
    PRIORITY = 7
    SENDER = Sender.BMS
    PERIOD_S = 10.0
    LENGTHS = (1, 512)
    DESCRIPTION = "Individual cell voltages"

    cells: tuple[tuple[float, int], ...]

    @classmethod
    def _decode(cls, data: bytes) -> BMV:
        if len(data) % 2:
            raise MalformedMessage(cls.NAME, f"{len(data)} bytes, expected 2 per cell")
        cells = []
        for i in range(0, len(data), 2):
            raw = _u(data, i, 2)
            cells.append(((raw & 0x0FFF) / 100, raw >> 12))
        return cls(cells=tuple(cells))

    def encode(self) -> bytes:
        out = bytearray()
        for volts, group in self.cells:
            out += _le(_raw("BMV.cell_voltage_v", volts, 0.01, 0, 12) | (group & 0xF) << 12, 2)
        return bytes(out)


@dataclass(frozen=True)
class BMT(Message):
    """Battery temperatures (TP, optional, 10 s): one byte per probe, -50 degC offset, up to 128 probes."""

    NAME = "BMT"
    PGN = 0x1600
    PRIORITY = 7
    SENDER = Sender.BMS
    PERIOD_S = 10.0
    LENGTHS = (1, 128)
    DESCRIPTION = "Battery temperatures"

    temperatures_c: tuple[int, ...]

    @classmethod
    def _decode(cls, data: bytes) -> BMT:
        return cls(temperatures_c=tuple(b - 50 for b in data))

    def encode(self) -> bytes:
        return bytes(_raw("BMT.temperature_c", t, 1, -50, 8) for t in self.temperatures_c)


@dataclass(frozen=True)
class BSP(Message):
    """Battery reserved (TP, optional, 10 s): up to 16 reserved one-byte fields."""

    NAME = "BSP"
    PGN = 0x1700
    PRIORITY = 7
    SENDER = Sender.BMS
    PERIOD_S = 10.0
    LENGTHS = (1, 16)
    DESCRIPTION = "Battery reserved"

    values: tuple[int, ...]

    @classmethod
    def _decode(cls, data: bytes) -> BSP:
        return cls(values=tuple(data))

    def encode(self) -> bytes:
        return bytes(self.values)


# --------------------------------------------------------------------------- end of charging


@dataclass(frozen=True)
class BSD(Message):
    """BMS statistics (7 bytes, 250 ms): final SoC and cell/temperature extremes."""

    NAME = "BSD"
    PGN = 0x1C00
    PRIORITY = 6
    SENDER = Sender.BMS
    PERIOD_S = 0.250
    LENGTHS = (7, 7)
    DESCRIPTION = "BMS statistics"

    soc_percent: int
    min_cell_voltage_v: float
    max_cell_voltage_v: float
    min_temperature_c: int
    max_temperature_c: int

    @classmethod
    def _decode(cls, data: bytes) -> BSD:
        return cls(
            soc_percent=data[0],
            min_cell_voltage_v=_u(data, 1, 2) / 100,
            max_cell_voltage_v=_u(data, 3, 2) / 100,
            min_temperature_c=data[5] - 50,
            max_temperature_c=data[6] - 50,
        )

    def encode(self) -> bytes:
        return (
            bytes([_raw("BSD.soc_percent", self.soc_percent, 1, 0, 8)])
            + _le(_raw("BSD.min_cell_voltage_v", self.min_cell_voltage_v, 0.01, 0, 16), 2)
            + _le(_raw("BSD.max_cell_voltage_v", self.max_cell_voltage_v, 0.01, 0, 16), 2)
            + bytes([_raw("BSD.min_temperature_c", self.min_temperature_c, 1, -50, 8)])
            + bytes([_raw("BSD.max_temperature_c", self.max_temperature_c, 1, -50, 8)])
        )


@dataclass(frozen=True)
class CSD(Message):
    """Charger statistics (8 bytes, 250 ms): charging time, energy delivered, charger number."""

    NAME = "CSD"
    PGN = 0x1D00
    PRIORITY = 6
    SENDER = Sender.CHARGER
    PERIOD_S = 0.250
    LENGTHS = (5, 8)
    DESCRIPTION = "Charger statistics"

    charging_minutes: int
    energy_kwh: float
    charger_number: int = 1
    length: int = 8  # 2011 chargers send 5 bytes (a one-byte number): the number is the bytes present

    @classmethod
    def _decode(cls, data: bytes) -> CSD:
        return cls(charging_minutes=_u(data, 0, 2), energy_kwh=_u(data, 2, 2) / 10, charger_number=_u(data, 4, 4),
                   length=len(data))

    def encode(self) -> bytes:
        if not 5 <= self.length <= 8:
            raise ValueError(f"CSD.length must be 5 to 8, got {self.length}")
        if self.charger_number >= 1 << (8 * (self.length - 4)):
            raise ValueError(f"CSD.charger_number {self.charger_number} does not fit in {self.length - 4} bytes")
        return (
            _le(_raw("CSD.charging_minutes", self.charging_minutes, 1, 0, 16), 2)
            + _le(_raw("CSD.energy_kwh", self.energy_kwh, 0.1, 0, 16), 2)
            + _le(self.charger_number, self.length - 4)
        )


# --------------------------------------------------------------------------- registry

ALL_MESSAGES: tuple[type[Message], ...] = (
    CHM, BHM, CRM, BRM, BCP, CTS, CML, BRO, CRO, BCL, BCS, CCS, BSM, BMV, BMT, BSP, BST, CST, BSD, CSD, BEM, CEM,
)
BY_PGN: Mapping[int, type[Message]] = {m.PGN: m for m in ALL_MESSAGES}
BY_NAME: Mapping[str, type[Message]] = {m.NAME: m for m in ALL_MESSAGES}


class UnknownMessage(ValueError):
    """A PGN that GB/T 27930 does not define (another protocol on the bus, or garbage)."""


def decode_message(pgn: int, data: bytes) -> Message:
    """Decode a payload (a single frame or a reassembled TP transfer) by its PGN."""
    cls = BY_PGN.get(pgn)
    if cls is None:
        raise UnknownMessage(f"PGN 0x{pgn:04X} is not a GB/T 27930 message")
    return cls.decode(data)
