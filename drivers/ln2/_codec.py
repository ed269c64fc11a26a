"""Frames of the LN2 controller protocol: pure bytes in, values out, no I/O.

A frame is one line of printable ASCII: `BODY*CCCC` and CR LF, where CCCC is the CRC-16/CCITT
(initial value 0xFFFF) of BODY in four upper-case hex digits. Requests read `AAA CMD[ ARG…]`,
replies `AAA CMD PAYLOAD`: the reply repeats the address and the mnemonic, so a reply meant for
another device, or a late reply to an earlier request, is told apart from the one awaited.

`next_line` is the framer (`(consumed, line | None)`); `decode_reply` and `parse_payload` turn
a line into a value or raise a `FrameError`: a damaged line never becomes a number.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.ln2._commands import BY_WIRE, ERROR_CODES, WireCommand

TERMINATOR = b"\r\n"
#: A line longer than this without a terminator is noise: it is dropped.
MAX_LINE = 128
MIN_ADDRESS, MAX_ADDRESS = 1, 999

_NUMBER = re.compile(r"^-?\d{1,6}(\.\d{1,4})?$")
_FLAGS = re.compile(r"^[0-9A-F]{4}$")
_TEXT = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,31}$")
_ADDRESS = re.compile(r"^\d{3}$")
_CRC = re.compile(rb"^[0-9A-F]{4}$")
#: Payload of a reading from a sensor with an open circuit (a `number` reply).
OPEN_CIRCUIT = "OPEN"


class FrameError(ValueError):
    """A line that is not a valid frame, or not a valid answer to what was asked."""


class GarbledFrame(FrameError):
    """Damaged on the line: bad checksum, bad characters, bad structure, impossible value."""


class ForeignFrame(FrameError):
    """An intact frame that is not the awaited reply (another address or another command)."""


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request (what a controller, or the simulator, receives)."""

    address: int
    wire: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded reply: a payload, or an error code."""

    address: int
    wire: str
    payload: str

    @property
    def error_code(self) -> int | None:
        """The code of an `ERR n` reply, else None."""
        if not self.payload.startswith("ERR "):
            return None
        return int(self.payload[4:])

    @property
    def error_text(self) -> str:
        code = self.error_code
        return f"error {code} ({ERROR_CODES.get(code or 0, 'unknown error')})"


def checksum(body: bytes) -> str:
    """The four hex digits that follow `*`."""
    return f"{binascii.crc_hqx(body, 0xFFFF):04X}"


def frame(body: str) -> bytes:
    """`BODY*CCCC\\r\\n` (ValueError for a body that is not printable ASCII or holds `*`)."""
    raw = body.encode("ascii")
    if "*" in body or not all(0x20 <= b < 0x7F for b in raw):
        raise ValueError(f"not a frame body: {body!r}")
    return raw + b"*" + checksum(raw).encode() + TERMINATOR


def next_line(buffer: bytes) -> tuple[int, bytes | None]:
    """Framer: how many bytes to consume and the line found (without its terminator).

    CR and LF both end a line; empty lines are consumed without a result, and so is a run of
    more than `MAX_LINE` bytes with no terminator. `(0, None)` means: wait for more bytes.
    """
    ends = [i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0]
    if not ends:
        return (len(buffer), None) if len(buffer) > MAX_LINE else (0, None)
    end = min(ends)
    line = buffer[:end]
    consumed = end + 2 if buffer[end : end + 2] == TERMINATOR else end + 1
    return consumed, (line or None)


def unframe(line: bytes) -> str:
    """The body of a frame; GarbledFrame unless the checksum and characters are right."""
    body, star, crc = line.rpartition(b"*")
    if not star or not _CRC.match(crc):
        raise GarbledFrame(f"no checksum in {line[:40]!r}")
    if not all(0x20 <= b < 0x7F for b in body):
        raise GarbledFrame(f"non-printable bytes in {line[:40]!r}")
    if checksum(body) != crc.decode():
        raise GarbledFrame(f"checksum mismatch in {line[:40]!r}")
    return body.decode("ascii")


def _address(text: str) -> int:
    if not _ADDRESS.match(text) or not MIN_ADDRESS <= int(text) <= MAX_ADDRESS:
        raise GarbledFrame(f"bad address {text!r}")
    return int(text)


def encode_request(address: int, command: WireCommand, args: Sequence[float] = ()) -> bytes:
    """The request frame for a command (ValueError for a wrong address or argument count)."""
    if not MIN_ADDRESS <= address <= MAX_ADDRESS:
        raise ValueError(f"address {address} is outside {MIN_ADDRESS}..{MAX_ADDRESS}")
    if len(args) != command.args:
        raise ValueError(f"{command.wire} takes {command.args} arguments, got {len(args)}")
    text = " ".join([f"{address:03d}", command.wire, *(f"{a:.1f}" for a in args)])
    return frame(text)


def decode_request(line: bytes) -> Request:
    """A request line as a controller reads it (GarbledFrame when damaged)."""
    parts = unframe(line).split(" ")
    if len(parts) < 2:
        raise GarbledFrame(f"no command in {line[:40]!r}")
    return Request(address=_address(parts[0]), wire=parts[1], args=tuple(parts[2:]))


def encode_reply(address: int, wire: str, payload: str) -> bytes:
    """A reply frame (what a controller, or the simulator, sends)."""
    return frame(f"{address:03d} {wire} {payload}")


def encode_error(address: int, wire: str, code: int) -> bytes:
    """An `ERR n` reply frame."""
    return encode_reply(address, wire, f"ERR {code}")


def decode_reply(line: bytes, *, address: int, command: WireCommand) -> Reply:
    """The reply to `command` sent to `address`.

    GarbledFrame for a damaged line, ForeignFrame for an intact frame from another address or
    for another command (left over, or an echo of a request on a 2-wire line).
    """
    parts = unframe(line).split(" ", 2)
    if len(parts) < 3:
        raise GarbledFrame(f"no payload in {line[:40]!r}")
    reply = Reply(address=_address(parts[0]), wire=parts[1], payload=parts[2])
    if reply.address != address or reply.wire != command.wire:
        raise ForeignFrame(
            f"{parts[0]} {parts[1]} is not the reply to {address:03d} {command.wire}"
        )
    if reply.payload.startswith("ERR") and not re.fullmatch(r"ERR \d{1,3}", reply.payload):
        raise GarbledFrame(f"bad error reply {reply.payload!r}")
    return reply


def parse_number(payload: str) -> float | None:
    """A decimal; None for `OPEN` (a sensor with an open circuit)."""
    if payload == OPEN_CIRCUIT:
        return None
    if not _NUMBER.match(payload):
        raise GarbledFrame(f"not a number: {payload!r}")
    return float(payload)


def parse_flag(payload: str) -> bool:
    if payload not in ("0", "1"):
        raise GarbledFrame(f"not a flag: {payload!r}")
    return payload == "1"


def parse_flags(payload: str) -> int:
    if not _FLAGS.match(payload):
        raise GarbledFrame(f"not a bit field: {payload!r}")
    return int(payload, 16)


def parse_text(payload: str) -> str:
    if not _TEXT.match(payload):
        raise GarbledFrame(f"not text: {payload!r}")
    return payload


def parse_levels(payload: str) -> tuple[float, float]:
    parts = payload.split(" ")
    if len(parts) != 2 or not all(_NUMBER.match(p) for p in parts):
        raise GarbledFrame(f"not two levels: {payload!r}")
    start, stop = float(parts[0]), float(parts[1])
    if not 0 <= start < stop <= 100:
        raise GarbledFrame(f"impossible fill levels {payload!r}")
    return start, stop


def parse_ok(payload: str) -> None:
    if payload != "OK":
        raise GarbledFrame(f"not OK: {payload!r}")


def command_for(wire: str) -> WireCommand | None:
    """The table row of a mnemonic, or None when the table has none."""
    return BY_WIRE.get(wire)
