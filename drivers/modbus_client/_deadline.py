"""A link's time bound on each attempt, re-armed lazily: one timer per link, not one per request.

`asyncio.timeout` or `asyncio.wait_for` schedule and cancel a timer for every attempt (with
`wait_for`'s futures and callback, about a fifth of a device read's CPU). A link runs one
exchange at a time, so one bound serves them all: `arm` stamps the current exchange's
deadline and schedules a timer only when none is pending; when the timer fires it cancels the
exchange if its deadline has passed, re-arms for the current deadline if a later exchange is
running, and stays unarmed while the link is idle. Expiry then works as in `asyncio.timeout`:
the task is cancelled, and `disarm` tells the caller the cancellation was the bound's, to be
raised as a timeout.
"""

from __future__ import annotations

import asyncio


class LazyDeadline:
    """The outer bound of one exchange at a time (the link's lock guarantees that)."""

    __slots__ = ("_at", "_cancelling", "_fired", "_loop", "_task", "_timer", "_timer_at")

    def __init__(self) -> None:
        #: the loop of the first `arm` (a link lives in one loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._at = 0.0
        self._cancelling = 0
        self._fired = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when `_timer` fires

    def arm(self, budget_s: float) -> None:
        """Bound what the current task does until `disarm` to `budget_s` from now."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "arm() runs inside a task"
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        self._at = loop.time() + budget_s
        timer = self._timer
        if timer is not None and self._timer_at > self._at:
            timer.cancel()  # a shorter budget than the pending timer's
            timer = None
        if timer is None:
            self._timer = loop.call_at(self._at, self._expire)
            self._timer_at = self._at

    def disarm(self, exc: BaseException | None) -> bool:
        """End the bound; True when it expired and `exc` is the cancellation it caused."""
        task, self._task = self._task, None
        if not self._fired:
            return False
        self._fired = False
        assert task is not None
        return task.uncancel() <= self._cancelling and isinstance(exc, asyncio.CancelledError)

    def close(self) -> None:
        """Drop the pending timer (the link is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        task = self._task
        if task is None:
            return  # idle: the next arm schedules a timer again
        loop = self._loop
        assert loop is not None
        if loop.time() < self._at:
            self._timer = loop.call_at(self._at, self._expire)
            self._timer_at = self._at
            return
        self._fired = True
        task.cancel()
