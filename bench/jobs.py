"""Pick-job benchmark: a 300-tube job executed by the daemon's executor, rack batching against
first-come-first-served, side by side in one run.

The executor (controllerd.jobs.JobExecutor, with its real journal and outbox in SQLite) drives
the simulators' own store and picker models (`simulators.store`'s StoreModel and
`simulators.picker`'s PickerModel sharing one PickStation) through the adapters in
tests/unit/jobs/_simulated.py, on a virtual clock: every robot operation takes its simulated
duration at once, so the speed-up is as large as the machine allows and the figures are in
simulated time. What is not simulated here: OPC UA, the serial link, MQTT (the outbox's
publisher accepts everything), the pick chamber warming.

Three orders: the planner's rack batches (`rack_batches` form in its worker, 2 s budget: the
daemon's default), the simple batching (each rack once, K at a time, fullest first: the
fallback) and first come, first served (tubes in request order, a rack fetched when its tube
comes up, the one at the station longest going back).

The store: 60 racks (6 towers x 10 shelves, 75 % of positions filled, seed 1); the job: 300
tubes drawn at random from all racks, in random request order; K = 4 rack ports; exposure limit
E = 900 s with a 60 s margin. The output rack is swapped for an empty one (no time charged)
whenever it is full. Results go to `bench/RESULTS.md` under `## Pick jobs`.

Run: `.venv/bin/python bench/jobs.py [--tubes 300] [--seed 1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from controllerd.config import JobsSection, StoreGeometry
from controllerd.jobs import (
    Batcher,
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
from simulators._station import SimRack
from tests.unit.jobs._simulated import MOTION, SimulatedCell

PLANNER = "planner rack batches"
SIMPLE = "simple rack batches"
FCFS = "first come, first served"


class _Accepting:
    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        return True

    async def publish_confirmed(
        self, topic: str, payload: bytes, *, timeout_s: float = 10.0
    ) -> str | None:
        return None


class _SwappingExecutor(JobExecutor):
    """Swaps in an empty output rack when the current one is full (the operator's job)."""

    def __init__(self, *, cell: SimulatedCell, db: sqlite3.Connection, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._cell = cell
        self._db = db
        self.swaps = 0

    def next_output_position(self, rack: str) -> str:
        if len(self._journal.used_output_positions(rack)) >= 96:
            self._db.execute("DELETE FROM output_slots WHERE rack = ?", (rack,))
            self._cell.station.racks["OUT"] = SimRack.empty(rack)
            self.swaps += 1
        return super().next_output_position(rack)


async def run_policy(name: str, *, tubes: int, seed: int, workdir: Path) -> dict[str, float]:
    cell = SimulatedCell(racks=60, seed=seed)
    config = JobsSection(
        exposure_limit_s=900.0,
        exposure_margin_s=60.0,
        planner_budget_ms=2000.0,
        store_geometry=StoreGeometry(towers=6),
    )
    async with contextlib.AsyncExitStack() as stack:
        batching: Batcher
        if name == PLANNER:
            batching = await stack.enter_async_context(
                PlannerBatcher(config=config, motion=MOTION, rack_place=cell.store_model.home.get)
            )
        else:
            batching = simple_batcher(plan_batches if name == SIMPLE else fcfs_batches)
        return await _run(
            cell, config, batching, name=name, tubes=tubes, seed=seed, workdir=workdir
        )


async def _run(
    cell: SimulatedCell,
    config: JobsSection,
    batching: Batcher,
    *,
    name: str,
    tubes: int,
    seed: int,
    workdir: Path,
) -> dict[str, float]:
    rng = random.Random(seed)
    everything = [
        TubeTask(code, "store-1", rack, position)
        for rack in sorted(cell.store_model.racks)
        for position, code in sorted(cell.rack_tubes(rack).items())
    ]
    chosen = rng.sample(everything, tubes)
    db = open_state_db(workdir / f"{name}.sqlite3")
    try:
        journal = Journal(db)
        mqtt = _Accepting()
        outbox = Outbox(db=db, mqtt=mqtt, topic="bench")
        executor = _SwappingExecutor(
            cell=cell,
            db=db,
            config=config,
            store_id="store-1",
            picker_id="picker-1",
            store=cell,
            motion=cell,
            journal=journal,
            outbox=outbox,
            progress=ProgressReporter(
                mqtt=mqtt, topics=Topics(prefix="b", site="s", controller="r")
            ),
            batching=batching,
            clock=cell.clock,
            sleep=cell.clock.sleep,
        )
        job = Job("bench", "c", "bench", 5, 1, "queued", "OUT-0001", tubes=chosen)
        journal.create(job)
        start_sim, start_wall = cell.clock.now, time.perf_counter()
        await executor.run(job)
        sim_s = cell.clock.now - start_sim
        wall_s = time.perf_counter() - start_wall
        fetches, max_trip = journal.rack_stats()
        (max_tube,) = db.execute(
            "SELECT MAX(json_extract(payload, '$.exposure_s')) FROM outbox"
        ).fetchone()
        assert job.state == "done", (job.state, job.error)
        return {
            "tubes": job.done,
            "sim_h": sim_s / 3600,
            "tubes_per_h": job.done / (sim_s / 3600),
            "fetches": fetches,
            "max_rack_exposure_s": max_trip,
            "max_tube_exposure_s": float(max_tube),
            "wall_s": wall_s,
            "speedup": sim_s / wall_s,
            "swaps": executor.swaps,
        }
    finally:
        db.close()


async def main() -> None:
    # Here, not at the top: the planner's worker process re-imports this module (spawn), and
    # bench/ is on sys.path only in the process started as a script.
    from _results import write_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tubes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            name: await run_policy(name, tubes=args.tubes, seed=args.seed, workdir=Path(tmp))
            for name in (PLANNER, SIMPLE, FCFS)
        }
    planned, simple, fcfs = results[PLANNER], results[SIMPLE], results[FCFS]
    lines = [
        f"{args.tubes} tubes drawn at random from 60 racks (seed {args.seed}), K = 4 ports, "
        "E = 900 s with a 60 s margin (racks go back when finishing another tube and returning "
        "them would leave less); the daemon's executor, journal (an fsync per step) and outbox "
        "on the simulators' store and picker models in virtual time (`bench/jobs.py`).",
        "",
        "| order | tubes/hour | rack fetches | max rack exposure (s) | max tube exposure (s) "
        "| job (simulated h) | speed-up over real time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['tubes_per_h']:.0f} | {r['fetches']:.0f} | "
            f"{r['max_rack_exposure_s']:.0f} | {r['max_tube_exposure_s']:.0f} | "
            f"{r['sim_h']:.2f} | {r['speedup']:.0f}x |"
        )
    lines += [
        "",
        f"The planner's rack batches (the daemon's default, `[jobs].planner = \"worker\"`): "
        f"{planned['tubes_per_h'] / fcfs['tubes_per_h']:.1f}x the tubes per hour of first come, "
        f"first served with {fcfs['fetches'] / planned['fetches']:.1f}x fewer rack fetches; the "
        f"simple batching (`plan_batches`, its fallback) "
        f"{simple['tubes_per_h'] / fcfs['tubes_per_h']:.1f}x. Exposure is per rack trip (fetch "
        "requested to stored); a tube's is its rack's trip until the tube is placed.",
    ]
    print("\n".join(lines))
    write_section("Pick jobs", lines)


if __name__ == "__main__":
    asyncio.run(main())
