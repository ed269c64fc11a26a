"""One line-oriented serial link, shared by every addressed device on it.

The link owns what a half-duplex multi-drop line needs: one lock so one exchange is on the line
at a time, a silent gap between exchanges, a timeout per attempt, retries, resynchronisation
(stale input is drained before every request; frames that are not the awaited reply are
discarded; a damaged frame fails the attempt at once), and reopening a port that vanished (a
USB adapter unplugged, a TCP adapter restarted) with capped jittered backoff.

The same code opens /dev/ttyUSB0, pseudo-terminals and `socket://host:port` through
pyserial-asyncio-fast; the framer and the meaning of a frame come from the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import termios
import time
from collections.abc import Callable
from typing import TypeVar

import structlog
from serial import SerialException

from drivers._backoff import Backoff
from drivers._errors import ConnectFailed, DeviceTimeout, DriverError, NotConnected, ProtocolError
from drivers.serial_line._open import open_serial_port
from drivers.serial_line._settings import Framer, LineSettings

T = TypeVar("T")

#: What opening or using a port raises (SerialException is an OSError; termios.error is not).
_LINK_ERRORS = (OSError, SerialException, termios.error, ValueError)

_log = structlog.get_logger("drivers.serial_line")


class _Garbled(Exception):
    """A damaged frame arrived in place of the reply."""


class _Lost(Exception):
    """The port went away during the exchange."""


class _LineProtocol(asyncio.Protocol):
    """Collects received bytes; the link reads them under its lock."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.lost: BaseException | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.arrived.set()

    def eof_received(self) -> bool:
        return False  # a TCP peer that hangs up: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("closed by the other end")
        self.arrived.set()
        if not self.closed.done():
            self.closed.set_result(None)


class SerialLine:
    """A serial port (or serial-over-TCP) carrying request/reply exchanges, one at a time."""

    def __init__(self, *, settings: LineSettings, framer: Framer) -> None:
        self.key = settings.port
        self.settings = settings
        self._framer = framer
        self._lock = asyncio.Lock()
        self._transport: asyncio.BaseTransport | None = None
        self._protocol: _LineProtocol | None = None
        self._backoff = Backoff(
            initial_s=settings.reconnect_initial_s, max_s=settings.reconnect_max_s
        )
        self._next_attempt = 0.0
        self._last_end = 0.0
        #: Frames discarded as foreign or damaged, and stale bytes drained (for tests, status).
        self.discarded_frames = 0
        self.drained_bytes = 0

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.lost is None

    @property
    def reconnect_failures(self) -> int:
        """Failed opens (and losses of the port) since the line was last up."""
        return self._backoff.failures

    async def connect(self, *, device: str) -> None:
        """Open the port unless it is open; respects the backoff between attempts."""
        async with self._lock:
            await self._ensure_open(device)

    async def _ensure_open(self, device: str) -> None:
        if self.connected:
            return
        if self._protocol is not None:
            reason = str(self._protocol.lost) or type(self._protocol.lost).__name__
            await self._drop()
            self._broken(reason)
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            raise NotConnected(
                f"{self.key} is down, next attempt in {wait:.1f} s",
                retry_in_s=wait,
                device=device,
                operation="connect",
            )
        try:
            await self._open()
        except (*_LINK_ERRORS, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            self._broken(reason)
            raise ConnectFailed(
                f"cannot open {self.key}: {reason}", device=device, operation="connect"
            ) from exc
        if self._backoff.failures:
            _log.info("line up", line=self.key, after_failures=self._backoff.failures)
        self._backoff.reset()

    async def _open(self) -> None:
        s = self.settings
        protocol = _LineProtocol()
        async with asyncio.timeout(s.open_timeout_s):
            transport, _ = await open_serial_port(
                lambda: protocol,
                s.port,
                baudrate=s.baudrate,
                parity=s.parity,
                stopbits=s.stopbits,
                bytesize=s.bytesize,
            )
        self._transport, self._protocol = transport, protocol

    def _broken(self, reason: str) -> None:
        """Schedule the next open after a failure; log the first failure of an outage."""
        delay = self._backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        if self._backoff.failures == 1:
            _log.warning("line down", line=self.key, reason=reason, retry_in_s=round(delay, 2))
        else:
            _log.debug("line still down", line=self.key, reason=reason, retry_in_s=round(delay, 2))

    async def _drop(self) -> None:
        transport, protocol = self._transport, self._protocol
        self._transport = self._protocol = None
        if transport is None or protocol is None:
            return
        transport.close()
        # The serial transport closes the port in an executor; wait so nothing is left running.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await protocol.closed

    async def exchange(
        self,
        request: bytes,
        *,
        accept: Callable[[bytes], T | None],
        timeout_s: float,
        retries: int,
        device: str,
        operation: str,
    ) -> T:
        """Send `request` and return `accept(frame)` of the first frame it accepts.

        `accept` returns None for a frame that is not the reply (discarded, the wait goes on)
        and raises ValueError for a damaged one (the attempt fails). Each attempt waits the
        line's gap, drains stale input, writes, and waits up to `timeout_s`; after `retries`
        more attempts the last failure is raised: DeviceTimeout (silence, or the port lost),
        ProtocolError (damaged replies). NotConnected / ConnectFailed while the port is down.
        """
        async with self._lock:
            failure: DriverError | None = None
            for _ in range(retries + 1):
                await self._ensure_open(device)
                try:
                    return await self._attempt(request, accept, timeout_s)
                except _Lost as exc:
                    reason = str(exc) or type(exc).__name__
                    await self._drop()
                    self._broken(reason)
                    raise DeviceTimeout(
                        f"{self.key} lost: {reason}", device=device, operation=operation
                    ) from exc
                except _Garbled as exc:
                    failure = ProtocolError(
                        f"damaged reply: {exc}", device=device, operation=operation
                    )
                except TimeoutError:
                    failure = DeviceTimeout(
                        f"no answer within {timeout_s} s", device=device, operation=operation
                    )
                finally:
                    self._last_end = time.monotonic()
            assert failure is not None
            raise failure

    async def _attempt(
        self, request: bytes, accept: Callable[[bytes], T | None], timeout_s: float
    ) -> T:
        quiet = self._last_end + self.settings.gap_s - time.monotonic()
        if quiet > 0:
            await asyncio.sleep(quiet)
        protocol, transport = self._protocol, self._transport
        assert protocol is not None and isinstance(transport, asyncio.WriteTransport)
        if protocol.buffer:
            # A late reply to an abandoned exchange, or noise: never mistake it for ours.
            stale = bytes(protocol.buffer)
            protocol.buffer.clear()
            if stale.strip(b"\r\n"):
                self.drained_bytes += len(stale)
                _log.debug("drained stale input", line=self.key, bytes=len(stale))
        try:
            transport.write(request)
        except _LINK_ERRORS as exc:
            raise _Lost(str(exc)) from exc
        async with asyncio.timeout(timeout_s):
            while True:
                result = self._scan(protocol, accept)
                if result is not None:
                    return result
                if protocol.lost is not None:
                    raise _Lost(str(protocol.lost))
                protocol.arrived.clear()
                await protocol.arrived.wait()

    def _scan(self, protocol: _LineProtocol, accept: Callable[[bytes], T | None]) -> T | None:
        while True:
            consumed, frame = self._framer(bytes(protocol.buffer))
            if consumed == 0:
                return None
            del protocol.buffer[:consumed]
            if frame is None:
                continue
            try:
                result = accept(frame)
            except ValueError as exc:
                self.discarded_frames += 1
                raise _Garbled(str(exc)) from exc
            if result is not None:
                return result
            self.discarded_frames += 1

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


class SerialLines:
    """The serial lines of one daemon, one per port, shared by the devices on them."""

    def __init__(self) -> None:
        self._lines: dict[str, SerialLine] = {}

    def line_for(self, settings: LineSettings, *, framer: Framer) -> SerialLine:
        """The line on `settings.port`, created on first use with these settings (the config
        check makes every device on one port agree on them)."""
        line = self._lines.get(settings.port)
        if line is None:
            line = self._lines[settings.port] = SerialLine(settings=settings, framer=framer)
        return line

    async def __aenter__(self) -> SerialLines:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for line in self._lines.values():
            with contextlib.suppress(DriverError):
                await line.close()
