"""`decode_block`'s one-pass decoding agrees with `decode_value` on every register of a block."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import ProtocolError
from drivers.modbus import (
    MapDecoder,
    ReadBlock,
    RegisterSpec,
    SensorFault,
    decode_block,
    decode_value,
    plan_reads,
)
from drivers.modbus_client import ModbusDriver

T = TypeVar("T")

TYPES = ["int16", "uint16", "int32", "uint32", "float32"]


@st.composite
def register_maps(draw: st.DrawFn) -> list[RegisterSpec]:
    specs = []
    address = draw(st.integers(0, 20))
    for index in range(draw(st.integers(1, 8))):
        type_ = draw(st.sampled_from(TYPES))
        specs.append(
            RegisterSpec(
                name=f"v{index}",
                address=address,
                table=draw(st.sampled_from(["holding", "input"])),
                type=type_,
                word_order=draw(st.sampled_from(["big", "little"])),
                scale=draw(st.sampled_from([1.0, 0.1, 0.01, 0.001, 1e-05, 2.0, -0.5])),
                offset=draw(st.sampled_from([0.0, -40.0, 0.5])),
                fault_codes=(32767,) if type_ in ("int16", "uint16", "int32", "uint32") else (),
            )
        )
        address += specs[-1].width + draw(st.integers(0, 10))
    return specs


@given(registers=register_maps(), data=st.data())
def test_decode_block_matches_decode_value(
    registers: list[RegisterSpec], data: st.DataObject
) -> None:
    for block in plan_reads(registers):
        words = data.draw(
            st.lists(st.integers(0, 0xFFFF), min_size=block.count, max_size=block.count)
        )
        words = [32767 if w % 7 == 0 else w for w in words]  # some fault codes
        expected_values: dict[str, float] = {}
        expected_faults: dict[str, str] = {}
        error = None
        for spec in block.registers:
            at = spec.address - block.start
            try:
                expected_values[spec.name] = decode_value(spec, words[at : at + spec.width])
            except SensorFault as exc:
                expected_faults[spec.name] = str(exc)
            except ValueError as exc:
                error = error or str(exc)
        if error is not None:
            with pytest.raises(ValueError, match="not a number"):
                decode_block(block, words)
            continue
        values, faults = decode_block(block, words)
        assert faults == expected_faults
        assert values.keys() == expected_values.keys()
        for name, value in values.items():
            assert value == expected_values[name] or (
                math.isnan(value) and math.isnan(expected_values[name])
            )


def test_overlapping_registers_decode_one_by_one() -> None:
    wide = RegisterSpec(name="wide", address=0, type="int32")
    low = RegisterSpec(name="low", address=1, type="uint16", fault_codes=(7,))
    block = ReadBlock("holding", 0, 2, (wide, low))
    assert decode_block(block, [0, 5]) == ({"wide": 5.0, "low": 5.0}, {})
    assert decode_block(block, [1, 7]) == ({"wide": 65543.0}, {"low": "low: sensor fault code 7"})


@given(registers=register_maps(), data=st.data())
def test_map_decoder_matches_decode_block_on_each_block(
    registers: list[RegisterSpec], data: st.DataObject
) -> None:
    blocks = plan_reads(registers)
    words = [
        data.draw(st.lists(st.integers(0, 0xFFFF), min_size=b.count, max_size=b.count))
        for b in blocks
    ]
    expected_values: dict[str, float] = {}
    expected_faults: dict[str, str] = {}
    try:
        for block, block_words in zip(blocks, words, strict=True):
            values, faults = decode_block(block, block_words)
            expected_values.update(values)
            expected_faults.update(faults)
    except ValueError:
        with pytest.raises(ValueError, match="not a number"):
            MapDecoder(blocks).decode(words)
        return
    values, faults = MapDecoder(blocks).decode(words)
    assert list(values) == list(expected_values)  # the blocks' order, as telemetry lists them
    assert faults == expected_faults
    for name, value in values.items():
        assert value == expected_values[name] or (
            math.isnan(value) and math.isnan(expected_values[name])
        )


@st.composite
def integer_maps(draw: st.DrawFn) -> list[RegisterSpec]:
    """Maps that `MapDecoder` compiles: integers scaled by 10**-d or taken as they are."""
    specs = []
    address = draw(st.integers(0, 20))
    for index in range(draw(st.integers(1, 8))):
        specs.append(
            RegisterSpec(
                name=f"v{index}",
                address=address,
                table=draw(st.sampled_from(["holding", "input"])),
                type=draw(st.sampled_from(["int16", "uint16", "int32", "uint32"])),
                scale=draw(st.sampled_from([1.0, 0.1, 0.01, 0.001, 1e-05])),
                fault_codes=draw(st.sampled_from([(), (32767,), (0, 7)])),
            )
        )
        address += specs[-1].width + draw(st.integers(0, 10))
    return specs


@given(registers=integer_maps(), data=st.data())
def test_a_compiled_map_decoder_decodes_as_the_plan_steps(
    registers: list[RegisterSpec], data: st.DataObject
) -> None:
    blocks = plan_reads(registers)
    decoder = MapDecoder(blocks)
    assert decoder.decode != decoder._decode_steps  # compiled
    # Now and then a word out of range, a block of the wrong size or a block missing.
    word = st.integers(0, 0xFFFF) | st.sampled_from([0, 7, 32767, -1, 0x10000])
    sizes = [b.count + data.draw(st.sampled_from([0] * 8 + [-1, 1])) for b in blocks]
    words = [data.draw(st.lists(word, min_size=size, max_size=size)) for size in sizes]
    if data.draw(st.integers(0, 9)) == 0:
        words = words[: data.draw(st.integers(0, len(words)))]
    try:
        expected = decoder._decode_steps(words)
    except Exception as exc:
        with pytest.raises(type(exc)) as raised:
            decoder.decode(words)
        assert str(raised.value) == str(exc)
        return
    values, faults = decoder.decode(words)
    assert list(values.items()) == list(expected[0].items())  # values, order and types
    assert all(type(value) is float for value in values.values())
    assert faults == expected[1]


def test_map_decoder_refuses_a_block_of_the_wrong_size() -> None:
    blocks = plan_reads([RegisterSpec(name="a", address=0), RegisterSpec(name="b", address=20)])
    assert [b.count for b in blocks] == [1, 1]
    with pytest.raises(ValueError, match=r"expected \[1, 1\] registers, got \[2, 0\]"):
        MapDecoder(blocks).decode([[1, 2], []])


async def test_the_driver_names_the_block_holding_an_undecodable_value() -> None:
    registers = [
        RegisterSpec(name="setpoint_c", address=0, table="holding"),
        RegisterSpec(name="temperature_c", address=0, table="input", type="float32"),
    ]

    class Link:
        """What the driver asks of its link, answering a NaN in the input block."""

        def prepare_reads(self, blocks: list[ReadBlock], *, unit_id: int) -> list[ReadBlock]:
            return blocks

        async def read(
            self, reads: list[ReadBlock], *, device: str, decode: Callable[[list[list[int]]], T]
        ) -> T:
            return decode([[5], [0x7FC0, 0]])  # float32 NaN

    driver = ModbusDriver(device_id="f1", link=Link(), unit_id=1, registers=registers)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="temperature_c: register holds nan") as raised:
        await driver.read()
    assert raised.value.operation == "read input 0"
