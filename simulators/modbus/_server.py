"""The simulators' Modbus servers: TCP on loopback, RTU on a pseudo-terminal.

`ModbusTcpServer` listens on 127.0.0.1 at the configured port and serves the units configured
on that port (one device, or several behind one gateway address). `ModbusRtuLine` opens one
pseudo-terminal per configured serial port path, links the path to the pty's slave side and
serves every unit configured on that line; the daemon opens the path as if it were
/dev/ttyUSB0.

Both answer synchronously from their protocol callbacks (a request is a pure function of the
device's state), so no task per connection exists to leak.

Not modelled: baud rate, parity and character timing (a pseudo-terminal carries bytes
instantly and ignores line settings), RTU broadcast (unit 0 is ignored), TCP keep-alive, the
Modbus TCP limit on simultaneous connections, and answer delays.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
import tty
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import structlog

from simulators.modbus._framing import (
    RtuFrame,
    TcpFrame,
    decode_tcp,
    drain_rtu,
    encode_rtu,
    encode_tcp,
)

if TYPE_CHECKING:
    from simulators._device import SimulatedDevice

_log = structlog.get_logger("simulators.modbus")

#: Units a single TCP device also answers to: 0 and 255 mean "the device itself" on TCP.
_TCP_SELF_UNITS = (0, 255)
#: Silence after which a partial RTU frame is final: at least 3.5 characters, and loose enough
#: for a loaded CI machine that delivers one write in two reads.
_MIN_RTU_SILENCE_S = 0.02


class _TcpConnection(asyncio.Protocol):
    def __init__(self, server: ModbusTcpServer) -> None:
        self._server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and not self._transport.is_closing():
            consumed, frame = decode_tcp(self._buffer)
            self._buffer = self._buffer[consumed:]
            if frame is None:
                if consumed == 0:
                    break
                continue
            reply = self._server.reply(frame)
            if reply is not None:
                self._transport.write(reply)


class ModbusTcpServer:
    """Modbus TCP on 127.0.0.1:`port`, serving `devices` by unit id.

    It listens while any of its devices answers; when none does (disconnect, power_fail) it
    closes every connection and stops listening, and listens again once one answers.
    """

    def __init__(self, *, port: int, devices: Mapping[int, SimulatedDevice]) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.devices = dict(devices)
        self.connections: set[asyncio.Transport] = set()
        self._server: asyncio.Server | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def __aenter__(self) -> Self:
        await self.sync()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def sync(self) -> None:
        """Listen or not, as the devices' faults say."""
        wanted = any(device.answering for device in self.devices.values())
        if wanted and self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _TcpConnection(self), self.host, self.port, reuse_address=True
            )
            _log.debug("tcp listening", port=self.port)
        elif not wanted and self._server is not None:
            await self._stop()
            _log.info("tcp stopped listening", port=self.port)

    async def _stop(self) -> None:
        server, self._server = self._server, None
        for transport in list(self.connections):
            transport.abort()
        self.connections.clear()
        if server is not None:
            server.close()
            await server.wait_closed()

    def reply(self, frame: TcpFrame) -> bytes | None:
        device = self.devices.get(frame.unit_id)
        if device is None and len(self.devices) == 1 and frame.unit_id in _TCP_SELF_UNITS:
            device = next(iter(self.devices.values()))
        if device is None:
            return None

        def framed(pdu: bytes) -> bytes:
            return encode_tcp(TcpFrame(frame.transaction_id, frame.unit_id, pdu))

        return device.reply(frame.pdu, framed)


class ModbusRtuLine:
    """One simulated RS-485 line: a pseudo-terminal linked at `path`, serving `devices`.

    The simulator keeps the slave side open too: the daemon closes and reopens the port when it
    reconnects, and without a second holder the master would read EIO in between.
    """

    def __init__(
        self, *, path: Path, devices: Mapping[int, SimulatedDevice], silence_s: float
    ) -> None:
        self.path = path
        self.devices = dict(devices)
        self.silence_s = max(silence_s, _MIN_RTU_SILENCE_S)
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""
        self._buffer = b""
        self._silence: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the line as a scope would show it, newest last: (monotonic time, "request" | "reply",
        #: unit id). A request is stamped at its first byte, a reply when written.
        self.traffic: collections.deque[tuple[float, str, int]] = collections.deque(maxlen=4096)
        self._frame_started = 0.0

    async def __aenter__(self) -> Self:
        if self.path.is_symlink():
            self.path.unlink()  # left by a simulator that did not exit cleanly
        elif self.path.exists():
            raise FileExistsError(f"{self.path} exists and is not a symlink: not replacing it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        master, slave = os.openpty()
        self._master, self._slave = master, slave
        try:
            tty.setraw(master)
            tty.setraw(slave)
            os.set_blocking(master, False)
            self.slave_name = os.ttyname(slave)
            self.path.symlink_to(self.slave_name)
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(master, self._on_readable)
        except BaseException:
            self._close()
            raise
        _log.debug("rtu line open", path=str(self.path), pty=self.slave_name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if self._loop is not None and self._master is not None:
            self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        with contextlib.suppress(OSError):
            if self.path.is_symlink() and str(self.path.readlink()) == self.slave_name:
                self.path.unlink()

    def _on_readable(self) -> None:
        assert self._master is not None and self._loop is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            _log.warning("rtu read failed", path=str(self.path), error=str(exc))
            return
        if not self._buffer:
            self._frame_started = time.monotonic()
        self._buffer += data
        frames, self._buffer = drain_rtu(self._buffer, silence=False)
        for frame in frames:
            self._serve(frame)
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if self._buffer:
            self._silence = self._loop.call_later(self.silence_s, self._on_silence)

    def _on_silence(self) -> None:
        self._silence = None
        frames, self._buffer = drain_rtu(self._buffer, silence=True)
        for frame in frames:
            self._serve(frame)

    def _serve(self, frame: RtuFrame) -> None:
        self.traffic.append((self._frame_started, "request", frame.unit_id))
        device = self.devices.get(frame.unit_id)
        if device is None:
            return  # another unit's frame, or a broadcast: a slave stays quiet

        def framed(pdu: bytes) -> bytes:
            return encode_rtu(RtuFrame(frame.unit_id, pdu))

        reply = device.reply(frame.pdu, framed)
        if reply is None or self._master is None:
            return
        try:
            os.write(self._master, reply)
            self.traffic.append((time.monotonic(), "reply", frame.unit_id))
        except OSError as exc:
            # A full pty buffer (nobody reading the port) loses the answer, as a line would.
            _log.debug("rtu write failed", path=str(self.path), error=str(exc))
