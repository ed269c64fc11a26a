"""Capped, jittered exponential backoff for reconnect attempts."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double per consecutive failure up to a cap, each drawn with jitter.

    The jitter ("equal jitter": half fixed, half random) keeps many devices that failed together
    — a switch reboot, a broker restart — from retrying in lockstep.
    """

    def __init__(self, *, initial_s: float, max_s: float, rng: random.Random | None = None):
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self._initial_s = initial_s
        self._max_s = max_s
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        # The exponent stops growing once past the cap (2.0**1024 would overflow a float).
        ceiling = min(self._max_s, self._initial_s * 2.0 ** min(self.failures, 64))
        self.failures += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Forget past failures (call after a success)."""
        self.failures = 0
