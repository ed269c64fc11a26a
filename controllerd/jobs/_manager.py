"""The pick-job service of the daemon: the `pick` and `cancel` commands, the queue, one runner.

`JobManager` validates a pick list against the local specimen map (unknown barcodes, tubes
claimed by another unfinished job, duplicates, the output rack and its free slots) and either
refuses it whole with every problem listed or journals and queues the job. A `pick` whose
`command_id` already has a job in the journal answers with that job and starts nothing (the
command router answers repeats from its own record; this covers a crash between the journal's
write and the router's). One runner task executes the jobs: at start-up it first reconciles
the racks with the store (controllerd.jobs._recovery) and resumes the interrupted job, if
any, before the queue (highest priority first).

Jobs pause while the store's pick-chamber temperature alarm is active (`pick_chamber_alarm`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import structlog

from controllerd._tasks import BackgroundTasks
from controllerd.alarms.engine import AlarmEngine
from controllerd.commands import CommandContext, CommandError, CommandRouter
from controllerd.config import Config, TubePickerConfig
from controllerd.jobs._executor import JobExecutor
from controllerd.jobs._journal import Journal
from controllerd.jobs._model import (
    FINAL_STATES,
    CancelRequest,
    Job,
    PickRequest,
    TubeTask,
)
from controllerd.jobs._planned import PlannerBatcher
from controllerd.jobs._progress import ProgressReporter
from controllerd.jobs._queue import JobQueue
from controllerd.jobs._recovery import recover
from controllerd.mqtt import Publisher
from controllerd.outbox import Outbox
from controllerd.store import TubeStore
from controllerd.topics import Topics
from drivers import Backoff, DriverError
from firmware_bridge import PickerDriver

_log = structlog.get_logger("controllerd.jobs")

#: The alarm rules of the pick chamber's temperature that send racks back (most severe first).
PICK_CHAMBER_RULES = ("high_high", "high")

#: How many problems of one kind a refusal lists before "and N more".
_LIST_AT_MOST = 20


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_AT_MOST])
    more = len(items) - _LIST_AT_MOST
    return f"{shown} and {more} more" if more > 0 else shown


def pick_chamber_alarm(alarms: AlarmEngine, store_id: str) -> Callable[[], str | None]:
    """Why racks must not be at the station now: the store's pick-chamber temperature alarm
    (`{store}.pick_chamber_temperature_c.high` or `.high_high`) is active, or None.

    The alarm's condition counts whatever masks it (shelved, suppressed): shelving silences
    the pagers, not the specimens' protection. Its limit, deadband and on-delay are the
    store's alarm rules (`[devices.alarms]`, default -15 °C after 120 s).
    """
    names = [f"{store_id}.pick_chamber_temperature_c.{rule}" for rule in PICK_CHAMBER_RULES]

    def check() -> str | None:
        for name in names:
            point = alarms.points.get(name)
            if point is None:
                continue
            payload = alarms.payload(point)
            if payload.active:
                return f"{name} active ({payload.value} °C, limit {payload.limit} °C)"
        return None

    return check


class JobManager:
    """`async with JobManager(...) as jobs:`; `jobs.register(router)` adds pick and cancel."""

    def __init__(
        self,
        *,
        config: Config,
        db: sqlite3.Connection,
        outbox: Outbox,
        mqtt: Publisher,
        topics: Topics,
        stores: dict[str, TubeStore],
        pickers: dict[str, PickerDriver],
        alarms: AlarmEngine | None = None,
    ) -> None:
        self._cfg = config.jobs
        self._config = config
        self.batcher: PlannerBatcher | None = None
        self.journal = Journal(db)
        self.progress = ProgressReporter(mqtt=mqtt, topics=topics)
        self.queue = JobQueue()
        self._jobs: dict[str, Job] = {}
        self.current: Job | None = None
        self._background = BackgroundTasks()
        self._outbox = outbox
        self._alarms = alarms
        #: the supervisor's device dicts, filled while devices come up; read on entering
        self._stores = stores
        self._pickers = pickers
        self.store: TubeStore | None = None
        self.executor: JobExecutor | None = None
        self._ready = False

    def _build_executor(self) -> None:
        stores, pickers = self._stores, self._pickers
        store_id = self._cfg.store or (next(iter(stores)) if len(stores) == 1 else None)
        picker_id = self._cfg.picker or (next(iter(pickers)) if len(pickers) == 1 else None)
        self.store = stores.get(store_id) if store_id else None
        if self.store is None or picker_id is None or picker_id not in pickers:
            _log.info("no pick jobs in this room (needs one tube_store and one tube_picker)")
            return
        store = self.store
        if self._cfg.planner == "worker":
            device = self._config.device(picker_id)
            motion = device.motion if isinstance(device, TubePickerConfig) else None

            def rack_place(rack: str) -> tuple[int, int] | None:
                record = store.specimens.rack(store.device.id, rack)
                return None if record is None else (record.tower, record.shelf)

            self.batcher = PlannerBatcher(config=self._cfg, motion=motion, rack_place=rack_place)
        self.executor = JobExecutor(
            config=self._cfg,
            store_id=store.device.id,
            picker_id=picker_id,
            store=store,
            motion=pickers[picker_id].motion,
            journal=self.journal,
            outbox=self._outbox,
            progress=self.progress,
            alarms=self._alarms,
            pick_chamber=None
            if self._alarms is None
            else pick_chamber_alarm(self._alarms, store.device.id),
            batching=self.batcher,
        )

    def register(self, router: CommandRouter) -> None:
        router.register("pick", model=PickRequest, permission="pick", handler=self.pick)
        router.register("cancel", model=CancelRequest, permission="cancel", handler=self.cancel)

    async def __aenter__(self) -> Self:
        self._build_executor()
        self._ready = True
        if self.batcher is not None:
            await self.batcher.__aenter__()
        await self._background.start()
        self._background.spawn(self._run(), name="jobs-runner")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._background.close()
        finally:
            if self.batcher is not None:
                await self.batcher.__aexit__(None, None, None)

    # ------------------------------------------------------------------ commands

    async def pick(self, cmd: PickRequest, ctx: CommandContext) -> dict[str, Any]:
        if not self._ready:
            raise CommandError("pick jobs are still starting up: send again with a new command_id")
        if self.executor is None or self.store is None:
            raise CommandError("this room has no tube store and picker for pick jobs")
        earlier = self.journal.job_of_command(ctx.command_id)
        if earlier is not None:
            _log.info("pick repeated: answering with its job", job=earlier.job)
            return self._accepted(earlier)
        problems = []
        if len(cmd.barcodes) > self._cfg.max_tubes:
            problems.append(
                f"barcodes: {len(cmd.barcodes)} tubes, at most {self._cfg.max_tubes} per job"
            )
            raise CommandError("; ".join(problems))
        duplicates = sorted(code for code, n in Counter(cmd.barcodes).items() if n > 1)
        if duplicates:
            problems.append(f"duplicate barcodes: {_listing(duplicates)}")
        store_id = self.store.device.id
        specimens = self.store.specimens
        tubes: list[TubeTask] = []
        unknown: list[str] = []
        for barcode in dict.fromkeys(cmd.barcodes):
            where = specimens.where(barcode)
            if where is None or where.store != store_id:
                unknown.append(barcode)
                continue
            tubes.append(TubeTask(barcode, where.store, where.rack, where.position))
        if unknown:
            problems.append(f"unknown barcodes: {_listing(unknown)}")
        claimed = self.journal.claimed(tube.barcode for tube in tubes)
        if claimed:
            problems.append(
                "claimed by another job: "
                + _listing([f"{code} ({job})" for code, job in sorted(claimed.items())])
            )
        output = specimens.ports(store_id).get(self._cfg.output_port)
        if output is None:
            problems.append(f"no output rack at port {self._cfg.output_port}")
        elif cmd.output_rack is not None and cmd.output_rack != output:
            problems.append(
                f"output_rack: {cmd.output_rack} is not at port {self._cfg.output_port} "
                f"(it holds {output})"
            )
        else:
            free = 96 - len(self.journal.used_output_positions(output))
            reserved = sum(
                len(job.pending()) for job in self._jobs.values() if job.output_rack == output
            )
            if len(cmd.barcodes) > free - reserved:
                problems.append(
                    f"output rack {output} has room for {max(0, free - reserved)} more tubes"
                )
        if problems:
            raise CommandError("; ".join(problems))
        assert output is not None
        job = Job(
            job=f"job-{uuid.uuid4().hex[:12]}",
            command_id=ctx.command_id,
            operator=ctx.operator,
            priority=cmd.priority,
            order=self.journal.next_order(),
            state="queued",
            output_rack=output,
            tubes=tubes,
        )
        self.journal.create(job)
        self._jobs[job.job] = job
        await self.queue.put(job)
        await self.progress.publish(job)
        _log.info("job queued", job=job.job, tubes=job.total, priority=job.priority)
        return self._accepted(job)

    def _accepted(self, job: Job) -> dict[str, Any]:
        return {
            "job": job.job,
            "total": job.total,
            "output_rack": job.output_rack,
            "queue_position": self.queue.position(job.job) if job.job in self.queue else 0,
        }

    async def cancel(self, cmd: CancelRequest, ctx: CommandContext) -> dict[str, Any]:
        if not self._ready:
            raise CommandError("pick jobs are still starting up: send again with a new command_id")
        job = self._jobs.get(cmd.job)
        if job is None:
            raise CommandError(f"job: no unfinished job '{cmd.job}'")
        if job.state in FINAL_STATES:
            raise CommandError(f"job: '{cmd.job}' is already {job.state}")
        self.journal.request_cancel(job)
        if self.queue.remove(job.job) is not None:
            for tube in job.tubes:
                self.journal.tube_state(job.job, tube, "cancelled")
            self.journal.set_state(job, "cancelled", f"cancelled by {ctx.operator}")
            del self._jobs[job.job]
            await self.progress.publish(job)
            return {"job": job.job, "state": "cancelled"}
        _log.info("cancel requested: finishing the current tube", job=job.job)
        return {"job": job.job, "state": "cancelling"}

    # ------------------------------------------------------------------ the runner

    async def _run(self) -> None:
        unfinished = self.journal.unfinished()
        for job in unfinished:
            self._jobs[job.job] = job
        if self.executor is not None and self.store is not None and self.journal.racks_out():
            await self._recover(self.executor, self.store)
        # The interrupted job (running or paused when the daemon stopped) goes first: its
        # racks may be at the station and its tube in the gripper.
        interrupted = [job for job in unfinished if job.state in ("running", "paused")]
        if self.executor is not None and self.executor.station and not interrupted:
            # Left out by a job that ended without them going back (the store refused): no
            # job will use them, so back they go before anything else.
            _log.warning("racks at the station after restart, no job to resume: returning them")
            try:
                await self.executor.return_all("recovery")
            except DriverError as exc:
                _log.error("racks not returned", error=str(exc), station=self.executor.station)
        for job in unfinished:
            if job not in interrupted:
                await self.queue.put(job)
        for job in interrupted:
            await self._execute(job)
        while True:
            await self._execute(await self.queue.get())

    async def _recover(self, executor: JobExecutor, store: TubeStore) -> None:
        """Where the racks marked out are, before any job runs (retried while the store does
        not say: no job may run without knowing)."""
        backoff = Backoff(initial_s=5.0, max_s=60.0)
        while True:
            try:
                await recover(
                    executor=executor,
                    journal=self.journal,
                    store=store,
                    store_id=store.device.id,
                )
                return
            except TimeoutError:
                _log.error(
                    "racks out not found in the store's inventory in time: jobs wait",
                    racks=[rack for _, rack in self.journal.racks_out()],
                )
                await asyncio.sleep(backoff.next_delay())

    async def _execute(self, job: Job) -> None:
        if self.executor is None:
            return
        self.current = job
        try:
            await self.executor.run(job)
        finally:
            self.current = None
            if job.state in FINAL_STATES:
                self._jobs.pop(job.job, None)
