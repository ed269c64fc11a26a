"""Opening a serial port for asyncio without leaking it when the caller stops waiting.

`serial_asyncio_fast.create_serial_connection` opens the port in an executor thread. A caller
that is cancelled, or whose open timeout ends (a hung USB adapter), stops waiting, but the
thread still opens the port, and nothing ever closes it: one file descriptor per abandoned
open, for as long as the outage lasts. `open_serial_port` waits on the thread through a shield
and closes what the thread opens once nobody waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Callable
from functools import partial
from typing import Any

import serial
import serial_asyncio_fast

#: Opens the port (blocking, in an executor thread): pyserial's, or a test's.
Opener = Callable[..., serial.SerialBase]


async def open_serial_port(
    protocol_factory: Callable[[], asyncio.Protocol],
    port: str,
    *,
    opener: Opener = serial.serial_for_url,
    **settings: Any,
) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """`create_serial_connection(loop, protocol_factory, port, **settings)`, closing the port
    when the open is abandoned (cancelled or timed out) before it returns."""
    loop = asyncio.get_running_loop()
    if urllib.parse.urlparse(port).scheme == "socket":
        # A TCP serial bridge: no blocking open to abandon.
        return await serial_asyncio_fast.create_serial_connection(
            loop, protocol_factory, port, **settings
        )
    opening = loop.run_in_executor(None, partial(opener, port, **settings))
    try:
        instance = await asyncio.shield(opening)
    except BaseException:
        opening.add_done_callback(_close_unclaimed)
        raise
    try:
        transport, protocol = await serial_asyncio_fast.connection_for_serial(
            loop, protocol_factory, instance
        )
    except BaseException:
        instance.close()
        raise
    return transport, protocol


def _close_unclaimed(opening: asyncio.Future[serial.SerialBase]) -> None:
    """The port an abandoned open got, closed (the open may also have failed: nothing to do)."""
    if opening.cancelled() or opening.exception() is not None:
        return
    with contextlib.suppress(Exception):
        opening.result().close()
