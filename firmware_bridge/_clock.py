"""The clock the link's heartbeat supervision reads and waits on.

The supervision arms one deadline per valid frame (last frame + heartbeat timeout) and waits
for exactly that moment, so the clock it waits on is injectable: the daemon uses the monotonic
clock, a test can use a clock it moves by hand and check the deadline to the microsecond
without timing anything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class LinkClock(Protocol):
    """Seconds on a monotonic scale, and a way to wait until one of them."""

    def now(self) -> float:
        """The current time in seconds (only differences are meaningful)."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return at `when` (a caller re-checks `now()`: a timer may fire a tick early)."""
        ...


class MonotonicClock:
    """`time.monotonic`, waited on with the event loop's timers (the loop's own clock)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.monotonic()))
