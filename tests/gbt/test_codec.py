"""The message codec against the reference tables, the worked examples and every frame of the real traces."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.gbt27930.decode import Decoder
from drivers.gbt27930.frame import Frame, make_id, parse_candump_frame
from drivers.gbt27930.messages import (
    ALL_MESSAGES,
    BCL,
    BCP,
    BCS,
    BEM,
    BHM,
    BMT,
    BMV,
    BRM,
    BSD,
    BSM,
    BSP,
    BST,
    BY_PGN,
    CCS,
    CEM,
    CHM,
    CML,
    CRM,
    CSD,
    CST,
    CTS,
    Level,
    MalformedMessage,
    Permission,
    Ready,
    State2,
    decode_message,
)
from drivers.gbt27930.transport import TP_CM_PGN, TP_DT_PGN, Reassembled, TpObserver
from tests.gbt.helpers import T1, TP_TRANSFERS, TRACE_NAMES, load

# reference §2.1: code -> (PGN, priority, single-frame CAN id or None for TP messages)
REFERENCE_TABLE = {
    "CHM": (0x2600, 6, 0x1826F456), "BHM": (0x2700, 6, 0x182756F4), "CRM": (0x0100, 6, 0x1801F456),
    "BRM": (0x0200, 7, 0x1C0256F4), "BCP": (0x0600, 7, 0x1C0656F4), "CTS": (0x0700, 6, 0x1807F456),
    "CML": (0x0800, 6, 0x1808F456), "BRO": (0x0900, 4, 0x100956F4), "CRO": (0x0A00, 4, 0x100AF456),
    "BCL": (0x1000, 6, 0x181056F4), "BCS": (0x1100, 7, 0x1C1156F4), "CCS": (0x1200, 6, 0x1812F456),
    "BSM": (0x1300, 6, 0x181356F4), "BMV": (0x1500, 7, 0x1C1556F4), "BMT": (0x1600, 7, 0x1C1656F4),
    "BSP": (0x1700, 7, 0x1C1756F4), "BST": (0x1900, 4, 0x101956F4), "CST": (0x1A00, 4, 0x101AF456),
    "BSD": (0x1C00, 6, 0x181C56F4), "CSD": (0x1D00, 6, 0x181DF456), "BEM": (0x1E00, 2, 0x081E56F4),
    "CEM": (0x1F00, 2, 0x081FF456),
}


def test_all_22_messages_have_the_reference_pgn_priority_and_identifier() -> None:
    assert len(ALL_MESSAGES) == 22
    for cls in ALL_MESSAGES:
        pgn, prio, can_id = REFERENCE_TABLE[cls.NAME]
        assert (cls.PGN, cls.PRIORITY) == (pgn, prio), cls.NAME
        assert make_id(cls.PRIORITY, cls.PGN, cls.SENDER.peer_address, cls.SENDER.address) == can_id, cls.NAME
        f = Frame(can_id, b"")
        assert (f.pgn, f.priority) == (pgn, prio)


def test_identifier_helpers_reject_what_is_not_pdu1() -> None:
    assert make_id(6, 0x2600, 0xF4, 0x56) == 0x1826F456
    for bad in [(8, 0x2600, 0xF4, 0x56), (6, 0xF000, 0xF4, 0x56), (6, 0x2601, 0xF4, 0x56), (6, 0x2600, 256, 0)]:
        with pytest.raises(ValueError):
            make_id(*bad)
    with pytest.raises(ValueError, match="no '#'"):
        parse_candump_frame("1826F456 010100")
    with pytest.raises(ValueError, match="8 hex digits"):
        parse_candump_frame("123#00")


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_every_frame_of_the_real_traces_decodes_and_reencodes_byte_for_byte(traces: Path, name: str) -> None:
    frames = load(traces / name)
    single = tp = 0
    observers = [TpObserver(0xF4, 0x56), TpObserver(0x56, 0xF4)]
    for lf in frames:
        f = lf.frame
        if {f.source, f.destination} != {0x56, 0xF4}:
            continue  # the non-GB frames of T1 (0070F4B5, 0073F4B5)
        if f.pgn in (TP_CM_PGN, TP_DT_PGN):
            for obs in observers:
                for ev in obs.observe(f):
                    if isinstance(ev, Reassembled):
                        msg = decode_message(ev.pgn, ev.data)
                        assert msg.encode() == ev.data, (msg.NAME, ev.data.hex())
                        tp += 1
            continue
        msg = decode_message(f.pgn, f.data)
        assert msg.encode() == f.data, (str(f), msg)
        assert msg.frame() == f
        single += 1
    assert single > 100
    assert tp == TP_TRANSFERS[name]


def _first(traces: Path, name: str) -> dict[str, dict]:
    """The first decoded record of each message name in a trace."""
    decoder = Decoder()
    out: dict[str, dict] = {}
    for lf in load(traces / name):
        for rec in decoder.feed(lf.t, lf.frame):
            out.setdefault(rec["name"], rec)
    return out


def test_worked_values_of_the_complete_session_match_the_reference(traces: Path) -> None:
    first = _first(traces, T1)
    assert first["CHM"]["fields"] == {"version_major": 1, "version_minor": 1}
    assert first["BHM"]["fields"]["max_voltage_v"] == pytest.approx(426.1)
    assert first["CRM"]["fields"] == {"result": "not_ready", "charger_number": 0x01010101, "region": "123"}
    brm = first["BRM"]
    assert brm["packets"] == 7
    assert brm["fields"]["vin"] == "L1NSPGH98NA196202"
    assert brm["fields"]["battery_type"] == 3  # LFP
    assert brm["fields"]["production_year"] == 2084  # the vehicle's 0x63: parsed leniently, not rejected
    assert BCP.decode(bytes.fromhex("7201DA052A02A5107308" "03C60E")) == BCP(
        max_cell_voltage_v=3.70, max_current_a=250.2, nominal_energy_kwh=55.4, max_voltage_v=426.1,
        max_temperature_c=65, soc_percent=77.6, battery_voltage_v=378.2)
    assert first["BCP"]["fields"]["max_current_a"] == pytest.approx(250.2)
    assert first["CML"]["fields"] == {"max_voltage_v": 950.0, "min_voltage_v": 38.0, "max_current_a": 250.0,
                                      "min_current_a": 0.0}
    assert first["BCL"]["fields"] == {"voltage_v": 426.1, "current_a": 20.0, "mode": 2}
    assert first["BCS"]["fields"] == {"measured_voltage_v": 378.1, "measured_current_a": 0.0,
                                      "max_cell_voltage_v": 3.32, "max_cell_group": 6, "soc_percent": 77,
                                      "remaining_min": 0}
    assert first["CCS"]["fields"]["voltage_v"] == pytest.approx(285.2)
    assert first["CCS"]["fields"]["permission"] == "allowed"
    bsm = BSM.decode(bytes.fromhex("1E3606350F0010"))
    assert (bsm.max_cell_number, bsm.max_temperature_c, bsm.max_temperature_probe) == (31, 4, 7)
    assert (bsm.min_temperature_c, bsm.min_temperature_probe) == (3, 16)
    assert bsm.charging is Permission.ALLOWED and bsm.spare_bits == 0  # the vehicle did not fill with ones
    assert first["BST"]["fields"]["charger_stopped"] == "on"
    assert CST.decode(bytes.fromhex("0400F0F0")).set_fields() == ["manual_stop"]
    assert first["BSD"]["fields"] == {"soc_percent": 77, "min_cell_voltage_v": 3.33, "max_cell_voltage_v": 3.34,
                                      "min_temperature_c": 3, "max_temperature_c": 4}
    assert first["CSD"]["fields"] == {"charging_minutes": 0, "energy_kwh": 0.1, "charger_number": 0x01010101}
    later = CCS.decode(bytes.fromhex("060F3A0E0000FD"))
    assert (later.voltage_v, later.current_a, later.length) == (384.6, 35.8, 7)


def test_failed_session_trace_shows_the_bem_and_the_aborted_transfers(traces: Path) -> None:
    records = []
    decoder = Decoder()
    for lf in load(traces / "candump2.log"):
        records += decoder.feed(lf.t, lf.frame)
    bems = [r for r in records if r["name"] == "BEM"]
    assert bems and bems[0]["fields"]["crm_aa_timeout"] == "on"
    assert any(r["fields"]["cts_cml_timeout"] == "on" for r in bems)
    aborted = [r for r in records if "error" in r]
    assert aborted and all("aborted" in r["error"] for r in aborted)
    cts = next(r for r in records if r["name"] == "CTS")
    assert cts["fields"]["time"] is None  # that charger sends 0x1A as a BCD "digit": kept, not parsed


def test_current_sign_and_offset() -> None:
    assert BCL(426.1, 20.0, 2).encode() == bytes.fromhex("A510D80E02")  # raw 3800 = (400 - 20) * 10
    assert BCL.decode(bytes.fromhex("A5100000 02".replace(" ", ""))).current_a == 400.0  # raw 0 = 400 A charge
    assert BCL(400.0, -35.0, 2).encode()[2:4] == (4350).to_bytes(2, "little")  # discharge: above 4000
    with pytest.raises(ValueError, match="current_a = 400.1 A is outside"):
        BCL(400.0, 400.1, 2).encode()


def test_short_dlcs_and_unused_bits_are_ones() -> None:
    assert CHM().encode() == bytes.fromhex("010100")
    assert BHM(426.1).encode() == bytes.fromhex("A510")
    assert CEM().encode() == bytes.fromhex("FCF0C0FC")  # Y1's default: every undefined bit set
    assert CEM(bcl_timeout=State2.ON).encode() == bytes.fromhex("FCF0C4FC")
    assert BEM().encode() == bytes.fromhex("F0F0F0FC")
    assert CST(manual_stop=State2.ON).encode() == bytes.fromhex("0400F0F0")
    assert BST(soc_reached=State2.ON).encode() == bytes.fromhex("010000F0")
    assert CCS(384.6, 35.8, 0).encode() == bytes.fromhex("060F3A0E0000FDFF")
    assert CTS().encode() == b"\xff" * 7
    assert CRM(Ready.READY, 1).encode() == bytes.fromhex("AA01000000FFFFFF")
    for cls in (CHM, CRM, CML, BCL, BSM, BST, CST, BSD, CSD, BEM, CEM):
        assert cls.LENGTHS[1] <= 8


def test_lenient_receive_of_field_variants() -> None:
    full = BRM(battery_type=3, capacity_ah=152.0, rated_voltage_v=364.8, vin="L1NSPGH98NA196202")
    legacy = BRM.decode(full.encode())
    assert legacy.software_version is None and legacy.vin == "L1NSPGH98NA196202"
    assert len(full.encode()) == 41
    with pytest.raises(MalformedMessage, match="45 bytes, expected 41 or 49"):
        BRM.decode(full.encode() + b"\xff" * 4)
    six = CCS.decode(bytes.fromhex("060F3A0E0000"))
    assert six.permission is None and six.encode() == bytes.fromhex("060F3A0E0000")
    assert CCS.decode(bytes.fromhex("060F3A0E0000FDFF")).length == 8
    assert CML.decode(bytes.fromhex("1C257C01DC05")).min_current_a is None
    with pytest.raises(MalformedMessage, match="7 bytes"):
        CML.decode(bytes.fromhex("1C257C01DC05A0"))
    assert CSD.decode(bytes.fromhex("0000010001")).charger_number == 1  # 2011: a one-byte number
    assert CSD.decode(bytes.fromhex("0000010001")).encode() == bytes.fromhex("0000010001")
    no_region = CRM.decode(bytes.fromhex("AA01010101"))
    assert no_region.region is None and no_region.encode() == bytes.fromhex("AA01010101")
    unknown_mode = BCL.decode(bytes.fromhex("A510D80E07"))
    assert unknown_mode.mode == 7 and unknown_mode.mode_name == "unknown 0x07"
    odd = CRM.decode(bytes.fromhex("5501010101FFFFFF"))
    assert odd.result == 0x55 and not odd.recognized and odd.region is None


def test_malformed_payloads_name_the_message_and_the_rule() -> None:
    with pytest.raises(MalformedMessage, match=r"^BCL: 4 bytes, expected 5$"):
        BCL.decode(b"\x00" * 4)
    with pytest.raises(MalformedMessage, match=r"BMV: 3 bytes, expected 2 per cell"):
        BMV.decode(b"\x00" * 3)
    with pytest.raises(ValueError, match="not a GB/T 27930 message"):
        decode_message(0x4200, b"")


def test_untrustworthy_and_level_codes_decode_distinctly() -> None:
    bsm = BSM.decode(bytes([0, 80, 0, 70, 0, 0b10_10_10_10, 0b00_01_10_10]))
    assert bsm.cell_voltage is Level.LOW and bsm.soc is Level.LOW  # 10b means "low" for these two
    assert bsm.over_current is State2.UNTRUSTWORTHY and bsm.insulation is State2.UNTRUSTWORTHY
    assert bsm.charging is Permission.ALLOWED


def test_tp_messages_round_trip_and_cts_time() -> None:
    bcs = BCS(378.1, 0.0, 3.32, 6, 77, 0)
    assert bcs.encode() == bytes.fromhex("C50EA00F4C614D0000")
    assert BMV.decode(BMV(((3.31, 1), (3.32, 2))).encode()).cells == ((3.31, 1), (3.32, 2))
    assert BMT.decode(bytes([75, 76])).temperatures_c == (25, 26)
    assert BSP.decode(b"\x01\x02").encode() == b"\x01\x02"
    cts = CTS.at(datetime(2024, 5, 17, 13, 45, 9))
    assert cts.encode() == bytes.fromhex("09451317052420")
    assert cts.timestamp() == datetime(2024, 5, 17, 13, 45, 9)
    assert BSD(77, 3.33, 3.34, 3, 4).encode() == bytes.fromhex("4D4D014E013536")


def test_registry_is_complete() -> None:
    assert set(BY_PGN) == {v[0] for v in REFERENCE_TABLE.values()}


@st.composite
def _payloads(draw: st.DrawFn) -> tuple[type, bytes]:
    cls = draw(st.sampled_from(ALL_MESSAGES))
    lo, hi = cls.LENGTHS
    return cls, draw(st.binary(min_size=lo, max_size=min(hi, 64)))


@settings(max_examples=2000, deadline=None)
@given(_payloads())
def test_any_payload_of_an_accepted_length_re_encodes_byte_for_byte_or_is_rejected_with_a_reason(
        case: tuple[type, bytes]) -> None:
    """Lenient receive loses nothing: whatever a peer sends in an accepted length (undefined bits, unknown
    codes, optional fields, short forms) comes back out unchanged; the rest is a MalformedMessage."""
    cls, data = case
    try:
        msg = cls.decode(data)
    except MalformedMessage as exc:
        assert exc.name == cls.NAME and "expected" in exc.reason
        return
    assert msg.encode() == data
    assert cls.decode(msg.encode()) == msg
