"""QoS 0 publishes of one event-loop turn, written to the broker as one chunk.

Every poller publishes telemetry at QoS 0, and paho writes each message with its own `send()`
(a syscall that also runs the broker's side of the loopback) and calls `on_publish` per message.
`Qos0Batch` encodes the MQTT 5 PUBLISH packets itself (no packet id, no properties), appends
them to one buffer, and hands the buffer to paho's write queue once per loop turn: paho keeps
writing in call order, so messages published before or after (QoS 1 state, the status) keep
their order as long as the owner flushes before it publishes anything else.

Uses paho's private `_packet_queue` (paho-mqtt 2.2): the one place that queues bytes behind
the packets paho has not written yet; the command byte 0 makes paho treat the chunk as opaque.
When paho has nothing queued, the chunk goes straight to its socket (what paho would do next).
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Callable

from paho.mqtt.client import Client as PahoClient

#: The chunk's "command" for paho: neither PUBLISH nor DISCONNECT, so no callbacks are run.
_OPAQUE = 0
_PUBLISH = 0x30
#: PUBLISH packets are at most 268435455 bytes after the fixed header (MQTT 5, 2.1.4).
_MAX_REMAINING = 268_435_455


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        length, digit = length >> 7, length & 0x7F
        out.append(digit | 0x80 if length else digit)
        if not length:
            return bytes(out)


class Qos0Batch:
    """Collects QoS 0 PUBLISH packets for one paho client; `flush` queues them as one write."""

    def __init__(self, *, paho: PahoClient, on_dropped: Callable[[int], None]) -> None:
        self._paho = paho
        self._on_dropped = on_dropped
        self._loop = asyncio.get_running_loop()
        #: topic -> its PUBLISH variable header (topic length, topic, empty properties)
        self._headers: dict[str, bytes] = {}
        self._buffer = bytearray()
        self._count = 0
        self._closed = False

    def add(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Queue one message for this loop turn's write; raises ValueError for a bad topic."""
        if self._closed:
            self._on_dropped(1)
            return
        header = self._headers.get(topic)
        if header is None:
            encoded = topic.encode()
            if not encoded or b"+" in encoded or b"#" in encoded or len(encoded) > 0xFFFF:
                raise ValueError(f"cannot publish to topic {topic!r}")
            header = self._headers[topic] = struct.pack(">H", len(encoded)) + encoded + b"\x00"
        remaining = len(header) + len(payload)
        if remaining > _MAX_REMAINING:
            raise ValueError(f"payload of {len(payload)} bytes is too large for MQTT")
        buffer = self._buffer
        if not buffer:
            self._loop.call_soon(self.flush)
        buffer.append(_PUBLISH | retain)
        if remaining < 0x4000:  # one or two bytes: every telemetry message
            if remaining < 0x80:
                buffer.append(remaining)
            else:
                buffer.append(remaining & 0x7F | 0x80)
                buffer.append(remaining >> 7)
        else:
            buffer += _remaining_length(remaining)
        buffer += header
        buffer += payload
        self._count += 1

    def flush(self) -> None:
        """Hand what was collected to paho (idempotent; a closed socket drops it, counted)."""
        if not self._buffer:
            return
        chunk, count = bytes(self._buffer), self._count
        self._buffer.clear()
        self._count = 0
        paho = self._paho
        sock = paho._sock
        if self._closed or sock is None:
            self._on_dropped(count)
            return
        if not paho._out_packet:
            # Nothing of paho's waits: write now, one syscall, instead of registering for
            # writability and writing on a later loop turn (three more syscalls per chunk).
            try:
                sent = sock.send(chunk)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                sent = 0
            except OSError:
                sent = 0  # paho meets the same error on its own write and reconnects
            chunk = chunk[sent:]
            if not chunk:
                return
        paho._packet_queue(_OPAQUE, chunk, 0, 0)

    def close(self) -> None:
        """The connection is gone: what is still collected is dropped (counted), not sent."""
        self._closed = True
        if self._count:
            self._on_dropped(self._count)
        self._buffer.clear()
        self._count = 0
