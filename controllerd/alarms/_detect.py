"""Condition detectors: a value stream in, a debounced condition (with its deadline) out.

Pure and clock-agnostic: the caller passes `now` (monotonic seconds). A detector first decides
the raw condition (limit with deadband, rate over a window, discrete value), then applies the
on-delay and off-delay; `deadline()` says when the debounced condition may change without a new
value, so the engine can wake exactly then instead of waiting for the next poll.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Container, Iterable

from controllerd.alarms._rules import DiscreteRule, LimitRule, RateRule


class _Debounce:
    """On/off delays around a raw condition."""

    def __init__(self, *, on_delay_s: float, off_delay_s: float) -> None:
        self._on_delay = on_delay_s
        self._off_delay = off_delay_s
        self.raw = False
        self.active = False
        self._raw_since = 0.0

    def feed(self, raw: bool, now: float) -> None:
        if raw != self.raw:
            self.raw = raw
            self._raw_since = now
        if raw != self.active:
            self.tick(now)

    def tick(self, now: float) -> None:
        if self.raw != self.active:
            delay = self._on_delay if self.raw else self._off_delay
            # The same sum `deadline()` gives: woken at the deadline, the delay is over (the
            # difference `now - since` can round below `delay` where the sum equals `now`).
            if now >= self._raw_since + delay:
                self.active = self.raw

    def deadline(self) -> float | None:
        if self.raw == self.active:
            return None
        return self._raw_since + (self._on_delay if self.raw else self._off_delay)

    def reset(self) -> None:
        """Forget the condition (the value is gone: comm loss, sensor fault)."""
        self.raw = self.active = False


class Detector:
    """Base: `feed(value, now)`, `tick(now)`, `active`, `deadline()`, `limit`."""

    def __init__(self, *, on_delay_s: float, off_delay_s: float, limit: float | None) -> None:
        self._debounce = _Debounce(on_delay_s=on_delay_s, off_delay_s=off_delay_s)
        self.limit = limit

    @property
    def active(self) -> bool:
        return self._debounce.active

    @property
    def idle(self) -> bool:
        """Neither the raw nor the debounced condition holds: no delay running, no deadline."""
        debounce = self._debounce
        return not debounce.raw and not debounce.active

    def feed(self, value: float, now: float) -> None:
        self._debounce.feed(self._raw(value, now), now)

    def feed_idle(self, value: float, now: float) -> bool:
        """`feed` for an idle detector (the caller knows it is); whether it is still idle.

        The same as `feed` then `idle`, cheaper where a value can be seen to change nothing:
        a healthy device's every poll feeds every detector.
        """
        self.feed(value, now)
        return self.idle

    def tick(self, now: float) -> None:
        self._debounce.tick(now)

    def deadline(self) -> float | None:
        return self._debounce.deadline()

    def reset(self) -> None:
        self._debounce.reset()

    def _raw(self, value: float, now: float) -> bool:
        raise NotImplementedError


class LimitDetector(Detector):
    """Above a high limit (or below a low one); clears only past the deadband."""

    def __init__(self, rule: LimitRule, *, high: bool) -> None:
        super().__init__(on_delay_s=rule.on_delay_s, off_delay_s=rule.off_delay_s, limit=rule.limit)
        self.high = high
        self._deadband = rule.deadband

    def _raw(self, value: float, now: float) -> bool:
        assert self.limit is not None
        band = self._deadband if self._debounce.raw else 0.0
        if self.high:
            return value > self.limit - band
        return value < self.limit + band

    def feed_idle(self, value: float, now: float) -> bool:
        # Idle, no deadband applies: a value on the safe side of the limit changes nothing.
        assert self.limit is not None
        if value > self.limit if self.high else value < self.limit:
            return super().feed_idle(value, now)
        return True


class RateDetector(Detector):
    """Faster than `limit_per_min` over `window_s` (needs half a window of history)."""

    def __init__(self, rule: RateRule) -> None:
        super().__init__(
            on_delay_s=rule.on_delay_s, off_delay_s=rule.off_delay_s, limit=rule.limit_per_min
        )
        # The rule's fields as plain attributes: read every poll, cheaper than the model's.
        self._window_s = rule.window_s
        self._limit_per_min = rule.limit_per_min
        self._direction = rule.direction
        self._samples: deque[tuple[float, float]] = deque()
        self.rate_per_min: float | None = None

    def _raw(self, value: float, now: float) -> bool:
        samples = self._samples
        samples.append((now, value))
        window_s = self._window_s
        while len(samples) > 2 and now - samples[1][0] >= window_s:
            samples.popleft()
        t0, v0 = samples[0]
        if now - t0 < window_s / 2:
            self.rate_per_min = None
            return self._debounce.raw
        rate = (value - v0) / (now - t0) * 60.0
        self.rate_per_min = rate
        limit = self._limit_per_min
        if self._direction == "rise":
            return rate > limit
        if self._direction == "fall":
            return rate < -limit
        return abs(rate) > limit

    def feed_idle(self, value: float, now: float) -> bool:
        # The sample goes into the window either way; a rate within the limit changes nothing.
        if not self._raw(value, now):
            return True
        self._debounce.feed(True, now)
        return False

    def reset(self) -> None:
        super().reset()
        self._samples.clear()


class DiscreteDetector(Detector):
    """Equal to the rule's `active_when`."""

    def __init__(self, rule: DiscreteRule) -> None:
        super().__init__(
            on_delay_s=rule.on_delay_s, off_delay_s=rule.off_delay_s, limit=rule.active_when
        )

    def _raw(self, value: float, now: float) -> bool:
        return value == self.limit

    def feed_idle(self, value: float, now: float) -> bool:
        if value == self.limit:
            return super().feed_idle(value, now)
        return True  # idle and still not in its state: nothing changes


class TimeoutDetector(Detector):
    """Active once `after_s` passed since the last `ok()` (communication loss)."""

    def __init__(self, *, after_s: float, now: float) -> None:
        super().__init__(on_delay_s=after_s, off_delay_s=0.0, limit=after_s)
        self.last_ok = now

    def ok(self, now: float) -> None:
        self.last_ok = now
        debounce = self._debounce
        if debounce.raw or debounce.active:  # else feeding False changes nothing (every poll)
            debounce.feed(False, now)

    def failed(self, now: float) -> None:
        if not self._debounce.raw:
            # The outage started at the last good answer, not at this failure.
            self._debounce.raw = True
            self._debounce._raw_since = self.last_ok
        self._debounce.tick(now)

    def _raw(self, value: float, now: float) -> bool:
        return value != 0


class FreshnessDetector(Detector):
    """Stale data: no reading for `after_s`, or no reading with a value the rules watch.

    A device that reports failures is comm-loss's business, not this one's: while its polls
    fail, its data is not called stale (an outage is one alarm). What is left is a poll path
    that has gone quiet (a hung loop reports neither readings nor failures) and a device that
    answers without a value an alarm depends on (a lost OPC UA subscription, a register map
    that lost a value): either way an alarm would be watching nothing.
    """

    def __init__(self, *, after_s: float, watched: Iterable[str], now: float) -> None:
        super().__init__(on_delay_s=after_s, off_delay_s=0.0, limit=after_s)
        self.after_s = after_s
        self.last_reading = now
        self.last_seen = dict.fromkeys(watched, now)
        #: the earliest of `last_reading` and `last_seen`, kept as they change
        self._oldest = now
        self.failing = False
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    @property
    def idle(self) -> bool:
        return not self._active

    # Fed whole readings (`reading`, `failed`), never single values: `feed` does not apply.

    def reading(self, values: Container[str], faults: Container[str], now: float) -> None:
        """A successful poll: its values, and those it has but could not measure (a sensor
        fault is the sensor-fault alarm's business, not stale data)."""
        self.failing = False
        self.last_reading = oldest = now
        seen = self.last_seen
        for name, seen_at in seen.items():
            if name in values or name in faults:
                seen[name] = now  # an existing key: the iteration goes on
            elif seen_at < oldest:
                oldest = seen_at
        self._oldest = oldest
        self._active = now >= oldest + self.after_s  # what `tick` says, not failing

    def failed(self, now: float) -> None:
        self.failing = True
        self.tick(now)

    def missing(self, now: float) -> list[str]:
        """Watched values not seen for `after_s`."""
        return [name for name, t in self.last_seen.items() if now >= t + self.after_s]

    def tick(self, now: float) -> None:
        self._active = not self.failing and now >= self._oldest + self.after_s

    def deadline(self) -> float | None:
        if self.failing or self._active:
            return None
        return self._oldest + self.after_s

    def restore_active(self) -> None:
        """After a restart with the data stale: stale until fresh data proves otherwise."""
        self.last_reading = self._oldest = -math.inf
        for name in self.last_seen:
            self.last_seen[name] = -math.inf
        self._active = True
