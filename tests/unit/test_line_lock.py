"""The Modbus link's line lock: one holder at a time, first come first served, like asyncio.Lock."""

from __future__ import annotations

import asyncio

import pytest

from drivers.modbus_client._lock import LineLock


async def test_a_free_lock_is_taken_without_waiting_and_a_taken_one_is_not() -> None:
    lock = LineLock()
    assert lock.try_acquire()
    assert lock.locked()
    assert not lock.try_acquire()
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()


async def test_waiters_get_the_lock_in_arrival_order_and_nobody_jumps_the_line() -> None:
    lock = LineLock()
    order: list[int] = []

    async def user(i: int) -> None:
        async with lock:
            order.append(i)
            await asyncio.sleep(0)

    assert lock.try_acquire()
    tasks = [asyncio.create_task(user(i)) for i in range(3)]
    await asyncio.sleep(0)  # every task is waiting in line now
    lock.release()  # handed to task 0, which has not run yet
    assert lock.locked()
    assert not lock.try_acquire()  # a newcomer cannot take it in between
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert not lock.locked()


async def test_a_cancelled_waiter_leaves_the_line() -> None:
    lock = LineLock()
    assert lock.try_acquire()
    cancelled = asyncio.create_task(lock.acquire())
    after = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    lock.release()
    await asyncio.wait_for(after, 1.0)  # the lock went past the cancelled waiter
    assert lock.locked()
    lock.release()
    assert not lock.locked()


async def test_a_waiter_cancelled_as_the_lock_reaches_it_passes_the_lock_on() -> None:
    lock = LineLock()
    assert lock.try_acquire()
    first = asyncio.create_task(lock.acquire())
    second = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    lock.release()  # handed to `first`, which is cancelled before it runs
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1.0)
    assert lock.locked()
    lock.release()
    assert not lock.locked()
