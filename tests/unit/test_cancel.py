"""`cancel_and_wait` ends tasks even when a cancel is lost (as Python 3.11's wait_for can)."""

from __future__ import annotations

import asyncio

from drivers import cancel_and_wait


async def test_a_task_that_loses_cancels_is_cancelled_again_until_it_ends() -> None:
    lost = 0

    async def loses_two_cancels() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if lost == 2:
                    raise
                lost += 1  # what a swallowed cancel looks like from outside: carry on

    task = asyncio.create_task(loses_two_cancels())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, retry_s=0.01), timeout=30)
    assert task.cancelled() and lost == 2


async def test_outcomes_are_consumed_and_finished_tasks_left_alone() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def finishes() -> int:
        return 7

    failing, done = asyncio.create_task(fails()), asyncio.create_task(finishes())
    await asyncio.sleep(0.01)
    await cancel_and_wait(failing, done)  # nothing pending: returns at once
    assert done.result() == 7
    assert isinstance(failing.exception(), RuntimeError)
