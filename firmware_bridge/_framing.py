"""Frames on the serial line: pure bytes in, `(consumed, frame | None)` out; no I/O, no asyncio.

On the wire a frame is `COBS(body) 0x00`. The body is

    offset  size  field
    0       1     protocol version (u8)
    1       2     sequence number (u16, big-endian)
    3       n     payload (msgpack, see `firmware_bridge._messages`), 0 <= n <= MAX_PAYLOAD
    3+n     2     CRC-16/CCITT-FALSE over bytes 0 .. 3+n-1 (big-endian)

The header layout is frozen across protocol versions, so a peer can always read the version
of a frame it cannot otherwise understand. docs/firmware-protocol.md is the full description.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge._cobs import cobs_decode, cobs_encode
from firmware_bridge._crc import crc16_ccitt_false
from firmware_bridge._errors import FrameError

DELIMITER = 0x00
HEADER_SIZE = 3
CRC_SIZE = 2
#: Largest body (header + payload + CRC) either side sends or accepts.
MAX_BODY = 256
MAX_PAYLOAD = MAX_BODY - HEADER_SIZE - CRC_SIZE
#: Largest frame on the wire: the COBS-encoded body (at most 2 bytes longer) and the delimiter.
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 1 + 1
MAX_SEQ = 0xFFFF


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: protocol version, sequence number and the (undecoded) payload bytes."""

    version: int
    seq: int
    payload: bytes


def encode_frame(frame: Frame) -> bytes:
    """The wire bytes of a frame, delimiter included; FrameError for fields out of range."""
    if not 0 <= frame.version <= 0xFF:
        raise FrameError(f"version {frame.version} does not fit one byte", consumed=0)
    if not 0 <= frame.seq <= MAX_SEQ:
        raise FrameError(f"sequence number {frame.seq} does not fit 16 bits", consumed=0)
    if len(frame.payload) > MAX_PAYLOAD:
        raise FrameError(
            f"payload of {len(frame.payload)} bytes exceeds the maximum of {MAX_PAYLOAD}",
            consumed=0,
        )
    body = bytes([frame.version]) + frame.seq.to_bytes(2, "big") + frame.payload
    body += crc16_ccitt_false(body).to_bytes(2, "big")
    return cobs_encode(body) + bytes([DELIMITER])


def decode_frame(buffer: bytes) -> tuple[int, Frame | None]:
    """Decode the first frame in `buffer`.

    Returns `(0, None)` when `buffer` holds no complete frame yet, `(consumed, None)` for an
    empty frame (back-to-back delimiters, which a sender may use to flush the line), and
    `(consumed, frame)` for a valid one. Raises FrameError (with `consumed`: the bytes the bad
    frame took, delimiter included) for anything else, so a reader can skip it and resync at
    the next delimiter. Never raises anything but FrameError.
    """
    end = buffer.find(DELIMITER)
    if end < 0:
        if len(buffer) >= MAX_ENCODED:
            raise FrameError(
                f"no delimiter within {MAX_ENCODED} bytes: discarding {len(buffer)} bytes",
                consumed=len(buffer),
            )
        return 0, None
    consumed = end + 1
    if end == 0:
        return consumed, None
    if end >= MAX_ENCODED:
        raise FrameError(f"frame of {end} bytes exceeds {MAX_ENCODED - 1}", consumed=consumed)
    try:
        body = cobs_decode(bytes(buffer[:end]))
    except ValueError as exc:
        raise FrameError(f"not a COBS block: {exc}", consumed=consumed) from exc
    if len(body) < HEADER_SIZE + CRC_SIZE:
        raise FrameError(f"frame of {len(body)} bytes is shorter than 5", consumed=consumed)
    if len(body) > MAX_BODY:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_BODY}", consumed=consumed)
    expected = int.from_bytes(body[-CRC_SIZE:], "big")
    actual = crc16_ccitt_false(body[:-CRC_SIZE])
    if expected != actual:
        raise FrameError(
            f"CRC mismatch (frame says {expected:#06x}, computed {actual:#06x})",
            consumed=consumed,
        )
    return consumed, Frame(
        version=body[0],
        seq=int.from_bytes(body[1:HEADER_SIZE], "big"),
        payload=body[HEADER_SIZE:-CRC_SIZE],
    )


class FrameReader:
    """Accumulates received bytes and yields the frames in them, counting bad ones.

    Pure (no I/O): the link feeds it from `data_received`, the simulator from its pty.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: Bad frames seen (CRC, COBS, size); each was skipped up to its delimiter.
        self.errors = 0
        self.last_error: FrameError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the complete valid frames found, in order."""
        self._buffer += data
        frames: list[Frame] = []
        while self._buffer:
            try:
                consumed, frame = decode_frame(bytes(self._buffer))
            except FrameError as exc:
                self.errors += 1
                self.last_error = exc
                consumed, frame = exc.consumed, None
            if consumed == 0:
                break
            del self._buffer[:consumed]
            if frame is not None:
                frames.append(frame)
        return frames

    def clear(self) -> None:
        """Forget a partial frame (after the port was reopened)."""
        self._buffer.clear()
