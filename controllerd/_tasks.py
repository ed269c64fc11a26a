"""Background tasks that an object owns: started in its `__aenter__`, gone after `__aexit__`.

Every long-lived part of the daemon (alarm engine, pager, outbox, job manager) runs its loops in
one `asyncio.TaskGroup` of its own: tasks are named, nothing is fire-and-forget, and closing
cancels every task (also those spawned later, such as page deliveries) and waits for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from drivers import cancel_and_wait

T = TypeVar("T")


class BackgroundTasks:
    """`await tasks.start()`, `tasks.spawn(coro, name=...)`, `await tasks.close()`."""

    def __init__(self) -> None:
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run `coro` as a named task of the group (after `start`)."""
        if self._group is None:
            coro.close()
            raise RuntimeError(f"task '{name}' spawned outside its owner's context")
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel every task and wait until all have ended; safe to call twice."""
        group, self._group = self._group, None
        if group is None:
            return
        # Cancel until every task has ended (a cancel can be lost on 3.11: drivers._cancel);
        # tasks spawned while closing are cancelled too.
        while pending := [task for task in self._tasks if not task.done()]:
            await cancel_and_wait(*pending)
        await group.__aexit__(None, None, None)
