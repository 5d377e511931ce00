"""Sans-IO codec: every type, word order and scale round-trips; SunSpec sentinels; read-plan batching."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import (
    Block,
    CodecError,
    decode,
    decode_block,
    decode_blocks,
    encode,
    in_range,
    read_plan,
)
from drivers.modbus.regmap import RegisterMap, load_map, parse_map

DEVICES = Path(__file__).resolve().parents[2] / "config" / "devices"


def one(point: dict[str, Any], **top: Any) -> tuple[RegisterMap, Any]:
    m = parse_map({"device": "t", **top, "points": {"p": {"address": 0, "table": "holding", **point},
                                                    "p_sf": {"address": 100, "table": "holding", "type": "s16"}}})
    return m, m.points["p"]


# --------------------------------------------------------------------------- exact words


@pytest.mark.parametrize(
    ("point", "value", "words"),
    [
        ({"type": "u16"}, 54321, [54321]),
        ({"type": "s16"}, -2, [0xFFFE]),
        ({"type": "u32"}, 0x12345678, [0x1234, 0x5678]),
        ({"type": "u32", "word_order": "little"}, 0x12345678, [0x5678, 0x1234]),
        ({"type": "s32"}, -70000, [0xFFFE, 0xEE90]),
        ({"type": "s32", "word_order": "little"}, -70000, [0xEE90, 0xFFFE]),
        ({"type": "f32"}, 1.5, [0x3FC0, 0x0000]),
        ({"type": "f32", "word_order": "little"}, 1.5, [0x0000, 0x3FC0]),
        ({"type": "u16", "scale": -1}, 800.5, [8005]),
        ({"type": "s16", "scale": -2}, -1.25, [0xFF83]),
        ({"type": "u16", "scale": 1}, 40000, [4000]),
        ({"type": "string", "length": 3}, "SunS", [0x5375, 0x6E53, 0x0000]),
        ({"type": "bits16"}, 0b101, [5]),
        ({"type": "bits32"}, 1 << 20, [0x0010, 0x0000]),
    ],
)
def test_encode_gives_the_documented_words(point: dict[str, Any], value: Any, words: list[int]) -> None:
    m, p = one(point)
    assert encode(m, p, value) == words
    back = decode(m, p, words)
    assert back == pytest.approx(value) if isinstance(value, float) else back == value


def test_map_default_word_order_applies_unless_the_point_overrides_it() -> None:
    m, p = one({"type": "u32"}, word_order="little")
    assert encode(m, p, 0x00010002) == [0x0002, 0x0001]
    m, p = one({"type": "u32", "word_order": "big"}, word_order="little")
    assert encode(m, p, 0x00010002) == [0x0001, 0x0002]


def test_bool_points_on_coils() -> None:
    m = parse_map({"device": "t", "points": {"on": {"address": 3, "table": "coil", "type": "bool", "access": "rw"}}})
    p = m.points["on"]
    assert encode(m, p, True) == [1] and encode(m, p, False) == [0]
    assert decode(m, p, [1]) is True and decode(m, p, [0]) is False


def test_integer_stays_int_without_scale_and_becomes_float_with_one() -> None:
    m, p = one({"type": "u16"})
    assert isinstance(decode(m, p, [7]), int)
    m, p = one({"type": "u16", "scale": -1})
    assert decode(m, p, [7]) == pytest.approx(0.7) and isinstance(decode(m, p, [7]), float)


# --------------------------------------------------------------------------- round trips (property based)


INT_TYPES = {"u16": (0, 0xFFFE), "s16": (-0x7FFF, 0x7FFF), "u32": (0, 0xFFFFFFFE), "s32": (-0x7FFFFFFF, 0x7FFFFFFF)}


@given(
    type_=st.sampled_from(sorted(INT_TYPES)),
    order=st.sampled_from(["big", "little"]),
    exp=st.integers(-3, 3),
    data=st.data(),
)
def test_integer_types_round_trip_at_every_scale_and_word_order(type_: str, order: str, exp: int, data: Any) -> None:
    lo, hi = INT_TYPES[type_]
    raw = data.draw(st.integers(lo, hi))
    point = {"type": type_, "scale": exp}
    if type_ in ("u32", "s32"):
        point["word_order"] = order
    m, p = one(point)
    value = raw * 10.0**exp
    words = encode(m, p, value)
    assert all(0 <= w <= 0xFFFF for w in words) and len(words) == p.size
    assert decode(m, p, words) == pytest.approx(value, rel=1e-12, abs=1e-12)


@given(sf=st.integers(-4, 4), raw=st.integers(-0x7FFF, 0x7FFF))
def test_sunspec_scale_factor_round_trip(sf: int, raw: int) -> None:
    m, p = one({"type": "s16", "scale": "p_sf"})
    value = raw * 10.0**sf  # raw = value / 10**sf
    words = encode(m, p, value, scale_factor=sf)
    assert words == [raw & 0xFFFF]
    assert decode(m, p, words, scale_factor=sf) == pytest.approx(value)


@given(order=st.sampled_from(["big", "little"]),
       value=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_f32_round_trip(order: str, value: float) -> None:
    m, p = one({"type": "f32", "word_order": order})
    assert decode(m, p, encode(m, p, value)) == value


@given(text=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16))
def test_string_round_trip(text: str) -> None:
    m, p = one({"type": "string", "length": 8}, not_implemented="none")
    words = encode(m, p, text)
    assert len(words) == 8 and decode(m, p, words) == text


def test_bits_encode_from_names() -> None:
    m, p = one({"type": "bits16", "bits": {0: {"name": "charge"}, 1: {"name": "discharge"}}})
    assert encode(m, p, ["discharge"]) == [2]
    assert encode(m, p, {"charge", "discharge"}) == [3]
    with pytest.raises(CodecError, match="no bit named 'boost'"):
        encode(m, p, ["boost"])


# --------------------------------------------------------------------------- SunSpec "not implemented"


@pytest.mark.parametrize(
    ("point", "words"),
    [
        ({"type": "u16"}, [0xFFFF]),
        ({"type": "s16"}, [0x8000]),
        ({"type": "u32"}, [0xFFFF, 0xFFFF]),
        ({"type": "s32"}, [0x8000, 0x0000]),
        ({"type": "s32", "word_order": "little"}, [0x0000, 0x8000]),
        ({"type": "f32"}, [0x7FC0, 0x0000]),
        ({"type": "bits16"}, [0xFFFF]),
        ({"type": "bits32"}, [0xFFFF, 0xFFFF]),
        ({"type": "string", "length": 2}, [0, 0]),
    ],
)
def test_not_implemented_decodes_to_none(point: dict[str, Any], words: list[int]) -> None:
    m, p = one(point)
    assert decode(m, p, words) is None
    assert encode(m, p, None) == words  # what a simulator writes for a point it lacks


def test_sentinels_are_plain_values_when_the_map_says_so() -> None:
    m, p = one({"type": "u16"}, not_implemented="none")
    assert decode(m, p, [0xFFFF]) == 0xFFFF
    m, p = one({"type": "s16"}, not_implemented="none")
    assert decode(m, p, [0x8000]) == -32768


def test_not_implemented_scale_factor_makes_scaled_points_none() -> None:
    m, p = one({"type": "u16", "scale": "p_sf"})
    block = Block("holding", 0, 101, ("p", "p_sf"))
    words = [0] * 101
    words[0], words[100] = 555, 0x8000
    assert decode_block(m, block, words) == {"p": None, "p_sf": None}


# --------------------------------------------------------------------------- encode errors


def test_encode_refuses_what_does_not_fit() -> None:
    m, p = one({"type": "u16", "scale": -1})
    with pytest.raises(CodecError, match=r"points.p: 6553.6 .*does not fit u16"):
        encode(m, p, 6553.6)
    with pytest.raises(CodecError, match="does not fit u16"):
        encode(m, p, -0.1)
    with pytest.raises(CodecError, match="expects a number"):
        encode(m, p, "12")
    with pytest.raises(CodecError, match="cannot be written"):
        encode(m, p, math.inf)
    m, p = one({"type": "string", "length": 2})
    with pytest.raises(CodecError, match="does not fit 2 register"):
        encode(m, p, "toolong")


def test_scaled_by_sf_point_needs_its_value() -> None:
    m, p = one({"type": "u16", "scale": "p_sf"})
    with pytest.raises(CodecError, match="needs the value of scale-factor point 'p_sf'"):
        encode(m, p, 12.0)
    with pytest.raises(CodecError, match="needs the value"):
        decode(m, p, [12])


def test_decode_checks_word_count() -> None:
    m, p = one({"type": "u32"})
    with pytest.raises(CodecError, match="expects 2 word"):
        decode(m, p, [1])


def test_in_range() -> None:
    m, p = one({"type": "s16", "range": {"min": -10, "max": 10}})
    assert in_range(p, 10) and in_range(p, -10) and in_range(p, None)
    assert not in_range(p, 10.5) and not in_range(p, -11)


# --------------------------------------------------------------------------- batching


def plan_map(max_gap: int = 2) -> RegisterMap:
    return parse_map({
        "device": "t",
        "max_gap": max_gap,
        "points": {
            "a": {"address": 0, "table": "holding", "type": "u16"},
            "b": {"address": 1, "table": "holding", "type": "u32"},
            "c": {"address": 5, "table": "holding", "type": "u16"},  # gap of 2 after b
            "d": {"address": 9, "table": "holding", "type": "u16"},  # gap of 3 after c
            "e": {"address": 0, "table": "input", "type": "u16"},
            "w": {"address": 20, "table": "holding", "type": "u16", "access": "w"},
            "f": {"address": 3, "table": "coil", "type": "bool"},
            "g": {"address": 7, "table": "coil", "type": "bool"},
        },
    })


def test_contiguous_and_small_gaps_share_a_block() -> None:
    plan = read_plan(plan_map())
    assert plan == [
        Block("coil", 3, 1, ("f",)),
        Block("coil", 7, 1, ("g",)),
        Block("holding", 0, 6, ("a", "b", "c")),
        Block("holding", 9, 1, ("d",)),
        Block("input", 0, 1, ("e",)),
    ]


def test_gap_limit_is_configurable() -> None:
    assert [b.points for b in read_plan(plan_map(), ["a", "b", "c", "d"], max_gap=0)] == [("a", "b"), ("c",), ("d",)]
    assert [b.points for b in read_plan(plan_map(max_gap=3), ["a", "b", "c", "d"])] == [("a", "b", "c", "d")]


def test_write_only_points_are_not_read() -> None:
    assert all("w" not in b.points for b in read_plan(plan_map()))
    with pytest.raises(CodecError, match="write-only"):
        read_plan(plan_map(), ["w"])


def test_blocks_never_exceed_125_registers() -> None:
    points = {f"p{i}": {"address": i * 2, "table": "input", "type": "u32"} for i in range(200)}
    m = parse_map({"device": "t", "points": points})
    plan = read_plan(m)
    assert all(b.count <= 125 for b in plan)
    assert sum(len(b.points) for b in plan) == 200
    assert plan[0].count == 124 and plan[1].address == 124  # a u32 is never split across blocks
    assert [b.count for b in read_plan(m, max_count=10)][:2] == [10, 10]


def test_plan_adds_the_scale_factors_it_needs() -> None:
    bess = load_map(DEVICES / "bess-sunspec.yaml")
    plan = read_plan(bess, ["soc"])
    assert {n for b in plan for n in b.points} == {"soc", "soc_sf"}


def test_decode_block_uses_addresses_within_the_block() -> None:
    m = plan_map()
    block = read_plan(m, ["a", "b", "c"])[0]
    words = [7, 0x0001, 0x0002, 0xAAAA, 0xBBBB, 9]
    assert decode_block(m, block, words) == {"a": 7, "b": 0x00010002, "c": 9}
    with pytest.raises(CodecError, match="expects 6 words"):
        decode_block(m, block, words[:5])


def test_sunspec_scale_factor_from_another_block() -> None:
    bess = load_map(DEVICES / "bess-sunspec.yaml")
    plan = read_plan(bess, ["soc"], max_gap=0)
    assert len(plan) == 2  # soc at 40081, soc_sf at 40126
    words = {"soc": [875], "soc_sf": [(-1) & 0xFFFF]}
    per_block = [[w for n in b.points for w in words[n]] for b in plan]
    assert decode_blocks(bess, plan, per_block) == {"soc": pytest.approx(87.5), "soc_sf": -1}
    soc_block = next(b for b in plan if "soc" in b.points)
    assert decode_block(bess, soc_block, [875], scale_factors={"soc_sf": -2}) == {"soc": pytest.approx(8.75)}
    with pytest.raises(CodecError, match="scale factor 'soc_sf' was not read"):
        decode_block(bess, soc_block, [875])


def test_module_map_full_plan_decodes_a_realistic_frame() -> None:
    m = load_map(DEVICES / "dc-module-40kw.yaml")
    block = next(b for b in read_plan(m) if b.table == "input" and "measured_current" in b.points)
    words = [0] * block.count
    values = {"measured_voltage": 750.0, "measured_current": -53.4, "measured_power": -40050,
              "temperature": 41.5, "fault_word": 0b1, "dc_energy_out": 123456789}
    for name, v in values.items():
        p = m.points[name]
        words[p.address - block.address:p.end - block.address] = encode(m, p, v)
    got = decode_block(m, block, words)
    for name, v in values.items():
        assert got[name] == pytest.approx(v)
    assert [b.name for b in m.points["fault_word"].active_bits(got["fault_word"])] == ["over_temperature"]
