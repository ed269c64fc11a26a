"""The far end of a serial line, in the test's process: a pseudo-terminal or a TCP server.

The peer frames what it hears with the LN2 framer (`drivers.ln2.next_line`), logs every line it
hears and every frame it sends with the time it did so (monotonic), and answers through a
`respond` function. Tests check the order and spacing of what crossed the line as the far end
saw it, not how long the test took. With `noise` the peer garbles both what it hears and what it
sends (`simulators.ln2.garble`), as a noisy line would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from drivers.ln2 import next_line
from simulators.ln2 import garble

#: A request line (without its terminator) -> the frames to send back; ValueError: unreadable.
Respond = Callable[[bytes], Sequence[bytes]]


@dataclass(frozen=True, slots=True)
class Event:
    t: float
    direction: Literal["rx", "tx"]
    line: bytes


class Peer:
    """What both transports share: framing, the log, delayed replies and noise."""

    def __init__(
        self, respond: Respond, *, reply_after_s: float = 0.0, noise: float = 0.0, seed: float = 1
    ) -> None:
        self.respond = respond
        self.reply_after_s = reply_after_s
        self.noise = noise
        self._rng = random.Random(seed)
        self._buffer = b""
        self.log: list[Event] = []
        self.unreadable = 0
        self._pending: list[asyncio.TimerHandle] = []

    @property
    def port(self) -> str:
        raise NotImplementedError

    def heard(self) -> list[bytes]:
        return [e.line for e in self.log if e.direction == "rx"]

    def _feed(self, data: bytes) -> None:
        self._buffer += garble(data, rate=self.noise, rng=self._rng)
        while True:
            consumed, line = next_line(self._buffer)
            if consumed == 0:
                return
            self._buffer = self._buffer[consumed:]
            if line is None:
                continue
            self.log.append(Event(time.monotonic(), "rx", line))
            try:
                replies = self.respond(line)
            except ValueError:
                self.unreadable += 1  # damaged on the way: a device ignores what it cannot read
                continue
            for reply in replies:
                if self.reply_after_s > 0:
                    loop = asyncio.get_running_loop()
                    self._pending.append(loop.call_later(self.reply_after_s, self._emit, reply))
                else:
                    self._emit(reply)

    def _emit(self, frame: bytes) -> None:
        self.log.append(Event(time.monotonic(), "tx", frame.rstrip(b"\r\n")))
        self._write(garble(frame, rate=self.noise, rng=self._rng))

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _cancel_pending(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()


class PtyPeer(Peer):
    """A pseudo-terminal whose slave is linked at `path`: the link opens it as a serial port."""

    def __init__(self, path: Path, respond: Respond, **options: float) -> None:
        super().__init__(respond, **options)
        self.path = path
        self._master: int | None = None
        self._slave: int | None = None

    @property
    def port(self) -> str:
        return str(self.path)

    async def __aenter__(self) -> Self:
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
        master, slave = os.openpty()
        self._master, self._slave = master, slave
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.symlink_to(os.ttyname(slave))
        asyncio.get_running_loop().add_reader(master, self._readable)

    def unplug(self) -> None:
        """Close the pty and remove the path, as pulling a USB adapter does."""
        self._cancel_pending()
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _readable(self) -> None:
        assert self._master is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self._feed(os.read(self._master, 4096))

    def _write(self, data: bytes) -> None:
        if self._master is not None:
            os.write(self._master, data)


class TcpPeer(Peer):
    """A serial-to-Ethernet adapter on 127.0.0.1: the link opens `socket://127.0.0.1:PORT`."""

    def __init__(self, respond: Respond, **options: float) -> None:
        super().__init__(respond, **options)
        self.tcp_port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Transport] = set()

    @property
    def port(self) -> str:
        return f"socket://127.0.0.1:{self.tcp_port}"

    async def __aenter__(self) -> Self:
        await self.replug()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.unplug()

    async def replug(self) -> None:
        peer = self

        class Connection(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport
                peer._connections.add(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                peer._connections.discard(self.transport)

            def data_received(self, data: bytes) -> None:
                peer._feed(data)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            Connection, "127.0.0.1", self.tcp_port, reuse_address=True
        )
        self.tcp_port = self._server.sockets[0].getsockname()[1]

    async def unplug(self) -> None:
        """Drop every connection and stop listening, as an adapter that lost power."""
        self._cancel_pending()
        for transport in list(self._connections):
            transport.abort()
        self._connections.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _write(self, data: bytes) -> None:
        for transport in self._connections:
            if not transport.is_closing():
                transport.write(data)
