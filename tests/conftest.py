"""Shared test hygiene: every async test must leave no task running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def fail_test_on_unclosed_tasks() -> AsyncIterator[None]:
    """A test that leaves tasks running hides a resource that does not own its tasks."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)  # let tasks cancelled at teardown finish
    leftover = [
        task
        for task in asyncio.all_tasks() - before
        if task is not asyncio.current_task() and not task.done()
    ]
    for task in leftover:
        task.cancel()
    if leftover:
        # aiomqtt's and asyncio's own tasks are unnamed: the coroutine says what they are.
        names = ", ".join(
            sorted(f"{task.get_name()} ({task.get_coro().__qualname__})" for task in leftover)  # type: ignore[union-attr]
        )
        pytest.fail(f"test left tasks running: {names}")
