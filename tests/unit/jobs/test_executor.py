"""The executor on the simulators' store and picker models (virtual time): batches, barcode
verification, motion faults and a picker that stays stuck, exposure, the pick-chamber alarm,
cancel, and what the journal and outbox record."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controllerd.alarms.engine import AlarmEngine
from controllerd.config import Config, JobsSection, parse_config
from controllerd.jobs import (
    Batch,
    Job,
    JobExecutor,
    Journal,
    PlannerBatcher,
    ProgressReporter,
    TubeTask,
    fcfs_batches,
    pick_chamber_alarm,
    plan_batches,
    simple_batcher,
)
from controllerd.outbox import Outbox, open_state_db
from controllerd.statedb import StateDb
from controllerd.topics import Topics
from drivers import Reading
from tests.unit.jobs._simulated import MOTION, SimulatedCell


class Recorder:
    """Publisher and alarm sink in memory; `on_progress` sees every job progress payload."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.alarms: list[tuple[str, bool, str]] = []
        self.on_progress: Callable[[dict[str, Any]], None] | None = None

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        body = json.loads(payload)
        self.published.append((topic, body))
        if self.on_progress is not None and "/jobs/" in topic:
            self.on_progress(body)
        return True

    async def publish_confirmed(
        self, topic: str, payload: bytes, *, timeout_s: float = 10.0
    ) -> str | None:
        return None

    def external(self, alarm: str, *, device: str, active: bool, severity: str, text: str) -> None:
        self.alarms.append((alarm, active, text))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = logic_db(tmp_path / "jobs.sqlite3")
    yield conn
    conn.close()


def logic_db(path: Path) -> sqlite3.Connection:
    """The jobs database without an fsync per write: these tests are about what is written
    (the outbox's own tests and the system tests run it with synchronous=FULL)."""
    conn = open_state_db(path)
    conn.execute("PRAGMA synchronous=OFF")
    return conn


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
            batching=simple_batcher(batching),
            clock=self.cell.clock,
            sleep=self.cell.clock.sleep,
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

    def racks_home(self) -> bool:
        return set(self.cell.store_model.location.values()) == {"store"}

    def alarm_states(self, name: str) -> list[bool]:
        return [on for alarm, on, _ in self.recorder.alarms if alarm == f"picker-1.{name}"]


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
    other = logic_db(tmp_path / "fcfs.sqlite3")
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


async def test_no_rack_exceeds_the_exposure_limit(db: sqlite3.Connection) -> None:
    """With E = 60 s a rack cannot stay for all its tubes: racks go back (the job pauses) in
    time to finish the tube in hand and be stored within E, and are fetched again."""
    rig = Rig(db, exposure_limit_s=60.0, exposure_margin_s=5.0)
    job = rig.job(per_rack=8, racks=3)
    await rig.executor.run(job)
    assert job.state == "done" and job.done == 24
    fetches, longest = rig.journal.rack_stats()
    assert fetches > 3  # fetched again after going back
    assert longest <= 60.0
    for move in rig.movements():  # a tube's exposure is its rack's trip when it was placed
        assert move["exposure_s"] <= 60.0
    paused = [body for _, body in rig.recorder.published if body.get("state") == "paused"]
    assert paused and "would be out" in paused[0]["error"]


async def test_an_exposure_limit_too_short_for_one_tube_fails_the_job(
    db: sqlite3.Connection,
) -> None:
    """No rack shuttles in and out forever: a job that cannot pick a tube within E fails."""
    rig = Rig(db, exposure_limit_s=20.0, exposure_margin_s=0.0)
    job = rig.job(per_rack=2, racks=1)
    await rig.executor.run(job)
    assert job.state == "failed" and "within the exposure limit" in (job.error or "")
    assert rig.movements() == [] and rig.racks_home()
    assert rig.journal.claimed(t.barcode for t in job.tubes) == {}


def _store_room(tmp_path: Path) -> Config:
    """A room with the store's pick-chamber alarm after 10 s (the default waits 120 s)."""
    return parse_config(
        {
            "controller": {"site": "s", "id": "r", "state_dir": str(tmp_path)},
            "devices": [
                {
                    "id": "store-1",
                    "kind": "tube_store",
                    "driver": {"type": "opcua", "url": "opc.tcp://127.0.0.1:4840/"},
                    "alarms": {
                        "values": {
                            "pick_chamber_temperature_c": {
                                "high": {"limit": -15.0, "deadband": 1.0, "on_delay_s": 10}
                            }
                        }
                    },
                }
            ],
        }
    )


async def test_the_pick_chamber_alarm_sends_the_racks_back_until_it_clears(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    """Jobs follow the alarm engine's pick-chamber alarm, not raw readings: a warm reading
    does nothing until the alarm's on-delay has passed; then the racks go back, the job waits
    while the alarm is active and continues once it clears."""
    rig = Rig(db)
    job = rig.job(per_rack=4, racks=2)
    state = StateDb(path=tmp_path / "state.db")
    engine = AlarmEngine(
        config=_store_room(tmp_path),
        mqtt=rig.recorder,
        topics=Topics(prefix="b", site="s", controller="r"),
        db=state,
        clock=rig.cell.clock,
        wall=rig.cell.clock,
    )
    alarm = pick_chamber_alarm(engine, "store-1")
    seen: list[tuple[str, float, str | None, bool]] = []

    def poll_and_check() -> str | None:
        """The store's poller feeding the engine, then the executor's question."""
        warm = job.done >= 2 and not any(entry[0] == "paused" for entry in seen)
        reading = -8.0 if warm else -20.0
        engine.on_reading("store-1", Reading(values={"pick_chamber_temperature_c": reading}))
        reason = alarm()
        seen.append((job.state, reading, reason, rig.racks_home()))
        return reason

    rig.executor._pick_chamber = poll_and_check
    async with state, engine:
        await rig.executor.run(job)
    assert job.state == "done" and job.done == 8
    first_warm = next(i for i, (_, c, _, _) in enumerate(seen) if c > -15)
    assert seen[first_warm][2] is None  # warm, but the alarm's on-delay is running
    paused = [entry for entry in seen if entry[0] == "paused"]
    assert paused and all(home for *_, home in paused)  # waited with every rack back
    assert "store-1.pick_chamber_temperature_c.high active" in (paused[0][2] or "")
    assert rig.journal.rack_stats()[0] > 2  # fetched again after the alarm cleared


@pytest.mark.parametrize("fault", ["jam while carrying", "silent controller"])
async def test_a_stuck_picker_sends_the_racks_back_within_the_exposure_limit(
    db: sqlite3.Connection, fault: str
) -> None:
    """A picker that stays jammed or silent is retried only as long as the racks can still
    be back within E: then they go back, the job waits for the picker (alarm active), and
    when it homes again the interrupted tube is settled and the job finishes."""
    rig = Rig(db, exposure_limit_s=120.0, exposure_margin_s=10.0)
    job = rig.job(per_rack=3, racks=2)
    cell = rig.cell
    if fault == "jam while carrying":
        cell.jam_when_carrying = True  # the first tube's carry jams, the tube in the gripper
    else:

        def silence(body: dict[str, Any]) -> None:
            if body["done"] == 2 and body["state"] == "running" and not silenced:
                cell.silent = True  # from the third tube on
                silenced.append(True)

        silenced: list[bool] = []

        rig.recorder.on_progress = silence
    task = asyncio.create_task(rig.executor.run(job))
    while job.state != "paused":  # noqa: ASYNC110 - the job's own state, no event
        await asyncio.sleep(0)
    assert rig.racks_home()  # every rack back while the picker is still stuck
    assert "keeps failing" in (job.error or "") and "racks returned" in (job.error or "")
    assert rig.alarm_states("motion_fault")[-1] is True
    held = [t for t in job.tubes if t.state in ("picking", "held")]
    assert bool(held) == (fault == "jam while carrying") == (cell.picker.holding is not None)
    cell.jammed = cell.jam_when_carrying = cell.silent = False  # the operator clears it
    await task
    assert (job.state, job.done) == ("done", 6)
    moves = rig.movements()
    assert sorted(m["barcode"] for m in moves) == sorted(t.barcode for t in job.tubes)
    for move in moves:
        assert rig.cell.output.tubes[move["to"]["position"]] == move["barcode"]
    assert rig.journal.rack_stats()[1] <= 120.0
    assert rig.alarm_states("motion_fault")[-1] is False
    assert rig.racks_home() and cell.picker.holding is None


async def test_a_cancel_while_the_picker_is_stuck_ends_the_job_and_flags_the_held_tube(
    db: sqlite3.Connection,
) -> None:
    rig = Rig(db, exposure_limit_s=120.0, exposure_margin_s=10.0)
    job = rig.job(per_rack=3, racks=1)
    rig.cell.jam_when_carrying = True
    task = asyncio.create_task(rig.executor.run(job))
    while job.state != "paused":  # noqa: ASYNC110 - the job's own state, no event
        await asyncio.sleep(0)
    rig.journal.request_cancel(job)
    await task
    assert (job.state, rig.movements()) == ("cancelled", []) and rig.racks_home()
    (held,) = [t for t in job.tubes if t.state == "failed"]
    assert held.barcode == rig.cell.picker.holding  # flagged, not forgotten
    assert rig.alarm_states("tube_unaccounted") == [True]
    assert all(t.state == "cancelled" for t in job.tubes if t is not held)


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


async def test_racks_already_at_the_station_are_used_first(db: sqlite3.Connection) -> None:
    """A plan that starts with another rack (a resumed job's re-plan, say) does not send the
    racks at the station back only to fetch them again."""
    rig = Rig(db)
    job = rig.job(per_rack=2, racks=2)
    first, second = job.tubes[0].rack, job.tubes[2].rack
    await rig.executor._arrange(job, (second,))  # at the station, as a restart finds it

    def rack_by_rack(tubes: list[TubeTask], k: int) -> list[Batch]:
        return [Batch((r,), tuple(t for t in tubes if t.rack == r)) for r in (first, second)]

    rig.executor._batching = simple_batcher(rack_by_rack)
    await rig.executor.run(job)
    assert job.state == "done" and job.done == 4
    assert rig.journal.rack_stats()[0] == 2  # each rack fetched once
    assert [m["from"]["rack"] for m in rig.movements()] == [second, second, first, first]


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
