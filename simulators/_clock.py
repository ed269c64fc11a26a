"""Simulated time: a clock that runs `speed` simulated seconds per real second.

Everything the simulators model (thermal physics, scenario steps) is timed in simulated seconds
read from one `SimClock`; only the clock converts to real time. Not modelled: pausing, stepping
by hand, or changing the speed while running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class SimClock:
    """Simulated seconds since the clock was created, `speed` times faster than real time."""

    def __init__(self, *, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic):
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._speed = speed
        self._monotonic = monotonic
        self._start = monotonic()

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    def now(self) -> float:
        """Simulated seconds elapsed since the clock started."""
        return (self._monotonic() - self._start) * self._speed

    def real_seconds(self, sim_seconds: float) -> float:
        """How long `sim_seconds` of simulated time take in real time."""
        return max(sim_seconds, 0.0) / self._speed

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for `sim_seconds` of simulated time."""
        await asyncio.sleep(self.real_seconds(sim_seconds))

    async def sleep_until(self, sim_time: float) -> None:
        """Sleep until the simulated clock reads at least `sim_time`."""
        await asyncio.sleep(self.real_seconds(sim_time - self.now()))
        # The event loop may wake up to one clock tick early; the second sleep covers that.
        await asyncio.sleep(self.real_seconds(sim_time - self.now()))
