"""Daemon-side LN2 tank logic: derived values, the fill watch, and the `fill` command.

`Ln2Tank` wraps an `Ln2Driver` and is itself a `drivers.Driver`, so the ordinary poller
publishes it. Each `read()` adds to the controller's values:

* `hours_to_low`: hours until `ln2_level_pct` reaches `low_level_pct` at the boil-off rate
  measured over the last `boil_off_window_h` outside fills (`BoilOffEstimator`); absent until
  enough level history exists, or while the level is not falling;
* `fill_elapsed_s`: how long the running fill has run (0 outside fills);
* `fill_timeout` (0/1): a fill has run `fill.fill_timeout_s` without raising the level by
  `fill.min_rise_pct` (supply empty, valve stuck shut); it stays 1 until the next fill starts;
* `valve_stuck_open` (0/1): the level keeps rising where it must not: during a fill, above the
  stop level by `min_rise_pct`; outside fills, by `min_rise_pct` within `fill_timeout_s`;
* `fill_overrun` (0/1): a fill has run longer than `fill.max_fill_s`.

The daemon enforces `max_fill_s` itself: while a fill overruns, or the valve is stuck open, it
sends a stop on every poll, whatever the controller answers, until the fill is over. It also
sets the controller's fill levels to the configured ones once it reaches the controller.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controllerd.config import Ln2TankConfig
from drivers import DriverError, InvalidRequest, Reading
from drivers.ln2.client import Ln2Driver

_log = structlog.get_logger("controllerd.ln2")

#: Seconds after a fill ends before the level counts toward the boil-off rate again.
SETTLE_S = 300.0
#: Level history the estimator needs before it gives a rate.
MIN_SPAN_S = 3600.0


class BoilOffEstimator:
    """Boil-off rate from level samples: one least-squares slope pooled over segments.

    A fill (or anything else that moves the level) starts a new segment with `interrupt()`;
    each segment keeps its own intercept, so the rate is the level's fall within segments, not
    across the jumps between them. Samples older than `window_s` are forgotten; at most
    `max_samples` are kept over the window (later samples closer than window/max are skipped).
    """

    def __init__(
        self, *, window_s: float, min_span_s: float = MIN_SPAN_S, max_samples: int = 1000
    ) -> None:
        if window_s <= 0 or min_span_s <= 0:
            raise ValueError("window_s and min_span_s must be positive")
        self.window_s = window_s
        self.min_span_s = min(min_span_s, window_s)
        self._spacing_s = window_s / max_samples
        self._samples: deque[tuple[int, float, float]] = deque()
        self._segment = 0
        self._new_segment = True

    def interrupt(self) -> None:
        """The level moved for another reason than boil-off: start a new segment."""
        self._new_segment = True

    def add(self, t_s: float, level_pct: float) -> None:
        if self._new_segment:
            self._segment += 1
            self._new_segment = False
        elif self._samples and t_s - self._samples[-1][1] < self._spacing_s:
            return
        self._samples.append((self._segment, t_s, level_pct))
        while self._samples and t_s - self._samples[0][1] > self.window_s:
            self._samples.popleft()

    @property
    def span_s(self) -> float:
        """Time covered by samples inside segments (what the slope rests on)."""
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for segment, t, _ in self._samples:
            first.setdefault(segment, t)
            last[segment] = t
        return sum(last[s] - first[s] for s in first)

    def rate_pct_per_h(self) -> float | None:
        """Level fall per hour (positive while the level falls); None without enough history."""
        if self.span_s < self.min_span_s:
            return None
        groups: dict[int, list[tuple[float, float]]] = {}
        for segment, t, level in self._samples:
            groups.setdefault(segment, []).append((t, level))
        sxy = sxx = 0.0
        for points in groups.values():
            if len(points) < 2:
                continue
            mean_t = sum(t for t, _ in points) / len(points)
            mean_y = sum(y for _, y in points) / len(points)
            sxy += sum((t - mean_t) * (y - mean_y) for t, y in points)
            sxx += sum((t - mean_t) ** 2 for t, _ in points)
        if sxx <= 0:
            return None
        return -sxy / sxx * 3600.0

    def hours_to(self, level_pct: float, low_pct: float) -> float | None:
        """Hours until `level_pct` falls to `low_pct`; 0 at or below it; None when unknown
        (not enough history, or a level that is not falling)."""
        if level_pct <= low_pct:
            return 0.0
        rate = self.rate_pct_per_h()
        if rate is None or rate <= 0:
            return None
        return (level_pct - low_pct) / rate


class Ln2Tank:
    """A tank as the daemon sees it: the controller's values plus the fill watch.

    `clock` (monotonic seconds) is injectable so tests can run it on a simulator's clock.
    """

    def __init__(
        self,
        *,
        config: Ln2TankConfig,
        driver: Ln2Driver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._driver = driver
        self._clock = clock
        self._log = _log.bind(device=config.id)
        self.estimator = BoilOffEstimator(window_s=config.boil_off_window_h * 3600.0)
        self._levels_set = False
        self._filling = False
        self._fill_started = 0.0
        self._fill_start_level = 0.0
        self._fill_ended = -SETTLE_S
        self._fill_timeout = False
        self._overrun = False
        self._stuck = False
        #: (time, level) outside fills over the last fill_timeout_s: is the level rising?
        self._recent: deque[tuple[float, float]] = deque()
        #: Stops the daemon sent on its own (max fill time, valve stuck open).
        self.forced_stops = 0

    @property
    def device_id(self) -> str:
        return self.config.id

    async def connect(self) -> None:
        await self._driver.connect()

    async def close(self) -> None:
        await self._driver.close()

    async def write(self, name: str, value: float) -> None:
        await self._driver.write(name, value)

    async def start_fill(self) -> None:
        await self._driver.start_fill()

    async def stop_fill(self) -> None:
        await self._driver.stop_fill()

    async def filling(self) -> bool:
        return await self._driver.filling()

    async def read(self) -> Reading:
        reading = await self._driver.read()
        now = self._clock()
        if not self._levels_set:
            await self._set_levels()
        values = dict(reading.values)
        level = values["ln2_level_pct"]
        filling = values["filling"] == 1.0
        self._watch_fill(now, level, filling)
        if not filling and not self._stuck and now - self._fill_ended >= SETTLE_S:
            self.estimator.add(now, level)
        values["fill_elapsed_s"] = round(now - self._fill_started, 1) if filling else 0.0
        values["fill_timeout"] = float(self._fill_timeout)
        values["valve_stuck_open"] = float(self._stuck)
        values["fill_overrun"] = float(self._overrun)
        hours = self.estimator.hours_to(level, self.config.low_level_pct)
        if hours is not None:
            values["hours_to_low"] = round(hours, 2)
        if self._overrun or self._stuck:
            await self._force_stop()
        return Reading(values=values, faults=reading.faults)

    async def _set_levels(self) -> None:
        fill = self.config.fill
        try:
            await self._driver.set_fill_levels(fill.start_pct, fill.stop_pct)
        except DriverError as exc:
            # The values were read; the levels are set again on the next poll.
            self._log.warning("cannot set the fill levels", error=str(exc))
            return
        self._levels_set = True
        self._log.info("fill levels set", start_pct=fill.start_pct, stop_pct=fill.stop_pct)

    def _watch_fill(self, now: float, level: float, filling: bool) -> None:
        fill = self.config.fill
        if filling and not self._filling:
            self._fill_started, self._fill_start_level = now, level
            self._fill_timeout = False
            self.estimator.interrupt()
            self._log.info("fill started", level_pct=level)
        elif self._filling and not filling:
            self._fill_ended = now
            self._recent.clear()
            self.estimator.interrupt()
            self._log.info(
                "fill ended", level_pct=level, after_s=round(now - self._fill_started, 1)
            )
        self._filling = filling
        elapsed = now - self._fill_started
        if filling:
            no_rise = level - self._fill_start_level < fill.min_rise_pct
            if elapsed >= fill.fill_timeout_s and no_rise and not self._fill_timeout:
                self._fill_timeout = True
                self._log.warning("fill timeout: the level does not rise", after_s=round(elapsed))
            overrun = elapsed >= fill.max_fill_s
            stuck = level >= fill.stop_pct + fill.min_rise_pct
        else:
            overrun = False
            self._recent.append((now, level))
            while self._recent and now - self._recent[0][0] > fill.fill_timeout_s:
                self._recent.popleft()
            stuck = level - min(lvl for _, lvl in self._recent) >= fill.min_rise_pct
        if overrun != self._overrun:
            self._overrun = overrun
            if overrun:
                self._log.warning("fill overran its maximum time", max_fill_s=fill.max_fill_s)
        if stuck != self._stuck:
            self._stuck = stuck
            if stuck:
                self._log.warning("valve stuck open: the level keeps rising", level_pct=level)
                self.estimator.interrupt()
            else:
                self._log.info("level no longer rising", level_pct=level)

    async def _force_stop(self) -> None:
        """Stop the fill whatever the controller does; tried again on every poll."""
        self.forced_stops += 1
        try:
            await self._driver.stop_fill()
        except DriverError as exc:
            log = self._log.warning if self.forced_stops == 1 else self._log.debug
            log("forced fill stop failed", error=str(exc))
            return
        log = self._log.warning if self.forced_stops == 1 else self._log.debug
        log("forced fill stop sent", overrun=self._overrun, valve_stuck_open=self._stuck)


class FillCommand(BaseModel):
    """`BASE/cmd/fill` without its envelope: start or stop a fill of one tank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tank: str = Field(min_length=1, description="Device id of an ln2_tank.")
    action: Literal["start", "stop"] = Field(description="Open or close the fill valve.")


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'command'}: {err['msg']}" for err in exc.errors()
    )


async def apply_fill(
    command: FillCommand | Mapping[str, Any], tanks: Mapping[str, Ln2Tank]
) -> dict[str, Any]:
    """Start or stop a fill; returns `{"tank", "action", "filling"}` (the controller's state
    read back). Raises InvalidRequest (a malformed command, an unknown tank: nothing is sent)
    or another DriverError when the controller cannot be reached or refuses."""
    if not isinstance(command, FillCommand):
        try:
            command = FillCommand.model_validate(dict(command))
        except ValidationError as exc:
            raise InvalidRequest(f"bad fill command: {_problems(exc)}", operation="fill") from exc
    tank = tanks.get(command.tank)
    if tank is None:
        known = ", ".join(sorted(tanks)) or "none"
        raise InvalidRequest(
            f"no LN2 tank '{command.tank}' (tanks: {known})", device=command.tank, operation="fill"
        )
    if command.action == "start":
        await tank.start_fill()
    else:
        await tank.stop_fill()
    filling = await tank.filling()
    _log.info("fill command applied", device=command.tank, action=command.action, filling=filling)
    return {"tank": command.tank, "action": command.action, "filling": filling}
