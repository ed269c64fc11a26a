"""`controllerd run`: the daemon's lifetime — start the supervisor, stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import signal

import structlog

from controllerd import __version__
from controllerd.config import Config
from controllerd.supervisor import Supervisor

_log = structlog.get_logger("controllerd")

#: SIGTERM must stop the daemon within 5 s (systemd's and the issue's bar); leave margin.
STOP_TIMEOUT_S = 4.0


async def run_daemon(config: Config) -> None:
    """Run until SIGTERM or SIGINT."""
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
    try:
        async with supervisor:
            await stop.wait()
            _log.info("stopping on signal")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
