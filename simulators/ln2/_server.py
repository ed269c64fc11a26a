"""The simulated LN2 lines: a pseudo-terminal (an RS-485 line) and a TCP port (`socket://`).

`Ln2PtyLine` links a pty's slave side at the configured path and serves every tank configured
on that path; the daemon opens the path as if it were /dev/ttyUSB0. `unplug()` closes the pty
and removes the path, as pulling a USB adapter does; `replug()` brings a fresh pty back at the
same path. `Ln2TcpServer` listens on 127.0.0.1 at the port of `socket://host:port` and serves
the tanks configured there over any connection, as a serial-to-Ethernet adapter does;
`unplug()` drops its connections and stops listening.

Requests are answered synchronously from the protocol callbacks (an answer is a pure function
of the tank's state), so no task per connection exists to leak. A tank with the `noise` fault
hears the requests garbled and garbles its replies. Not modelled: baud rate and character
timing, answer delays, two masters on one line, collisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import structlog

from drivers.ln2 import GarbledFrame, decode_request, next_line

if TYPE_CHECKING:
    from simulators.ln2._tank import SimulatedTank

_log = structlog.get_logger("simulators.ln2")


class _Dispatcher:
    """Splits the bytes on a line into request lines and answers each tank's own requests.

    Every tank listens to the whole line through its own receiver (`SimulatedTank.hear`), so
    noise at one tank garbles what that tank hears and not what the others hear.
    """

    def __init__(self, tanks: Mapping[int, SimulatedTank]) -> None:
        self._tanks = tanks
        self._buffers = dict.fromkeys(tanks, b"")

    def feed(self, data: bytes, send: Callable[[bytes], None]) -> None:
        for address, tank in self._tanks.items():
            buffer = self._buffers[address] + tank.hear(data)
            while True:
                consumed, line = next_line(buffer)
                if consumed == 0:
                    break
                buffer = buffer[consumed:]
                if line is None:
                    continue
                try:
                    request = decode_request(line)
                except GarbledFrame:
                    tank.unreadable_requests += 1
                    continue  # a controller ignores what it cannot read
                if request.address != address:
                    continue  # another controller's request
                reply = tank.reply(request)
                if reply is not None:
                    send(reply)
            self._buffers[address] = buffer


class Ln2PtyLine:
    """One simulated RS-485 line on a pseudo-terminal linked at `path`."""

    def __init__(self, *, path: Path, tanks: Mapping[int, SimulatedTank]) -> None:
        self.path = path
        self.tanks = dict(tanks)
        self._dispatcher = _Dispatcher(self.tanks)
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    async def __aenter__(self) -> Self:
        if self.path.is_symlink():
            self.path.unlink()  # left by a simulator that did not exit cleanly
        elif self.path.exists():
            raise FileExistsError(f"{self.path} exists and is not a symlink: not replacing it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self.replug()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unplug()

    def replug(self) -> None:
        """Open a fresh pty and link it at `path` (no-op when plugged)."""
        if self._master is not None:
            return
        master, slave = os.openpty()
        self._master, self._slave = master, slave
        try:
            tty.setraw(master)
            tty.setraw(slave)
            os.set_blocking(master, False)
            self.slave_name = os.ttyname(slave)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.path.symlink_to(self.slave_name)
            assert self._loop is not None
            self._loop.add_reader(master, self._on_readable)
        except BaseException:
            self.unplug()
            raise
        _log.debug("ln2 line plugged", path=str(self.path), pty=self.slave_name)

    def unplug(self) -> None:
        """Close the pty and remove the path: the port vanishes under the daemon."""
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
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            _log.debug("ln2 line read failed", path=str(self.path), error=str(exc))
            return
        self._dispatcher.feed(data, self._send)

    def _send(self, data: bytes) -> None:
        if self._master is None:
            return
        try:
            os.write(self._master, data)
        except OSError as exc:
            # A full pty buffer (nobody reading the port) loses the answer, as a line would.
            _log.debug("ln2 line write failed", path=str(self.path), error=str(exc))


class _TcpConnection(asyncio.Protocol):
    def __init__(self, server: Ln2TcpServer) -> None:
        self._server = server
        self._dispatcher = _Dispatcher(server.tanks)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        self._dispatcher.feed(data, self._send)

    def _send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


class Ln2TcpServer:
    """A serial-to-Ethernet adapter on 127.0.0.1:`port` with the tanks of its line behind it."""

    def __init__(self, *, port: int, tanks: Mapping[int, SimulatedTank]) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.tanks = dict(tanks)
        self.connections: set[asyncio.Transport] = set()
        self._server: asyncio.Server | None = None

    @property
    def plugged(self) -> bool:
        return self._server is not None

    async def __aenter__(self) -> Self:
        await self.areplug()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aunplug()

    async def areplug(self) -> None:
        """Listen (no-op when listening)."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _TcpConnection(self), self.host, self.port, reuse_address=True
            )

    async def aunplug(self) -> None:
        """Drop every connection and stop listening."""
        server, self._server = self._server, None
        for transport in list(self.connections):
            transport.abort()
        self.connections.clear()
        if server is not None:
            server.close()
            await server.wait_closed()
