"""Stopping tasks reliably: cancel, and cancel again until they have really ended.

On Python 3.11 a cancel that arrives just as an awaited future completes can be lost inside
`asyncio.wait_for` (CPython gh-86296, fixed in 3.12): the task carries on as if nothing had
happened, and whoever awaits it after a single `cancel()` waits for ever. Every owner of a
background task stops it through `cancel_and_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

#: How long to wait for a cancelled task before cancelling it again.
RETRY_S = 0.5


async def cancel_and_wait(*tasks: asyncio.Task[Any], retry_s: float = RETRY_S) -> None:
    """Cancel `tasks` and return once every one has ended (their outcomes are consumed)."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=retry_s)
    for task in tasks:
        if not task.cancelled():
            with contextlib.suppress(BaseException):
                task.exception()
