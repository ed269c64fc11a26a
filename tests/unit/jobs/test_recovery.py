"""Recovery after a crash at each point of a tube's move: the restarted executor finds the racks
at their ports and settles the interrupted tube from what the picker and the reader say."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from controllerd.jobs import Job, JobExecutor
from controllerd.jobs._recovery import recover
from controllerd.outbox import open_state_db
from tests.unit.jobs.test_executor import Rig


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_state_db(tmp_path / "jobs.sqlite3")
    yield conn
    conn.close()


async def _crash_at(rig: Rig, step: str) -> Job:
    """Run the first tube of a two-tube job by hand up to `step`, as a killed daemon would."""
    job = rig.job(per_rack=2, racks=1)
    ex = rig.executor
    rig.journal.set_state(job, "running")
    await ex._ensure_homed()
    await ex._arrange(job, (job.tubes[0].rack,))
    tube = job.tubes[0]
    x, y = ex.xy(ex.station[tube.rack], tube.position)
    await rig.cell.move_to(x_mm=x, y_mm=y)
    rig.journal.reserve_output(job.job, tube, job.output_rack, ex.next_output_position("OUT-0001"))
    if step == "before pick":
        return job
    await rig.cell.pick()
    if step == "in the gripper":
        return job
    rig.journal.tube_state(job.job, tube, "held")
    assert tube.out_position is not None
    ox, oy = ex.xy("OUT", tube.out_position)
    await rig.cell.move_to(x_mm=ox, y_mm=oy)
    await rig.cell.place()
    return job  # "placed, not recorded"


async def _restart(rig: Rig) -> tuple[JobExecutor, Job]:
    """A new executor on the same database and devices, reconciled the way the daemon does."""
    fresh = JobExecutor(
        config=rig.executor._cfg,
        store_id="store-1",
        picker_id="picker-1",
        store=rig.cell,
        motion=rig.cell,
        journal=rig.journal,
        outbox=rig.outbox,
        progress=rig.executor._progress,
        alarms=rig.recorder,
        clock=rig.cell.clock,
    )
    (job,) = rig.journal.unfinished()
    await recover(
        jobs=[job], executor=fresh, journal=rig.journal, store=rig.cell, store_id="store-1"
    )
    return fresh, job


@pytest.mark.parametrize("step", ["before pick", "in the gripper", "placed, not recorded"])
async def test_an_interrupted_tube_is_settled_and_the_job_resumes(
    db: sqlite3.Connection, step: str
) -> None:
    rig = Rig(db)
    first = (await _crash_at(rig, step)).tubes[0]
    fresh, job = await _restart(rig)
    assert fresh.station == {first.rack: "P1"}  # the rack stays at its port
    tube = job.tubes[0]
    if step == "before pick":
        assert tube.state == "pending" and rig.movements() == []
    else:
        assert tube.state == "done"
        (move,) = rig.movements()
        assert move["barcode"] == first.barcode
        assert rig.cell.output.tubes[move["to"]["position"]] == first.barcode
    await fresh.run(job)
    assert job.state == "done" and job.done == 2
    moves = rig.movements()
    assert sorted(m["barcode"] for m in moves) == sorted(t.barcode for t in job.tubes)
    assert [m["seq"] for m in moves] == [1, 2]
    assert set(rig.cell.store_model.location.values()) == {"store"}
    assert rig.journal.racks_out() == []


async def test_another_tube_in_the_gripper_is_not_recorded(db: sqlite3.Connection) -> None:
    rig = Rig(db)
    await _crash_at(rig, "in the gripper")
    rig.cell.picker.holding = "SOMETHING-ELSE"  # not what the journal says was picked
    _, job = await _restart(rig)
    assert job.tubes[0].state == "failed" and rig.movements() == []
    assert ("picker-1.tube_unaccounted", True) in [(a, on) for a, on, _ in rig.recorder.alarms]
