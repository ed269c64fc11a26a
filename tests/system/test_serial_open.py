"""Opening a serial port on a real pseudo-terminal: the port works, and an open the caller gave
up on (timed out, cancelled) does not leave the port the executor thread opens later open."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import serial

from drivers.serial_line import open_serial_port

pytestmark = pytest.mark.system


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """(master fd, slave path) of a fresh pseudo-terminal pair."""
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


class SlowOpener:
    """pyserial's open, held in its executor thread until `release`; records what it opened."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.opened: list[serial.SerialBase] = []

    def __call__(self, port: str, **settings: Any) -> serial.SerialBase:
        self.release.wait(10)
        instance = serial.serial_for_url(port, **settings)
        self.opened.append(instance)
        return instance

    async def closed_after_release(self) -> bool:
        """Let the held open finish; whether the port it opened is closed a moment later (the
        open's done-callback runs a few loop turns after the thread returns)."""
        self.release.set()
        for _ in range(200):
            if self.opened and not self.opened[0].is_open:
                return len(self.opened) == 1
            await asyncio.sleep(0.01)
        return False


class Closing(asyncio.Protocol):
    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


async def test_the_opened_port_carries_bytes(pty: tuple[int, str]) -> None:
    master, path = pty
    transport, protocol = await open_serial_port(Closing, path, baudrate=9600)
    assert isinstance(protocol, Closing)
    try:
        transport.write(b"hello\n")
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.run_in_executor(None, os.read, master, 64), 5)
        assert data == b"hello\n"
    finally:
        transport.close()
        await asyncio.wait_for(protocol.closed, 5)  # the transport closes the port in a thread


async def test_an_open_given_up_on_closes_the_port_the_thread_opens_later(
    pty: tuple[int, str],
) -> None:
    _, path = pty
    opener = SlowOpener()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await open_serial_port(asyncio.Protocol, path, opener=opener, baudrate=9600)
    assert await opener.closed_after_release()


async def test_a_cancelled_open_closes_the_port_too(pty: tuple[int, str]) -> None:
    _, path = pty
    opener = SlowOpener()
    task = asyncio.create_task(
        open_serial_port(asyncio.Protocol, path, opener=opener, baudrate=9600)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await opener.closed_after_release()
