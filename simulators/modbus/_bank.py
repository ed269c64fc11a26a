"""A device's register tables and how it answers a request PDU, pure.

A `RegisterBank` holds one device's holding and input tables as 16-bit words, encoded from
named engineering values through the device's register map with the driver's own codec
(`drivers.modbus.encode_value`), so the simulator serves exactly what the map declares.

Served: reads of mapped addresses (FC3 holding, FC4 input); writes (FC6, FC16) of whole
`writable` holding registers. Anything else gets the exception a real device sends: an unmapped
address in a read, or a write to a register that is not writable or only partly covered, is 02
(illegal data address); a written value the device refuses (out of range, NaN, a fault code) is
03 (illegal data value); an unknown function is 01.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from drivers.modbus import RegisterSpec, SensorFault, decode_value, encode_raw, encode_value
from simulators.modbus._framing import (
    ExceptionCode,
    ModbusError,
    ReadRequest,
    WriteSingleRequest,
    encode_exception,
    encode_read_response,
    encode_write_response,
    parse_request,
)

_RAW_LIMITS = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}

#: Called with the decoded values of one write; raises ValueError to refuse all of them.
WriteHandler = Callable[[Mapping[str, float]], None]


def _encode(spec: RegisterSpec, value: float) -> list[int]:
    try:
        return encode_value(spec, value)
    except ValueError:
        # What a real controller shows for a value its register cannot hold: its over-range
        # code when it has one, else the register saturated.
        if spec.fault_codes:
            return encode_raw(spec, spec.fault_codes[-1])
        low, high = _RAW_LIMITS.get(spec.type, (0, 0))
        raw = (value - spec.offset) / spec.scale
        return encode_raw(spec, low if raw != raw or raw < low else high)


class RegisterBank:
    """One device's holding and input register tables."""

    def __init__(self, *, registers: Sequence[RegisterSpec]) -> None:
        self.registers = tuple(registers)
        self._words: dict[tuple[str, int], int] = {}
        self._owner: dict[tuple[str, int], RegisterSpec] = {}
        for spec in self.registers:
            for index, word in enumerate(_encode(spec, 0.0)):
                self._words[(spec.table, spec.address + index)] = word
                self._owner[(spec.table, spec.address + index)] = spec
        #: While frozen (the `stuck` fault) `update` leaves every word as it is.
        self.frozen = False

    def update(self, values: Mapping[str, float], *, raw: Mapping[str, int] | None = None) -> None:
        """Encode named values (and raw codes, which win) into the tables, unless frozen.

        Names the map has but `values` lacks keep their words (a plain memory register).
        """
        if self.frozen:
            return
        raw = raw or {}
        for spec in self.registers:
            if spec.name in raw:
                self._store(spec, encode_raw(spec, raw[spec.name]))
            elif spec.name in values:
                self._store(spec, _encode(spec, values[spec.name]))

    def _store(self, spec: RegisterSpec, words: Sequence[int]) -> None:
        for index, word in enumerate(words):
            self._words[(spec.table, spec.address + index)] = word

    def words(self, name: str) -> list[int]:
        """The words a named value holds now (KeyError for a name not in the map)."""
        spec = next((reg for reg in self.registers if reg.name == name), None)
        if spec is None:
            raise KeyError(name)
        return [self._words[(spec.table, spec.address + i)] for i in range(spec.width)]

    def read(self, table: str, address: int, count: int) -> list[int]:
        """`count` words from `address`; ModbusError 02 when any of them is unmapped."""
        try:
            return [self._words[(table, address + i)] for i in range(count)]
        except KeyError as exc:
            raise ModbusError(
                ExceptionCode.ILLEGAL_DATA_ADDRESS,
                f"{table} register {exc.args[0][1]} is not mapped",
            ) from None

    def write(self, address: int, words: Sequence[int], on_write: WriteHandler) -> None:
        """Write holding registers: all or nothing (ModbusError 02 or 03 on refusal)."""
        touched: dict[str, RegisterSpec] = {}
        for index in range(len(words)):
            spec = self._owner.get(("holding", address + index))
            if spec is None or not spec.writable:
                raise ModbusError(
                    ExceptionCode.ILLEGAL_DATA_ADDRESS,
                    f"holding register {address + index} is not writable",
                )
            touched[spec.name] = spec
        new_words = dict(self._words)
        for index, word in enumerate(words):
            new_words[("holding", address + index)] = word & 0xFFFF
        decoded: dict[str, float] = {}
        for spec in touched.values():
            if spec.address < address or spec.address + spec.width > address + len(words):
                raise ModbusError(
                    ExceptionCode.ILLEGAL_DATA_ADDRESS, f"write covers only part of '{spec.name}'"
                )
            spec_words = [new_words[("holding", spec.address + i)] for i in range(spec.width)]
            try:
                decoded[spec.name] = decode_value(spec, spec_words)
            except (SensorFault, ValueError) as exc:
                raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE, str(exc)) from None
        try:
            on_write(decoded)
        except ValueError as exc:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE, str(exc)) from None
        if not self.frozen:
            self._words = new_words


def serve_pdu(bank: RegisterBank, pdu: bytes, on_write: WriteHandler) -> bytes:
    """The response PDU a device with this bank sends to a request PDU."""
    function = pdu[0] if pdu else 0
    try:
        request = parse_request(pdu)
        if isinstance(request, ReadRequest):
            table = "holding" if request.function_code == 3 else "input"
            words = bank.read(table, request.address, request.count)
            return encode_read_response(request.function_code, words)
        if isinstance(request, WriteSingleRequest):
            bank.write(request.address, [request.value], on_write)
            return encode_write_response(6, request.address, request.value)
        bank.write(request.address, request.values, on_write)
        return encode_write_response(16, request.address, len(request.values))
    except ModbusError as exc:
        return encode_exception(function, exc.code)
