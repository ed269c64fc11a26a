"""The job journal: every job, tube and robot step, in the outbox's SQLite file.

Each physical step is written before it starts and after it ends (`job_steps`): the store's
`retrieve`, `scan_rack` and `store` of a rack; the picker's `home`, `move` (over a tube),
`scan`, `pick`, `carry` (to the output slot) and `place` of a tube, with a `fault` row for each
failed attempt; then `movement recorded`. Each tube's state moves pending -> picking (output
slot reserved) -> held (in the gripper) -> done. The
`done` write happens inside the outbox's transaction that records the tube's movement, so after
a `kill -9` or a power cut a tube is either done with its movement recorded, or not done and
without one: the restarted daemon reconciles the rest with the store and the picker
(controllerd.jobs._recovery). Every write is its own transaction (autocommit connection, WAL,
synchronous=FULL).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

from controllerd.jobs._model import FINAL_STATES, Job, JobState, TubeTask

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job TEXT PRIMARY KEY,
    command_id TEXT NOT NULL,
    operator TEXT NOT NULL,
    priority INTEGER NOT NULL,
    ord INTEGER NOT NULL,
    state TEXT NOT NULL,
    output_rack TEXT NOT NULL,
    error TEXT,
    cancel INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_command_id ON jobs (command_id);
CREATE TABLE IF NOT EXISTS job_tubes (
    job TEXT NOT NULL,
    idx INTEGER NOT NULL,
    barcode TEXT NOT NULL,
    store TEXT NOT NULL,
    rack TEXT NOT NULL,
    position TEXT NOT NULL,
    state TEXT NOT NULL,
    out_rack TEXT,
    out_position TEXT,
    error TEXT,
    PRIMARY KEY (job, barcode)
);
CREATE TABLE IF NOT EXISTS job_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    step TEXT NOT NULL,
    subject TEXT NOT NULL,
    phase TEXT NOT NULL,
    ts REAL NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS rack_trips (
    store TEXT NOT NULL,
    rack TEXT NOT NULL,
    out_since REAL,
    exposure_s REAL NOT NULL DEFAULT 0,
    max_trip_s REAL NOT NULL DEFAULT 0,
    fetches INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, rack)
);
CREATE TABLE IF NOT EXISTS output_slots (
    rack TEXT NOT NULL,
    position TEXT NOT NULL,
    barcode TEXT NOT NULL,
    job TEXT NOT NULL,
    PRIMARY KEY (rack, position)
);
"""


class Journal:
    """Reads and writes the journal tables on the jobs database connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(_SCHEMA)

    def _tx(self, write: Callable[[sqlite3.Connection], None]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            write(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ------------------------------------------------------------------ jobs

    def next_order(self) -> int:
        (order,) = self._db.execute("SELECT COALESCE(MAX(ord), 0) + 1 FROM jobs").fetchone()
        return int(order)

    def create(self, job: Job) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO jobs (job, command_id, operator, priority, ord, state, output_rack,"
                " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.job,
                    job.command_id,
                    job.operator,
                    job.priority,
                    job.order,
                    job.state,
                    job.output_rack,
                    time.time(),
                ),
            )
            db.executemany(
                "INSERT INTO job_tubes (job, idx, barcode, store, rack, position, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (job.job, i, t.barcode, t.store, t.rack, t.position, t.state)
                    for i, t in enumerate(job.tubes)
                ],
            )

        self._tx(write)

    def set_state(self, job: Job, state: JobState, error: str | None = None) -> None:
        job.state = state
        job.error = error
        self._db.execute(
            "UPDATE jobs SET state = ?, error = ? WHERE job = ?", (state, error, job.job)
        )

    def request_cancel(self, job: Job) -> None:
        job.cancel_requested = True
        self._db.execute("UPDATE jobs SET cancel = 1 WHERE job = ?", (job.job,))

    _JOB_COLUMNS = "job, command_id, operator, priority, ord, state, output_rack, error, cancel"

    def unfinished(self) -> list[Job]:
        """Jobs not yet done, cancelled or failed, oldest first, with their tubes."""
        rows = self._db.execute(f"SELECT {self._JOB_COLUMNS} FROM jobs ORDER BY ord").fetchall()
        return [self._job(row) for row in rows if row[5] not in FINAL_STATES]

    def job_of_command(self, command_id: str) -> Job | None:
        """The job a `pick` with this `command_id` created, if any (with its tubes)."""
        row = self._db.execute(
            f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE command_id = ?", (command_id,)
        ).fetchone()
        return None if row is None else self._job(row)

    def _job(self, row: tuple[Any, ...]) -> Job:
        job = Job(
            job=row[0],
            command_id=row[1],
            operator=row[2],
            priority=row[3],
            order=row[4],
            state=row[5],
            output_rack=row[6],
            error=row[7],
            cancel_requested=bool(row[8]),
        )
        job.tubes = [
            TubeTask(*tube)
            for tube in self._db.execute(
                "SELECT barcode, store, rack, position, state, out_rack, out_position, error"
                " FROM job_tubes WHERE job = ? ORDER BY idx",
                (job.job,),
            )
        ]
        return job

    def claimed(self, barcodes: Iterable[str]) -> dict[str, str]:
        """Barcode -> job, for tubes that an unfinished job still has to move."""
        wanted = list(barcodes)
        claimed: dict[str, str] = {}
        for lo in range(0, len(wanted), 500):
            chunk = wanted[lo : lo + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT t.barcode, t.job FROM job_tubes t JOIN jobs j ON j.job = t.job"
                f" WHERE t.barcode IN ({marks})"
                f" AND t.state IN ('pending', 'picking', 'held')"
                f" AND j.state NOT IN ('done', 'cancelled', 'failed')",
                chunk,
            ).fetchall()
            claimed.update({barcode: job for barcode, job in rows})
        return claimed

    # ------------------------------------------------------------------ steps and tubes

    def step(self, job: str, step: str, subject: str, phase: str, **detail: object) -> None:
        """One robot step: `before` it starts, `after` it ends, `fault` for a failed attempt."""
        self._db.execute(
            "INSERT INTO job_steps (job, step, subject, phase, ts, detail) VALUES (?,?,?,?,?,?)",
            (job, step, subject, phase, time.time(), json.dumps(detail) if detail else None),
        )

    def steps(self, job: str) -> list[tuple[str, str, str]]:
        """(step, subject, phase) of a job in order (for tests and post-mortems)."""
        rows = self._db.execute(
            "SELECT step, subject, phase FROM job_steps WHERE job = ? ORDER BY id", (job,)
        ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def used_output_positions(self, rack: str) -> set[str]:
        rows = self._db.execute("SELECT position FROM output_slots WHERE rack = ?", (rack,))
        return {row[0] for row in rows}

    def reserve_output(self, job: str, tube: TubeTask, rack: str, position: str) -> None:
        """The tube is about to be picked and will go to (rack, position)."""

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO output_slots (rack, position, barcode, job) VALUES (?, ?, ?, ?)",
                (rack, position, tube.barcode, job),
            )
            db.execute(
                "UPDATE job_tubes SET state = 'picking', out_rack = ?, out_position = ?"
                " WHERE job = ? AND barcode = ?",
                (rack, position, job, tube.barcode),
            )

        self._tx(write)
        tube.state, tube.out_rack, tube.out_position = "picking", rack, position

    def tube_state(
        self,
        job: str,
        tube: TubeTask,
        state: str,
        error: str | None = None,
        *,
        release: bool = True,
    ) -> None:
        """pending, held, failed or cancelled; the first and last two release the tube's output
        slot unless `release` is False (something physically occupies it)."""
        release = release and state in ("pending", "failed", "cancelled")

        def write(db: sqlite3.Connection) -> None:
            if release and tube.out_position is not None:
                db.execute(
                    "DELETE FROM output_slots WHERE rack = ? AND position = ? AND barcode = ?",
                    (tube.out_rack, tube.out_position, tube.barcode),
                )
            db.execute(
                "UPDATE job_tubes SET state = ?, error = ? WHERE job = ? AND barcode = ?",
                (state, error, job, tube.barcode),
            )

        self._tx(write)
        tube.state = state  # type: ignore[assignment]
        tube.error = error
        if release:
            tube.out_rack = tube.out_position = None

    def done_writer(self, job: str, tube: TubeTask) -> Callable[[sqlite3.Connection], None]:
        """The `done` write, for the outbox transaction that records the tube's movement."""

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE job_tubes SET state = 'done' WHERE job = ? AND barcode = ?",
                (job, tube.barcode),
            )
            db.execute(
                "INSERT INTO job_steps (job, step, subject, phase, ts) VALUES (?,?,?,?,?)",
                (job, "movement", tube.barcode, "recorded", time.time()),
            )

        return write

    # ------------------------------------------------------------------ rack exposure

    def rack_out(self, store: str, rack: str, since: float) -> None:
        self._db.execute(
            "INSERT INTO rack_trips (store, rack, out_since, fetches) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (store, rack) DO UPDATE SET out_since = excluded.out_since,"
            " fetches = fetches + 1",
            (store, rack, since),
        )

    def rack_in(self, store: str, rack: str, now: float) -> float:
        """The rack is back in the cold: add its trip to its exposure; returns the trip's s."""
        since = self.rack_out_since(store, rack)
        trip = max(0.0, now - since) if since is not None else 0.0
        self._db.execute(
            "UPDATE rack_trips SET out_since = NULL, exposure_s = exposure_s + ?,"
            " max_trip_s = MAX(max_trip_s, ?) WHERE store = ? AND rack = ?",
            (trip, trip, store, rack),
        )
        return trip

    def rack_out_since(self, store: str, rack: str) -> float | None:
        row = self._db.execute(
            "SELECT out_since FROM rack_trips WHERE store = ? AND rack = ?", (store, rack)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def racks_out(self) -> list[tuple[str, str]]:
        rows = self._db.execute(
            "SELECT store, rack FROM rack_trips WHERE out_since IS NOT NULL ORDER BY rack"
        )
        return [(str(store), str(rack)) for store, rack in rows]

    def rack_stats(self) -> tuple[int, float]:
        """(rack fetches, longest trip in s) over everything journalled."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(fetches), 0), COALESCE(MAX(max_trip_s), 0) FROM rack_trips"
        ).fetchone()
        return int(row[0]), float(row[1])
