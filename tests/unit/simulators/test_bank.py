"""The register bank: what a simulated device answers to each request PDU."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from drivers.modbus import RegisterSpec, decode_value
from simulators.modbus._bank import RegisterBank, serve_pdu
from simulators.modbus._framing import (
    ReadRequest,
    WriteMultipleRequest,
    WriteSingleRequest,
    encode_request,
)

TEMP = RegisterSpec(
    name="temperature_c", address=0, table="input", scale=0.1, fault_codes=(-32768,)
)
SETPOINT = RegisterSpec(
    name="setpoint_c",
    address=10,
    table="holding",
    type="float32",
    word_order="little",
    writable=True,
)
LIMIT = RegisterSpec(name="limit_c", address=20, table="holding")


def _bank() -> RegisterBank:
    bank = RegisterBank(registers=[TEMP, SETPOINT, LIMIT])
    bank.update({"temperature_c": -79.4, "setpoint_c": -80.0})
    return bank


def _refuse(values: Mapping[str, float]) -> None:
    if values.get("setpoint_c", -80) > 0:
        raise ValueError("too warm")


def test_read_encodes_values() -> None:
    reply = serve_pdu(_bank(), encode_request(ReadRequest(4, 0, 1)), _refuse)
    assert reply[:2] == bytes([4, 2])
    assert decode_value(TEMP, [int.from_bytes(reply[2:4], "big")]) == pytest.approx(-79.4)


@pytest.mark.parametrize(
    ("request_pdu", "code"),
    [
        (encode_request(ReadRequest(4, 1, 1)), 2),  # unmapped input register
        (encode_request(ReadRequest(3, 10, 3)), 2),  # runs past the float into nothing
        (encode_request(WriteSingleRequest(20, 5)), 2),  # not writable
        (encode_request(WriteSingleRequest(10, 5)), 2),  # half of a float32
        (encode_request(WriteMultipleRequest(10, (0, 0x7FC0))), 3),  # NaN
        (encode_request(WriteMultipleRequest(10, (0, 0x4120))), 3),  # 10.0: refused
        (bytes([3, 0, 0]), 3),  # truncated
        (bytes([0x2B, 0x0E, 1, 0]), 1),  # device identification: not served
        (b"", 1),
    ],
)
def test_refusals_are_exceptions(request_pdu: bytes, code: int) -> None:
    bank = _bank()
    reply = serve_pdu(bank, request_pdu, _refuse)
    assert reply[0] & 0x80 and reply[1] == code
    assert bank.words("setpoint_c") == _bank().words("setpoint_c")


def test_write_reaches_the_handler_and_the_registers() -> None:
    bank = _bank()
    seen: list[Mapping[str, float]] = []
    reply = serve_pdu(bank, encode_request(WriteMultipleRequest(10, (0, 0xC2A0))), seen.append)
    assert reply == bytes([16, 0, 10, 0, 2])
    assert seen == [{"setpoint_c": -80.0}]
    assert bank.words("setpoint_c") == [0, 0xC2A0]


def test_frozen_bank_keeps_its_words() -> None:
    bank = _bank()
    before = bank.words("temperature_c")
    bank.frozen = True
    bank.update({"temperature_c": 20.0})
    assert bank.words("temperature_c") == before


def test_value_out_of_range_reads_as_over_range_code() -> None:
    bank = RegisterBank(registers=[TEMP.model_copy(update={"scale": 0.001})])
    bank.update({"temperature_c": 100.0})
    assert bank.words("temperature_c") == [0x8000]
