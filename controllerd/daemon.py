"""`controllerd run`: the daemon's lifetime — start the supervisor, stop cleanly on a signal.

A signal stops the daemon within `STOP_TIMEOUT_S` whatever it is doing: during start-up (a
device still connecting) the start is abandoned; a clean stop that overruns is cut short, and
a loop too stuck even for that is ended by a last-resort timer. Nothing durable depends on a
clean stop (movements, jobs and alarms are in SQLite with full sync, and the broker publishes
the `offline` last will when the connection drops), so cutting it short loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from typing import Any

import structlog

from controllerd import __version__
from controllerd.config import Config
from controllerd.supervisor import Supervisor

_log = structlog.get_logger("controllerd")

#: SIGTERM must stop the daemon within 5 s (systemd's and the issue's bar); leave margin.
STOP_TIMEOUT_S = 4.0
#: After the stop timeout, how long the loop gets to unwind before the process is ended.
HARD_EXIT_GRACE_S = 0.7
#: Exit status when the stop overran and the process was ended by the last-resort timer.
EXIT_STOP_OVERRAN = 70


async def run_daemon(config: Config) -> int:
    """Run until SIGTERM or SIGINT; the exit status (0 after a clean stop)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _log.info(
        "starting",
        version=__version__,
        site=config.controller.site,
        controller=config.controller.id,
        devices=len(config.devices),
    )
    supervisor = Supervisor(config=config)
    running = asyncio.Event()

    async def serve() -> None:
        async with supervisor:
            running.set()
            await stop.wait()

    serving = asyncio.create_task(serve(), name="supervisor")
    stopping = asyncio.create_task(stop.wait(), name="signal")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            stopping.cancel()
            serving.result()  # start-up failed: raise what it raised
            return 0
        _log.info("stopping on signal", started=running.is_set())
        if not running.is_set():
            serving.cancel()  # abandon the start: the supervisor closes what it opened
        return await _bounded_stop(serving)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _bounded_stop(serving: asyncio.Task[None]) -> int:
    """Wait for the supervisor to close, at most `STOP_TIMEOUT_S`.

    The last-resort timer stays armed until the process exits: it also bounds what
    `asyncio.run` does after this returns (cancelling leftovers, joining executor threads).
    """
    last_resort = threading.Timer(STOP_TIMEOUT_S + HARD_EXIT_GRACE_S, _hard_exit)
    last_resort.daemon = True
    last_resort.start()
    done, _ = await asyncio.wait({serving}, timeout=STOP_TIMEOUT_S)
    if not done:
        _log.error(
            "stop overran, cutting it short",
            timeout_s=STOP_TIMEOUT_S,
            waiting_in=_where_tasks_wait(),
        )
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        return 1
    with contextlib.suppress(asyncio.CancelledError):
        serving.result()
    return 0


def _where_tasks_wait() -> dict[str, str]:
    """Each pending task's innermost awaiting frame, for the log of an overrun stop."""
    where = {}
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        awaitable: Any = task.get_coro()
        frame = None
        # Follow the chain of awaits down to the coroutine that is actually waiting.
        while awaitable is not None:
            frame = (
                getattr(awaitable, "cr_frame", None)
                or getattr(awaitable, "gi_frame", None)
                or frame
            )
            awaitable = getattr(awaitable, "cr_await", None) or getattr(
                awaitable, "gi_yieldfrom", None
            )
        where[task.get_name()] = (
            f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
            if frame is not None
            else "?"
        )
    return where


def _hard_exit() -> None:
    # Runs on the timer's thread: the event loop is stuck, so logging through it may be too.
    os.write(2, b"controllerd: stop overran its bound; exiting without cleanup\n")
    os._exit(EXIT_STOP_OVERRAN)
