"""Modbus framing and PDUs, pure: bytes in, frames out, never any I/O.

Written from the Modbus specifications (Application Protocol v1.1b3, Messaging on TCP/IP v1.0b,
Serial Line v1.02), independently of pymodbus, so the simulators check the daemon's client
against a second implementation rather than against itself.

Covered
  * MBAP (Modbus TCP) frames: `decode_tcp` / `encode_tcp`.
  * RTU frames (address, PDU, CRC-16/MODBUS): `decode_rtu` / `encode_rtu`. RTU has no length
    field, so the decoder knows each function code's length; it skips bytes until it finds a
    CRC-valid frame (resynchronisation after garbage). `drain_rtu` adds what a real device
    does at a 3.5-character silence: a frame of an unknown function code is the whole buffer,
    and a partial frame that will never complete is dropped byte by byte.
  * PDUs of FC3 (read holding registers), FC4 (read input registers), FC6 (write single
    register), FC16 (write multiple registers), and exception responses.

Not covered: coils and discrete inputs (FC1, 2, 5, 15), diagnostics (FC8), device
identification (FC43), Modbus ASCII, and RTU inter-character timing (a pseudo-terminal has none).

Every decoder takes any byte string and returns `(consumed, frame | None)`: it never raises,
`0 <= consumed <= len(buffer)`, and `consumed > 0` with no frame means garbage was skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

READ_HOLDING = 3
READ_INPUT = 4
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16
#: Largest quantities one request may carry (Application Protocol 6.3, 6.4, 6.12).
MAX_READ_COUNT = 125
MAX_WRITE_COUNT = 123
#: Largest RTU frame (Serial Line 2.5.1) and the highest unicast unit address.
MAX_RTU_FRAME = 256
MAX_UNIT_ADDRESS = 247
_MBAP_HEADER = 7
_MAX_TCP_PDU = 253


class ExceptionCode(IntEnum):
    """Modbus exception codes a server answers with."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_DATA_ADDRESS = 2
    ILLEGAL_DATA_VALUE = 3
    SERVER_DEVICE_FAILURE = 4


class ModbusError(Exception):
    """A request the server answers with an exception response."""

    def __init__(self, code: ExceptionCode, message: str = "") -> None:
        super().__init__(f"{code.name}: {message}" if message else code.name)
        self.code = code


@dataclass(frozen=True, slots=True)
class TcpFrame:
    """One Modbus TCP application data unit."""

    transaction_id: int
    unit_id: int
    pdu: bytes


@dataclass(frozen=True, slots=True)
class RtuFrame:
    """One Modbus RTU frame (the CRC is checked on decode and added on encode)."""

    unit_id: int
    pdu: bytes


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """FC3 or FC4: read `count` registers from `address`."""

    function_code: int
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class WriteSingleRequest:
    """FC6: write one register."""

    address: int
    value: int


@dataclass(frozen=True, slots=True)
class WriteMultipleRequest:
    """FC16: write consecutive registers from `address`."""

    address: int
    values: tuple[int, ...]


Request = ReadRequest | WriteSingleRequest | WriteMultipleRequest


@dataclass(frozen=True, slots=True)
class ReadResponse:
    """The answer to FC3 or FC4."""

    function_code: int
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WriteResponse:
    """The answer to FC6 (`count_or_value` is the value) or FC16 (the count)."""

    function_code: int
    address: int
    count_or_value: int


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """An exception response to `function_code`."""

    function_code: int
    code: int


Response = ReadResponse | WriteResponse | ExceptionResponse


# ------------------------------------------------------------------------------------ CRC


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


# ------------------------------------------------------------------------------------ TCP


def encode_tcp(frame: TcpFrame) -> bytes:
    """The bytes of one MBAP frame."""
    header = struct.pack(">HHHB", frame.transaction_id, 0, len(frame.pdu) + 1, frame.unit_id)
    return header + frame.pdu


def decode_tcp(buffer: bytes) -> tuple[int, TcpFrame | None]:
    """Decode one MBAP frame from the start of `buffer`.

    A header that cannot be Modbus (protocol id not 0, length out of range) is skipped one byte
    at a time, so a stream that lost its alignment finds the next plausible header.
    """
    skipped = 0
    while len(buffer) - skipped >= _MBAP_HEADER:
        tid, protocol, length, unit = struct.unpack_from(">HHHB", buffer, skipped)
        if protocol != 0 or not 2 <= length <= _MAX_TCP_PDU + 1:
            skipped += 1
            continue
        end = skipped + _MBAP_HEADER - 1 + length
        if len(buffer) < end:
            return skipped, None
        return end, TcpFrame(tid, unit, bytes(buffer[skipped + _MBAP_HEADER : end]))
    return skipped, None


# ------------------------------------------------------------------------------------ RTU


def encode_rtu(frame: RtuFrame) -> bytes:
    """The bytes of one RTU frame, CRC included."""
    body = bytes([frame.unit_id]) + frame.pdu
    return body + struct.pack("<H", crc16(body))


def _rtu_length(buffer: bytes, start: int, *, requests: bool) -> int | None:
    """The length of the frame starting at `start`: None when more bytes are needed to tell,
    0 when its function code has no known length (only a silence ends it)."""
    function = buffer[start + 1]
    available = len(buffer) - start
    if requests:
        if function in (READ_HOLDING, READ_INPUT, WRITE_SINGLE):
            return 8
        if function == WRITE_MULTIPLE:
            return 9 + buffer[start + 6] if available >= 7 else None
        return 0
    if function & 0x80:
        return 5
    if function in (READ_HOLDING, READ_INPUT):
        return 5 + buffer[start + 2]
    if function in (WRITE_SINGLE, WRITE_MULTIPLE):
        return 8
    return 0


def _crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def decode_rtu(buffer: bytes, *, requests: bool = True) -> tuple[int, RtuFrame | None]:
    """Decode one RTU frame (a request, or with `requests=False` a response).

    Bytes that cannot start a frame, or start one whose CRC is wrong, are skipped. A frame
    whose end is not yet in the buffer (or whose function code has no known length) waits for
    more bytes: `(skipped, None)`.
    """
    start = 0
    while len(buffer) - start >= 4:
        unit, function = buffer[start], buffer[start + 1]
        if unit > MAX_UNIT_ADDRESS or function == 0 or (requests and function & 0x80):
            start += 1
            continue
        length = _rtu_length(buffer, start, requests=requests)
        if length is None or length == 0 or len(buffer) - start < length:
            return start, None
        candidate = bytes(buffer[start : start + length])
        if _crc_ok(candidate):
            return start + length, RtuFrame(unit, candidate[1:-2])
        start += 1
    return start, None


def drain_rtu(
    buffer: bytes, *, silence: bool, requests: bool = True
) -> tuple[list[RtuFrame], bytes]:
    """Every frame in `buffer`, and the bytes left waiting for more.

    With `silence` (the line has been quiet for 3.5 characters) nothing more will arrive: what
    is left is one whole frame if its CRC is right (any function code), else garbage, dropped
    one byte at a time so a frame hidden behind it is still found.
    """
    frames: list[RtuFrame] = []
    while buffer:
        consumed, frame = decode_rtu(buffer, requests=requests)
        buffer = buffer[consumed:]
        if frame is not None:
            frames.append(frame)
            continue
        if consumed:
            continue
        if not silence:
            break
        if _crc_ok(buffer) and buffer[0] <= MAX_UNIT_ADDRESS and len(buffer) <= MAX_RTU_FRAME:
            frames.append(RtuFrame(buffer[0], bytes(buffer[1:-2])))
            buffer = b""
        else:
            buffer = buffer[1:]
    return frames, bytes(buffer)


# ------------------------------------------------------------------------------------ PDUs


def encode_request(request: Request) -> bytes:
    """The PDU of a request."""
    if isinstance(request, ReadRequest):
        return struct.pack(">BHH", request.function_code, request.address, request.count)
    if isinstance(request, WriteSingleRequest):
        return struct.pack(">BHH", WRITE_SINGLE, request.address, request.value)
    count = len(request.values)
    return struct.pack(
        f">BHHB{count}H", WRITE_MULTIPLE, request.address, count, 2 * count, *request.values
    )


def parse_request(pdu: bytes) -> Request:
    """Parse a request PDU; ModbusError carries the exception code to answer with."""
    if not pdu:
        raise ModbusError(ExceptionCode.ILLEGAL_FUNCTION, "empty PDU")
    function = pdu[0]
    if function in (READ_HOLDING, READ_INPUT):
        if len(pdu) != 5:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE, "read request is not 5 bytes")
        address, count = struct.unpack_from(">HH", pdu, 1)
        if not 1 <= count <= MAX_READ_COUNT:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE, f"count {count}")
        if address + count > 0x10000:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_ADDRESS, "past register 65535")
        return ReadRequest(function, address, count)
    if function == WRITE_SINGLE:
        if len(pdu) != 5:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE, "write request is not 5 bytes")
        address, value = struct.unpack_from(">HH", pdu, 1)
        return WriteSingleRequest(address, value)
    if function == WRITE_MULTIPLE:
        if len(pdu) < 6:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE, "write request too short")
        address, count, byte_count = struct.unpack_from(">HHB", pdu, 1)
        if not 1 <= count <= MAX_WRITE_COUNT or byte_count != 2 * count:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE, f"count {count}/{byte_count}")
        if len(pdu) != 6 + byte_count:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_VALUE, "byte count disagrees")
        if address + count > 0x10000:
            raise ModbusError(ExceptionCode.ILLEGAL_DATA_ADDRESS, "past register 65535")
        return WriteMultipleRequest(address, struct.unpack_from(f">{count}H", pdu, 6))
    raise ModbusError(ExceptionCode.ILLEGAL_FUNCTION, f"function {function}")


def encode_read_response(function_code: int, values: tuple[int, ...] | list[int]) -> bytes:
    """The PDU answering FC3/FC4 with these register words."""
    return struct.pack(f">BB{len(values)}H", function_code, 2 * len(values), *values)


def encode_write_response(function_code: int, address: int, count_or_value: int) -> bytes:
    """The PDU answering FC6 (echo of address and value) or FC16 (address and count)."""
    return struct.pack(">BHH", function_code, address, count_or_value)


def encode_exception(function_code: int, code: int) -> bytes:
    """The PDU of an exception response."""
    return bytes([(function_code | 0x80) & 0xFF, code & 0xFF])


def encode_response(response: Response) -> bytes:
    """The PDU of any response."""
    if isinstance(response, ReadResponse):
        return encode_read_response(response.function_code, response.values)
    if isinstance(response, WriteResponse):
        return encode_write_response(
            response.function_code, response.address, response.count_or_value
        )
    return encode_exception(response.function_code, response.code)


def parse_response(pdu: bytes) -> Response | None:
    """Parse a response PDU; None when it is malformed."""
    if len(pdu) < 2:
        return None
    function = pdu[0]
    if function & 0x80:
        return ExceptionResponse(function & 0x7F, pdu[1]) if len(pdu) == 2 else None
    if function in (READ_HOLDING, READ_INPUT):
        byte_count = pdu[1]
        if byte_count % 2 or len(pdu) != 2 + byte_count:
            return None
        return ReadResponse(function, struct.unpack_from(f">{byte_count // 2}H", pdu, 2))
    if function in (WRITE_SINGLE, WRITE_MULTIPLE) and len(pdu) == 5:
        address, value = struct.unpack_from(">HH", pdu, 1)
        return WriteResponse(function, address, value)
    return None
