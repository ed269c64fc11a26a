"""A link's line lock: one exchange at a time, first come first served, like `asyncio.Lock`.

Every device read takes its link's lock once. `asyncio.Lock.acquire` is a coroutine even when
nobody holds the lock (most reads: a TCP device usually has its link to itself), so the poll
path paid a coroutine object and its run per read for nothing. `LineLock.try_acquire` takes a
free lock with a plain call; `acquire` waits in line when it is taken. `release` hands the lock
straight to the first waiter, so a task that finds the lock free can never jump ahead of one
that was woken and has not run yet.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class LineLock:
    """A FIFO lock for the tasks of one event loop; `async with` works as with asyncio.Lock."""

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        #: futures of the tasks waiting in line; a waiter's future gets its result when the
        #: lock is handed to it (the lock stays taken in between)
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._locked

    def try_acquire(self) -> bool:
        """Take the lock if it is free and nobody waits for it; never waits."""
        if self._locked or self._waiters:
            return False
        self._locked = True
        return True

    async def acquire(self) -> None:
        """Take the lock, waiting in line while it is taken."""
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over as the cancellation came: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Hand the lock to the first task still waiting, or free it."""
        if not self._locked:
            raise RuntimeError("LineLock is not acquired")
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled waiter leaves the line itself
                waiter.set_result(None)
                return
        self._locked = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
