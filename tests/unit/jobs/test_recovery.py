"""Recovery after a crash at each point of a tube's move and of a rack's trip: the restarted
executor finds the racks where the store says they are and settles the interrupted tube from
what the picker and the reader say."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from controllerd.jobs import Job, JobExecutor
from controllerd.jobs._recovery import recover
from drivers.opcua_model import Inventory
from tests.unit.jobs._simulated import SimulatedCell
from tests.unit.jobs.test_executor import Rig, logic_db


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = logic_db(tmp_path / "jobs.sqlite3")
    yield conn
    conn.close()


async def _crash_at(rig: Rig, step: str) -> Job:
    """Run the first tube of a two-tube job by hand up to `step`, as a killed daemon would."""
    job = rig.job(per_rack=2, racks=1)
    ex = rig.executor
    rig.journal.set_state(job, "running")
    await ex._gantry.ensure_homed(job.job)
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


class MovingStore:
    """The cell's store, still moving a rack when the daemon restarts: each inventory read
    lets `step_s` of the robot's time pass."""

    def __init__(self, cell: SimulatedCell, step_s: float) -> None:
        self.cell = cell
        self.step_s = step_s
        self.reads: list[dict[str, str]] = []

    async def load_inventory(self) -> Inventory:
        inventory = await self.cell.load_inventory()
        self.reads.append({rack.rack_id: rack.location for rack in inventory.racks})
        self.cell.store_model.step(self.step_s)
        return inventory


async def _restart(rig: Rig, store: object | None = None) -> tuple[JobExecutor, Job]:
    """A new executor on the same database and devices, reconciled the way the daemon does:
    racks first (recover), then the interrupted tube (first thing the resumed job does)."""
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
        sleep=rig.cell.clock.sleep,
    )
    (job,) = rig.journal.unfinished()
    await recover(
        executor=fresh,
        journal=rig.journal,
        store=store or rig.cell,  # type: ignore[arg-type]
        store_id="store-1",
    )
    await fresh.settle_interrupted(job)
    return fresh, job


async def _resumes_to_the_end(rig: Rig, fresh: JobExecutor, job: Job) -> None:
    await fresh.run(job)
    assert job.state == "done" and job.done == 2
    moves = rig.movements()
    assert sorted(m["barcode"] for m in moves) == sorted(t.barcode for t in job.tubes)
    assert [m["seq"] for m in moves] == [1, 2]
    assert rig.racks_home() and rig.journal.racks_out() == []


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
    await _resumes_to_the_end(rig, fresh, job)


async def test_another_tube_in_the_gripper_is_not_recorded(db: sqlite3.Connection) -> None:
    rig = Rig(db)
    await _crash_at(rig, "in the gripper")
    rig.cell.picker.holding = "SOMETHING-ELSE"  # not what the journal says was picked
    _, job = await _restart(rig)
    assert job.tubes[0].state == "failed" and rig.movements() == []
    assert rig.alarm_states("tube_unaccounted") == [True]


async def test_a_tube_found_nowhere_is_failed_and_alarmed(db: sqlite3.Connection) -> None:
    """Picked, then gone (dropped): not in the gripper, its slot or its source."""
    rig = Rig(db)
    first = (await _crash_at(rig, "in the gripper")).tubes[0]
    rig.cell.picker.holding = None
    fresh, job = await _restart(rig)
    assert job.tubes[0].state == "failed" and rig.movements() == []
    assert first.barcode in (job.tubes[0].error or "")
    assert rig.alarm_states("tube_unaccounted") == [True]
    await fresh.run(job)  # the rest of the job goes on; the lost tube is never recorded
    assert job.state == "failed" and [m["barcode"] for m in rig.movements()] == [
        job.tubes[1].barcode
    ]


async def test_a_rack_on_the_robot_at_restart_is_waited_for(db: sqlite3.Connection) -> None:
    """Killed mid-retrieve: the store is still carrying the rack; recovery waits for it to
    reach its port and the job uses it there (no second fetch)."""
    rig = Rig(db)
    job = rig.job(per_rack=2, racks=1)
    rack = job.tubes[0].rack
    rig.journal.set_state(job, "running")
    rig.journal.rack_out("store-1", rack, rig.cell.clock())
    rig.journal.step(job.job, "retrieve", rack, "before", port="P1")
    _, duration = rig.cell.store_model.retrieve(rack, "P1")  # requested; the daemon dies
    store = MovingStore(rig.cell, step_s=duration + 1)
    fresh, job = await _restart(rig, store)
    assert store.reads[0][rack] == "robot" and fresh.station == {rack: "P1"}
    await _resumes_to_the_end(rig, fresh, job)
    assert rig.journal.rack_stats()[0] == 1


async def test_a_rack_back_on_its_shelf_at_restart_ends_its_trip(db: sqlite3.Connection) -> None:
    """Killed after the store request of a return: the rack is on its shelf; its trip ends,
    and it is fetched again for the tubes still to pick."""
    rig = Rig(db)
    first = (await _crash_at(rig, "before pick")).tubes[0]
    rig.journal.step("job-1", "store", first.rack, "before")
    _, duration = rig.cell.store_model.store(first.rack)
    rig.cell.store_model.step(duration + 1)  # the robot finished while the daemon was down
    fresh, job = await _restart(rig)
    assert fresh.station == {} and rig.journal.racks_out() == []
    assert job.tubes[0].state == "pending"  # not picked; its barcode is checked again later
    await _resumes_to_the_end(rig, fresh, job)
    assert rig.journal.rack_stats()[0] == 2
