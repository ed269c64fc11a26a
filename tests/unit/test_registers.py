"""The register codec and read planner (pure): properties over every register type."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus import (
    MAX_READ_REGISTERS,
    RegisterSpec,
    SensorFault,
    decode_block,
    decode_value,
    encode_raw,
    encode_value,
    plan_reads,
)

RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


@given(
    type_=st.sampled_from(sorted(RANGES)), order=st.sampled_from(["big", "little"]), data=st.data()
)
def test_integer_raw_round_trip(type_: str, order: str, data: st.DataObject) -> None:
    low, high = RANGES[type_]
    raw = data.draw(st.integers(low, high))
    spec = RegisterSpec(name="v", address=0, type=type_, word_order=order)  # type: ignore[arg-type]
    words = encode_raw(spec, raw)
    assert len(words) == spec.width
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode_value(spec, words) == raw


@given(value=st.floats(-1e6, 1e6, allow_nan=False), order=st.sampled_from(["big", "little"]))
def test_float32_round_trip_within_float32_precision(value: float, order: str) -> None:
    spec = RegisterSpec(name="v", address=0, type="float32", word_order=order)  # type: ignore[arg-type]
    assert math.isclose(
        decode_value(spec, encode_value(spec, value)), value, rel_tol=1e-6, abs_tol=1e-6
    )


@given(
    value=st.floats(-300, 300),
    scale=st.sampled_from([0.1, 0.01, 0.5]),
    offset=st.sampled_from([0.0, -273.15, 10.0]),
)
def test_scaled_int16_round_trip_within_one_step(value: float, scale: float, offset: float) -> None:
    spec = RegisterSpec(name="t_c", address=0, type="int32", scale=scale, offset=offset)
    assert abs(decode_value(spec, encode_value(spec, value)) - value) <= scale / 2 + 1e-9


def test_word_order_matters() -> None:
    big = RegisterSpec(name="v", address=0, type="int32", word_order="big")
    little = RegisterSpec(name="v", address=0, type="int32", word_order="little")
    assert decode_value(big, [0x0001, 0x0000]) == 65536
    assert decode_value(little, [0x0001, 0x0000]) == 1
    assert decode_value(big, [0xFFFF, 0xFFFF]) == -1


def test_signed_int16_and_scale() -> None:
    spec = RegisterSpec(name="temperature_c", address=0, type="int16", scale=0.1)
    assert decode_value(spec, [0xFCE0]) == pytest.approx(-80.0)
    assert encode_value(spec, -80.0) == [0xFCE0]


def test_fault_code_is_a_sensor_fault_not_a_value() -> None:
    spec = RegisterSpec(
        name="temperature_c", address=0, type="int16", scale=0.1, fault_codes=(-32768,)
    )
    with pytest.raises(SensorFault):
        decode_value(spec, [0x8000])


def test_value_out_of_range_is_refused() -> None:
    spec = RegisterSpec(name="setpoint_c", address=0, type="int16", scale=0.1)
    with pytest.raises(ValueError, match="outside"):
        encode_value(spec, 4000.0)
    with pytest.raises(ValueError, match="finite"):
        encode_value(spec, math.nan)


def test_nan_in_float_register_is_not_a_measurement() -> None:
    spec = RegisterSpec(name="v", address=0, type="float32")
    with pytest.raises(ValueError, match="not a number"):
        decode_value(spec, [0x7FC0, 0x0000])


def test_invalid_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="writable"):
        RegisterSpec(name="v", address=0, table="input", writable=True)
    with pytest.raises(ValueError, match="past register 65535"):
        RegisterSpec(name="v", address=65535, type="float32")
    with pytest.raises(ValueError, match="do not fit"):
        RegisterSpec(name="v", address=0, type="uint16", fault_codes=(-1,))
    with pytest.raises(ValueError, match="non-zero"):
        RegisterSpec(name="v", address=0, scale=0)


specs_strategy = st.lists(
    st.builds(
        RegisterSpec,
        name=st.just("x"),
        address=st.integers(0, 400),
        table=st.sampled_from(["holding", "input"]),
        type=st.sampled_from(["int16", "uint16", "int32", "float32"]),
    ),
    min_size=1,
    max_size=30,
)


@given(specs=specs_strategy)
def test_plan_reads_covers_every_register_within_limits(specs: list[RegisterSpec]) -> None:
    specs = [s.model_copy(update={"name": f"v{i}"}) for i, s in enumerate(specs)]
    blocks = plan_reads(specs)
    covered = [reg.name for block in blocks for reg in block.registers]
    assert sorted(covered) == sorted(s.name for s in specs)
    for block in blocks:
        assert 1 <= block.count <= MAX_READ_REGISTERS
        for reg in block.registers:
            assert reg.table == block.table
            assert block.start <= reg.address
            assert reg.address + reg.width <= block.start + block.count


def test_plan_reads_merges_neighbours_and_splits_far_ones() -> None:
    specs = [RegisterSpec(name=f"v{a}", address=a, table="input") for a in (0, 1, 3, 200)]
    blocks = plan_reads(specs)
    assert [(b.start, b.count) for b in blocks] == [(0, 4), (200, 1)]


def test_decode_block_separates_values_and_faults() -> None:
    specs = [
        RegisterSpec(name="a_c", address=10, table="input", fault_codes=(32767,)),
        RegisterSpec(name="b_c", address=11, table="input", scale=0.5),
    ]
    (block,) = plan_reads(specs)
    values, faults = decode_block(block, [32767, 4])
    assert values == {"b_c": 2.0}
    assert set(faults) == {"a_c"}
    with pytest.raises(ValueError, match="expected 2 registers"):
        decode_block(block, [1])
