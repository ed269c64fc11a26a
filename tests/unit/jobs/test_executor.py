"""The executor on the simulators' store and picker models (virtual time): batches, barcode
verification, motion faults, exposure, cancel, and what the journal and outbox record."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controllerd.config import JobsSection
from controllerd.jobs import (
    Batch,
    Job,
    JobExecutor,
    Journal,
    PlannerBatcher,
    ProgressReporter,
    TubeTask,
    fcfs_batches,
    plan_batches,
    simple_batcher,
)
from controllerd.outbox import Outbox, open_state_db
from controllerd.topics import Topics
from tests.unit.jobs._simulated import MOTION, SimulatedCell


class Recorder:
    """Publisher and alarm sink in memory."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.alarms: list[tuple[str, bool, str]] = []

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        self.published.append((topic, json.loads(payload)))
        return True

    async def publish_confirmed(
        self, topic: str, payload: bytes, *, timeout_s: float = 10.0
    ) -> str | None:
        return None

    def external(self, alarm: str, *, device: str, active: bool, severity: str, text: str) -> None:
        self.alarms.append((alarm, active, text))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_state_db(tmp_path / "jobs.sqlite3")
    yield conn
    conn.close()


class Rig:
    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        batching: Callable[[list[TubeTask], int], list[Batch]] = plan_batches,
        **jobs: Any,
    ) -> None:
        self.cell = SimulatedCell(racks=12)
        self.db = db
        self.recorder = Recorder()
        self.journal = Journal(db)
        self.outbox = Outbox(db=db, mqtt=self.recorder, topic="m")
        self.executor = JobExecutor(
            config=JobsSection(**jobs),
            store_id="store-1",
            picker_id="picker-1",
            store=self.cell,
            motion=self.cell,
            journal=self.journal,
            outbox=self.outbox,
            progress=ProgressReporter(
                mqtt=self.recorder, topics=Topics(prefix="b", site="s", controller="r")
            ),
            alarms=self.recorder,
            pick_chamber_c=self.cell.read_pick_chamber,
            batching=simple_batcher(batching),
            clock=self.cell.clock,
        )

    def job(self, per_rack: int = 3, racks: int = 6, interleave: bool = False) -> Job:
        tubes = []
        for rack in sorted(self.cell.store_model.racks)[:racks]:
            for position, code in sorted(self.cell.rack_tubes(rack).items())[:per_rack]:
                tubes.append(TubeTask(code, "store-1", rack, position))
        if interleave:  # request order alternating between racks (worst case for FCFS)
            tubes = sorted(tubes, key=lambda t: (tubes.index(t) % per_rack, t.rack))
        job = Job(
            job="job-1",
            command_id="c1",
            operator="alice",
            priority=5,
            order=1,
            state="queued",
            output_rack="OUT-0001",
            tubes=tubes,
        )
        self.journal.create(job)
        return job

    def movements(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
        return [json.loads(row[0]) for row in rows]


async def test_a_job_moves_every_tube_once_and_returns_every_rack(db: sqlite3.Connection) -> None:
    rig = Rig(db)
    job = rig.job()
    source = {t.barcode: (t.rack, t.position) for t in job.tubes}
    await rig.executor.run(job)
    assert job.state == "done" and job.done == 18
    moves = rig.movements()
    assert [m["seq"] for m in moves] == list(range(1, 19))
    for move in moves:
        assert (move["from"]["rack"], move["from"]["position"]) == source[move["barcode"]]
        assert rig.cell.output.tubes[move["to"]["position"]] == move["barcode"]
        assert move["barcode"] not in rig.cell.rack_tubes(move["from"]["rack"]).values()
        assert move["exposure_s"] > 0 and move["job"] == "job-1"
    assert set(rig.cell.store_model.location.values()) == {"store"}
    assert rig.journal.rack_stats()[0] == 6  # each rack fetched once
    assert rig.journal.unfinished() == []
    progress = [body for _, body in rig.recorder.published]
    assert [body["done"] for body in progress if body["state"] == "running"][-1] == 18
    assert progress[-1]["state"] == "done" and progress[-1]["eta_s"] == 0.0


async def test_fcfs_fetches_more_racks_than_batching(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    planned = Rig(db)
    job = planned.job(interleave=True)
    await planned.executor.run(job)
    other = open_state_db(tmp_path / "fcfs.sqlite3")
    try:
        fcfs = Rig(other, batching=fcfs_batches)
        job2 = fcfs.job(interleave=True)
        await fcfs.executor.run(job2)
        assert job2.state == "done"
        assert fcfs.journal.rack_stats()[0] > planned.journal.rack_stats()[0]
    finally:
        other.close()


async def test_a_misread_tube_stays_where_it_is_and_alarms(db: sqlite3.Connection) -> None:
    rig = Rig(db)
    job = rig.job(per_rack=2, racks=2)
    victim = job.tubes[1]
    rig.cell.misread.add(victim.barcode)
    await rig.executor.run(job)
    assert job.state == "failed" and victim.barcode in (job.error or "")
    assert rig.cell.rack_tubes(victim.rack)[victim.position] == victim.barcode
    assert victim.barcode not in [m["barcode"] for m in rig.movements()]
    assert len(rig.movements()) == 3
    assert ("picker-1.barcode_mismatch", True) in [(a, on) for a, on, _ in rig.recorder.alarms]


async def test_a_jam_is_retried_and_alarmed(db: sqlite3.Connection) -> None:
    rig = Rig(db)
    job = rig.job(per_rack=2, racks=1)
    rig.cell.jam_moves = 2
    await rig.executor.run(job)
    assert job.state == "done" and len(rig.movements()) == 2
    states = [on for alarm, on, _ in rig.recorder.alarms if alarm == "picker-1.motion_fault"]
    assert states[0] is True and states[-1] is False


async def test_racks_go_back_before_they_reach_the_exposure_limit(db: sqlite3.Connection) -> None:
    rig = Rig(db, exposure_limit_s=40.0, exposure_margin_s=5.0)
    job = rig.job(per_rack=6, racks=2)
    await rig.executor.run(job)
    assert job.state == "done" and job.done == 12
    fetches, longest = rig.journal.rack_stats()
    assert fetches > 2  # fetched again after going back
    assert longest < 40.0 + 30.0  # within the limit plus the tube in hand and the scan
    states = [body["state"] for _, body in rig.recorder.published]
    assert "paused" in states


async def test_a_warm_pick_chamber_sends_the_racks_back_first(db: sqlite3.Connection) -> None:
    rig = Rig(db)
    job = rig.job(per_rack=3, racks=1)
    readings = iter([-20.0, -20.0, -5.0])

    async def chamber() -> float | None:
        return next(readings, -20.0)

    rig.executor._pick_chamber_c = chamber
    await rig.executor.run(job)
    assert job.state == "done"
    paused = [b for _, b in rig.recorder.published if b["state"] == "paused"]
    assert paused and "pick chamber" in paused[0]["error"]
    assert rig.journal.rack_stats()[0] == 2


async def test_cancel_finishes_the_current_tube_and_returns_the_racks(
    db: sqlite3.Connection,
) -> None:
    rig = Rig(db)
    job = rig.job(per_rack=4, racks=2)
    task = asyncio.create_task(rig.executor.run(job))
    while job.done < 2:  # noqa: ASYNC110 - the job's own state, no event
        await asyncio.sleep(0)
    rig.journal.request_cancel(job)
    await task
    assert job.state == "cancelled"
    assert 2 <= job.done < 8
    assert len(rig.movements()) == job.done
    assert set(rig.cell.store_model.location.values()) == {"store"}
    assert all(t.state in ("done", "cancelled") for t in job.tubes)
    assert rig.journal.claimed(t.barcode for t in job.tubes) == {}


async def test_the_planner_batches_a_job(db: sqlite3.Connection) -> None:
    """The planner's rack batches (in its worker process) drive the executor."""
    rig = Rig(db)
    store = rig.cell.store_model

    def rack_place(rack: str) -> tuple[int, int] | None:
        return store.home.get(rack)

    async with PlannerBatcher(
        config=JobsSection(), motion=MOTION, rack_place=rack_place
    ) as planner:
        rig.executor._batching = planner
        job = rig.job(per_rack=3, racks=6)
        await rig.executor.run(job)
        assert planner.planned == 1 and planner.fallbacks == 0
        # An unknown rack cannot be planned: simple batches instead.
        assert await planner([TubeTask("X", "store-1", "NOPE", "A1")], 4) == [
            Batch(racks=("NOPE",), tubes=(TubeTask("X", "store-1", "NOPE", "A1"),))
        ]
        assert planner.fallbacks == 1
    assert job.state == "done" and job.done == 18
    assert rig.journal.rack_stats()[0] == 6
