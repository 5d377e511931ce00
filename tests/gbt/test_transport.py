"""J1939-21 transport, both directions, sans-IO: the real exchange, field deviations, sequence checks, timers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.gbt27930.frame import Frame
from drivers.gbt27930.transport import (
    AbortReason,
    Reassembled,
    TpAnomaly,
    TpObserver,
    TransferAborted,
    TransferSent,
    Transport,
    dt_payloads,
)

BMS, CHARGER = 0xF4, 0x56
T1_BRM_DTS = ["0101010003F00540", "020E010000000100", "030000630B089500", "040001FF4C314E53",
              "0550474839384E41", "0631393632303200", "070104E707FFFF00"]
BRM_T1 = b"".join(bytes.fromhex(d)[1:] for d in T1_BRM_DTS)


def f(text: str) -> Frame:
    ident, data = text.split("#")
    return Frame(int(ident, 16), bytes.fromhex(data))


def drain(sender: Transport, receiver: Transport, now: float, rounds: int = 50) -> list[object]:
    """Exchange frames between two transports at time ``now`` until quiet; return all events."""
    events: list[object] = []
    for _ in range(rounds):
        a, ea = sender.poll(now)
        b, eb = receiver.poll(now)
        events += ea + eb
        if not a and not b:
            break
        for fr in a:
            events += receiver.receive(fr, now)
        for fr in b:
            events += sender.receive(fr, now)
    return events


def test_receiver_answers_the_real_brm_exchange_byte_for_byte() -> None:
    """T1: RTS 10 31 00 07 FF, the charger's CTS 11 07 01 and EndOfMsgAck 13 31 00 07 FF."""
    assert len(BRM_T1) == 49
    rx = Transport(CHARGER, BMS)
    assert rx.receive(f("1CEC56F4#10310007FF000200"), 0.0) == []
    frames, _ = rx.poll(0.0)
    assert [str(x) for x in frames] == ["1CECF456#110701FFFF000200"]
    events = []
    for i, d in enumerate(T1_BRM_DTS):
        events += rx.receive(f(f"1CEB56F4#{d}"), 0.01 * (i + 1))
    assert events == [Reassembled(0x200, BRM_T1, 7)]
    frames, _ = rx.poll(0.08)
    assert [str(x) for x in frames] == ["1CECF456#13310007FF000200"]


def test_sender_and_receiver_pair_delivers_any_size_in_any_window() -> None:
    for size in (9, 13, 49, 300, 1785):
        for window in (1, 2, 255):
            data = bytes((i * 7 + size) % 256 for i in range(size))
            tx = Transport(BMS, CHARGER)
            rx = Transport(CHARGER, BMS, max_packets_per_cts=window)
            assert tx.send(0x1500, data, 0.0)
            events = drain(tx, rx, 0.0, rounds=1000)
            assert Reassembled(0x1500, data, (size + 6) // 7) in events
            assert TransferSent(0x1500) in events
            assert not tx.sending


def test_dts_without_waiting_for_cts_still_reassemble_and_no_redundant_cts() -> None:
    """P1's behaviour: RTS then all DTs on a 10 ms tick, ignoring the charger's CTS."""
    data = bytes(range(49))
    # 1) the DTs arrive faster than the receiver polls: no CTS at all for packets already here
    tx = Transport(BMS, CHARGER, send_without_cts=True)
    rx = Transport(CHARGER, BMS, max_packets_per_cts=1)
    tx.send(0x200, data, 0.0)
    got: list[object] = []
    for fr in tx.poll(0.0)[0]:
        got += rx.receive(fr, 0.0)
    assert got == [Reassembled(0x200, data, 7)]
    back, _ = rx.poll(0.0)
    assert [fr.data[0] for fr in back] == [0x13]  # only the EndOfMsgAck
    assert tx.receive(back[0], 0.0) == [TransferSent(0x200)]
    # 2) on a 10 ms tick with the strictest window: every CTS asks for a packet not yet received
    tx = Transport(BMS, CHARGER, dt_interval_s=0.010, send_without_cts=True)
    rx = Transport(CHARGER, BMS, max_packets_per_cts=1)
    tx.send(0x200, data, 0.0)
    got, received = [], 0
    for step in range(12):
        now = step * 0.010
        for fr in tx.poll(now)[0]:
            got += rx.receive(fr, now)
            received += fr.data[0] != 0x10 and fr.can_id & 0xFF0000 == 0xEB0000
        for fr in rx.poll(now)[0]:
            if fr.data[0] == 0x11:
                assert fr.data[2] == received + 1
            got += tx.receive(fr, now)
    assert Reassembled(0x200, data, 7) in got and TransferSent(0x200) in got


def test_sequence_gap_aborts_with_reason_7_and_duplicates_are_ignored() -> None:
    rx = Transport(CHARGER, BMS)
    rx.receive(f("1CEC56F4#100D0002FF000600"), 0.0)
    rx.poll(0.0)
    assert rx.receive(f("1CEB56F4#017201DA052A02A5"), 0.01) == []
    dup = rx.receive(f("1CEB56F4#017201DA052A02A5"), 0.02)
    assert [type(e) for e in dup] == [TpAnomaly] and dup[0].kind == "duplicate-dt"
    assert rx.receive(f("1CEB56F4#0210730803C60EFF"), 0.03)[0] == Reassembled(
        0x600, bytes.fromhex("7201DA052A02A5107308" "03C60E"), 2)
    rx.receive(f("1CEC56F4#10310007FF000200"), 1.0)
    rx.poll(1.0)
    rx.receive(f("1CEB56F4#0101010003F00540"), 1.01)
    gap = rx.receive(f("1CEB56F4#030000630B089500"), 1.02)
    assert gap == [TransferAborted(0x200, AbortReason.BAD_SEQUENCE, True, False, "DT 3 arrived, expected 2")]
    frames, _ = rx.poll(1.02)
    assert [str(x) for x in frames] == ["1CECF456#FF07FFFFFF000200"]
    assert rx.receive(f("1CEB56F4#0401010003F00540"), 1.03)[0].kind == "unexpected-dt"


def test_receiver_timers_t2_after_cts_and_t1_between_dts() -> None:
    rx = Transport(CHARGER, BMS)
    rx.receive(f("1CEC56F4#10310007FF000200"), 0.0)
    rx.poll(0.0)  # CTS sent: T2 = 1.25 s
    assert rx.poll(1.249)[1] == []
    frames, events = rx.poll(1.25)
    assert [str(x) for x in frames] == ["1CECF456#FF03FFFFFF000200"]
    assert isinstance(events[0], TransferAborted) and events[0].reason == AbortReason.TIMEOUT
    rx.receive(f("1CEC56F4#10310007FF000200"), 2.0)
    rx.poll(2.0)
    rx.receive(f("1CEB56F4#0101010003F00540"), 2.1)  # now T1 = 0.75 s
    assert rx.poll(2.849)[1] == []
    assert rx.poll(2.85)[1][0].reason == AbortReason.TIMEOUT


def test_sender_timers_t3_waiting_for_cts_t4_after_hold_t3_waiting_for_the_ack() -> None:
    tx = Transport(BMS, CHARGER)
    tx.send(0x1100, bytes(9), 0.0)
    assert [str(x) for x in tx.poll(0.0)[0]] == ["1CEC56F4#10090002FF001100"]
    assert not tx.send(0x1100, bytes(9), 0.1)  # one transfer per direction
    assert tx.poll(1.249)[1] == []
    frames, events = tx.poll(1.25)
    assert [str(x) for x in frames] == ["1CEC56F4#FF03FFFFFF001100"]
    assert events[0].outgoing and events[0].reason == AbortReason.TIMEOUT
    tx.send(0x1100, bytes(9), 2.0)
    tx.poll(2.0)
    tx.receive(f("1CECF456#110001FFFF001100"), 2.1)  # hold: T4 = 1.05 s
    assert tx.poll(3.149)[1] == []
    assert tx.poll(3.151)[1][0].reason == AbortReason.TIMEOUT
    tx.send(0x1100, bytes(9), 4.0)
    tx.poll(4.0)
    tx.receive(f("1CECF456#110201FFFF001100"), 4.1)
    assert len(tx.poll(4.1)[0]) == 2  # both DTs; now T3 again, for the EndOfMsgAck
    assert tx.poll(5.349)[1] == []
    frames, events = tx.poll(5.35)
    assert [str(x) for x in frames] == ["1CEC56F4#FF03FFFFFF001100"]
    assert events[0].detail == "no EndOfMsgAck in time" and not tx.sending


def test_abort_from_the_peer_and_rts_validation() -> None:
    tx = Transport(BMS, CHARGER)
    tx.send(0x200, bytes(49), 0.0)
    tx.poll(0.0)
    ev = tx.receive(f("1CECF456#FF01FFFFFF000200"), 0.1)
    assert ev == [TransferAborted(0x200, 1, True, True, "peer aborted our transfer")]
    rx = Transport(CHARGER, BMS)
    bad = rx.receive(f("1CEC56F4#10310006FF000200"), 0.0)  # 49 bytes cannot be 6 packets
    assert isinstance(bad[0], TransferAborted) and bad[0].reason == AbortReason.NO_RESOURCES
    big = rx.receive(f("1CEC56F4#10FA0724FF001500"), 0.0)  # 2042 bytes
    assert big[0].reason == AbortReason.TOO_LARGE
    assert rx.receive(f("1CEC56F4#20090002FF001100"), 0.0)[0].kind == "bam"
    assert rx.receive(Frame(0x1CEC56F5, bytes(8)), 0.0) == []  # not from our peer


def test_observer_follows_an_exchange_without_replying() -> None:
    obs = TpObserver(BMS, CHARGER)
    events = []
    for text in ["1CEC56F4#10090002FF001100", "1CECF456#110201FFFF001100", "1CEB56F4#01C50EA00F4C614D",
                 "1CEB56F4#020000FFFFFFFFFF", "1CECF456#13090002FF001100"]:
        events += obs.observe(f(text))
    assert events == [Reassembled(0x1100, bytes.fromhex("C50EA00F4C614D0000"), 2)]


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=9, max_size=400), st.integers(1, 255), st.booleans())
def test_round_trip_property(data: bytes, window: int, blast: bool) -> None:
    tx = Transport(BMS, CHARGER, send_without_cts=blast)
    rx = Transport(CHARGER, BMS, max_packets_per_cts=window)
    tx.send(0x1600, data, 0.0)
    events = drain(tx, rx, 0.0, rounds=200)
    assert Reassembled(0x1600, data, len(dt_payloads(data))) in events
