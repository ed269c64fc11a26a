"""Rack batching (planned and first come first served) and the job queue's order."""

from __future__ import annotations

import asyncio

from controllerd.jobs import Job, JobQueue, TubeTask, fcfs_batches, plan_batches


def _tubes(spec: str) -> list[TubeTask]:
    """'R1:A1 R2:B3 ...' in request order."""
    tubes = []
    for n, item in enumerate(spec.split()):
        rack, position = item.split(":")
        tubes.append(TubeTask(f"T{n}", "s", rack, position))
    return tubes


def test_planned_batches_fetch_each_rack_once_fullest_first() -> None:
    tubes = _tubes("R1:A1 R2:A1 R3:A1 R2:B1 R4:A1 R5:A1 R2:A2 R5:C1 R1:A3")
    batches = plan_batches(tubes, 2)
    assert [b.racks for b in batches] == [("R2", "R1"), ("R5", "R3"), ("R4",)]
    assert sorted(t.barcode for b in batches for t in b.tubes) == sorted(t.barcode for t in tubes)
    # Serpentine within a rack: row A left to right, row B right to left.
    assert [t.position for t in batches[0].tubes[:3]] == ["A1", "A2", "B1"]


def test_fcfs_follows_the_request_and_refetches() -> None:
    tubes = _tubes("R1:A1 R2:A1 R3:A1 R1:A2")
    batches = fcfs_batches(tubes, 2)
    assert [t.barcode for b in batches for t in b.tubes] == ["T0", "T1", "T2", "T3"]
    racks = [b.racks for b in batches]
    assert racks == [("R1", "R2"), ("R2", "R3"), ("R3", "R1")]


def _job(name: str, priority: int, order: int) -> Job:
    return Job(name, "c", "alice", priority, order, "queued", "OUT")


async def test_queue_runs_higher_priority_first_then_oldest() -> None:
    queue = JobQueue()
    for job in (_job("a", 5, 1), _job("b", 9, 2), _job("c", 5, 3), _job("d", 9, 4)):
        await queue.put(job)
    assert queue.position("c") == 4
    assert queue.remove("d") is not None
    order = [(await queue.get()).job for _ in range(3)]
    assert order == ["b", "a", "c"]
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    await queue.put(_job("e", 0, 5))
    assert (await waiter).job == "e"
