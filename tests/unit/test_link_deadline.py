"""The Modbus link's lazily re-armed outer bound behaves like `asyncio.timeout` per exchange."""

from __future__ import annotations

import asyncio

import pytest

from drivers.modbus_client._deadline import LazyDeadline


async def bounded(deadline: LazyDeadline, budget_s: float, work_s: float) -> str:
    deadline.arm(budget_s)
    try:
        await asyncio.sleep(work_s)
    except BaseException as exc:
        if deadline.disarm(exc):
            return "timed out"
        raise
    deadline.disarm(None)
    return "done"


async def test_an_exchange_past_its_budget_times_out() -> None:
    deadline = LazyDeadline()
    assert await bounded(deadline, 0.05, 5.0) == "timed out"
    assert asyncio.current_task() is not None
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    deadline.close()


async def test_quick_exchanges_share_one_timer_and_are_never_cancelled() -> None:
    deadline = LazyDeadline()
    for _ in range(5):
        assert await bounded(deadline, 0.05, 0.02) == "done"
    # The first exchange's timer fired while later ones ran: it re-armed, cancelled nothing.
    await asyncio.sleep(0.1)  # idle past every deadline: nothing to cancel
    assert await bounded(deadline, 0.05, 0.0) == "done"
    deadline.close()


async def test_a_later_exchange_gets_its_own_full_budget() -> None:
    deadline = LazyDeadline()
    assert await bounded(deadline, 0.05, 0.03) == "done"
    # The pending timer fires at 0.05 s, inside this exchange: it must re-arm, not cancel.
    assert await bounded(deadline, 0.2, 0.1) == "done"
    assert await bounded(deadline, 0.03, 1.0) == "timed out"  # shorter than the pending timer
    deadline.close()


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadline = LazyDeadline()
    task = asyncio.create_task(bounded(deadline, 5.0, 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline.close()
