"""What a serial line is opened with, and the framer type its exchanges use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: A pure framer: bytes received so far -> (bytes to consume, a complete frame or None).
#: `(0, None)` means "wait for more"; a positive count with None drops noise or an empty line.
Framer = Callable[[bytes], tuple[int, bytes | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class LineSettings:
    """One line: a device path (/dev/ttyUSB0, a pty) or `socket://host:port`, and its timing.

    Serial parameters are ignored by `socket://` (the adapter at the far end owns them).
    """

    port: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    #: Silence kept between the end of one exchange and the next request.
    gap_s: float = 0.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    #: Longest an open (or a TCP connect) may take.
    open_timeout_s: float = 5.0
