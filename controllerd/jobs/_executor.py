"""Runs one pick job on the store and the picker, step by journalled step.

Per batch of racks (see `_batches`; those using racks already at the station first): racks not
needed go back (scanned first, so the store's inventory shows what was taken), missing ones are
fetched into free ports. Per tube: move over
it, scan and verify the barcode (a wrong or unreadable one raises `{picker}.barcode_mismatch`
and leaves the tube where it is), reserve an output slot, pick, carry it to the slot, place,
and record the movement in the outbox in the same transaction as the tube's `done`.

The racks go back first, and the job shows `paused` and continues afterwards, when
* the pick chamber's temperature alarm is active (`pick_chamber`, from the alarm engine): the
  job waits until it is not;
* a rack at the station could not finish one more tube and still be back in the store within
  E less the margin (`_exposure`); a rack is not fetched while the racks already out could not
  afford its fetch. A job that cannot pick a single tube within E twice running fails;
* the picker keeps failing a motion for longer than the racks can wait (`_motion`): the job
  waits until the picker homes again, then settles the tube it was moving (below).

A cancel finishes the current tube, returns the racks and ends the job `cancelled`. A tube
whose move was interrupted (a crash, a stuck picker) is settled before anything else when the
job (re)starts (controllerd.jobs._recovery.settle_tube).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import structlog

from controllerd.alarms import Severity
from controllerd.config import JobsSection
from controllerd.jobs._batches import Batch, Batcher, plan_batches, simple_batcher
from controllerd.jobs._errors import JobFailed, PickerStuck
from controllerd.jobs._exposure import ExposureBudget
from controllerd.jobs._journal import Journal
from controllerd.jobs._model import Job, TubeTask
from controllerd.jobs._motion import Gantry, MotionOps
from controllerd.jobs._progress import ProgressReporter
from controllerd.jobs._recovery import settle_tube
from controllerd.jobs._station import RackStation, StoreOps
from controllerd.outbox import Outbox
from drivers import Backoff, DriverError
from firmware_bridge import PickerStatus
from inventory.events import Location

_log = structlog.get_logger("controllerd.jobs")

ROWS = "ABCDEFGH"
COLUMNS = 12
OUTPUT_POSITIONS = tuple(f"{row}{col}" for row in ROWS for col in range(1, COLUMNS + 1))

#: Why racks go back before the next tube, and what the job waits for then.
HoldKind = Literal["chamber", "exposure", "picker"]


class AlarmSink(Protocol):
    """controllerd.alarms.engine.AlarmEngine.external."""

    def external(
        self, alarm: str, *, device: str, active: bool, severity: Severity, text: str
    ) -> None: ...


class JobExecutor:
    """Executes jobs one at a time; `station` remembers which rack is in which port."""

    def __init__(
        self,
        *,
        config: JobsSection,
        store_id: str,
        picker_id: str,
        store: StoreOps,
        motion: MotionOps,
        journal: Journal,
        outbox: Outbox,
        progress: ProgressReporter,
        alarms: AlarmSink | None = None,
        pick_chamber: Callable[[], str | None] | None = None,
        batching: Batcher | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._cfg = config
        self._store_id = store_id
        self._picker_id = picker_id
        self._motion = motion
        self._journal = journal
        #: the job journal (recovery settles tubes through it)
        self.journal = journal
        self._outbox = outbox
        self._progress = progress
        self._alarms = alarms
        #: why the pick chamber is unsafe for racks now (its alarm is active), or None
        self._pick_chamber = pick_chamber
        self._batching = batching or simple_batcher(plan_batches)
        #: wall-clock seconds (exposure is measured with it; the bench runs it on sim time)
        self._clock = clock
        self._sleep = sleep
        self.budget = ExposureBudget(
            limit_s=config.exposure_limit_s, margin_s=config.exposure_margin_s
        )
        self._gantry = Gantry(
            motion=motion,
            journal=journal,
            picker_id=picker_id,
            alarm=lambda name, active, text: self.alarm(name, active=active, text=text),
            give_up=self._give_up,
            sleep=sleep,
        )
        self._racks = RackStation(
            store=store,
            store_id=store_id,
            ports=config.rack_ports,
            journal=journal,
            budget=self.budget,
            clock=clock,
        )
        #: rack -> port, for the racks at the pick station
        self.station = self._racks.racks
        self._job: Job | None = None
        self._log = _log.bind(device=picker_id)

    # ------------------------------------------------------------------ geometry

    def xy(self, port: str, position: str) -> tuple[float, float]:
        ox, oy = self._cfg.port_origins_mm[port]
        row, column = ROWS.index(position[0]), int(position[1:]) - 1
        return ox + column * self._cfg.pitch_mm, oy + row * self._cfg.pitch_mm

    def now(self) -> float:
        """The executor's clock (exposure is measured on it)."""
        return self._clock()

    @property
    def output_port(self) -> str:
        return self._cfg.output_port

    async def status(self) -> PickerStatus:
        """The picker's state (retried until it answers, within the racks' budget)."""
        return await self._gantry.status()

    # ------------------------------------------------------------------ the job

    async def run(self, job: Job) -> None:
        """Run a job until it is done, cancelled or failed (its state says which)."""
        log = self._log.bind(job=job.job)
        self._job = job
        self._journal.set_state(job, "running")
        self._progress.started(job)
        await self._progress.publish(job)
        log.info("job started", tubes=job.total, pending=len(job.pending()))
        try:
            await self._work(job)
        except (JobFailed, DriverError) as exc:
            log.error("job failed", error=str(exc))
            try:
                await self.return_all(job.job)
            except DriverError as back:
                log.error("racks not returned", error=str(back))
            self._finish(job, failed=str(exc))
        else:
            self._finish(job)
        finally:
            self._job = None
        await self._progress.publish(job)
        log.info("job ended", state=job.state, done=job.done, total=job.total)

    async def _work(self, job: Job) -> None:
        log = self._log.bind(job=job.job)
        stalled = 0
        while True:
            settled = self._settled(job)
            hold: tuple[HoldKind, str] | None
            try:
                await self._gantry.ensure_homed(job.job)
                await self.settle_interrupted(job)
                pending = [tube for tube in job.tubes if tube.state == "pending"]
                if job.cancel_requested or not pending:
                    break
                batches = await self._batching(pending, self._k)
                hold = await self._run_batches(job, self._station_first(batches))
            except PickerStuck as exc:
                hold = ("picker", f"{exc}: racks returned, waiting for the picker")
            if hold is None:
                continue
            kind, reason = hold
            await self.return_all(job.job)
            if job.cancel_requested:
                break
            if kind == "exposure":
                stalled = stalled + 1 if self._settled(job) == settled else 0
                if stalled >= 2:
                    raise JobFailed(f"no tube can be picked within the exposure limit: {reason}")
            self._journal.set_state(job, "paused", reason)
            await self._progress.publish(job)
            log.warning("job paused: racks returned", reason=reason)
            if kind == "picker":
                if not await self._gantry.home_when_able(lambda: job.cancel_requested):
                    break
            elif kind == "chamber":
                await self._wait_until_safe(job)
            self._journal.set_state(job, "running")
            await self._progress.publish(job)
            log.info("job resumed")
        await self.return_all(job.job)

    def _station_first(self, batches: list[Batch]) -> list[Batch]:
        """The batches using the racks already at the station first (after a restart, say):
        they are not sent back only to be fetched again."""
        return sorted(batches, key=lambda batch: -len(self.station.keys() & set(batch.racks)))

    @property
    def _k(self) -> int:
        return len(self._cfg.rack_ports)

    @staticmethod
    def _settled(job: Job) -> int:
        return sum(1 for tube in job.tubes if tube.state in ("done", "failed"))

    def _finish(self, job: Job, failed: str | None = None) -> None:
        for tube in job.tubes:
            if tube.state == "pending":
                self._journal.tube_state(job.job, tube, "cancelled")
            elif tube.state in ("picking", "held"):  # the picker never came back to settle it
                text = (
                    f"{tube.barcode}: its move was interrupted and never settled (gripper, "
                    f"slot {tube.out_rack} {tube.out_position} or source): check by hand"
                )
                self.alarm("tube_unaccounted", active=True, text=text)
                self._journal.tube_state(job.job, tube, "failed", text, release=False)
        left = [tube.barcode for tube in job.tubes if tube.state == "failed"]
        if failed is not None:
            self._journal.set_state(job, "failed", failed)
        elif job.cancel_requested:
            self._journal.set_state(job, "cancelled", "cancelled by operator")
        elif left:
            self._journal.set_state(
                job, "failed", f"{len(left)} tube(s) left in place: {', '.join(left)}"
            )
        else:
            self._journal.set_state(job, "done")

    async def _run_batches(self, job: Job, batches: list[Batch]) -> tuple[HoldKind, str] | None:
        """Work through the batches; why the racks must go back first, if they must."""
        for batch in batches:
            await self._arrange(job, batch.racks)
            for tube in batch.tubes:
                if job.cancel_requested:
                    return None
                if tube.state != "pending" or tube.rack not in self.station:
                    continue  # a rack not fetched this time: its tubes wait for the next round
                hold = self._must_return()
                if hold is not None:
                    return hold
                await self.pick_tube(job, tube)
                await self._progress.publish(job)
        return None

    def _must_return(self) -> tuple[HoldKind, str] | None:
        if self._pick_chamber is not None:
            reason = self._pick_chamber()
            if reason is not None:
                return "chamber", reason
        reason = self.budget.overrun(
            self._racks.out_since(), now=self._clock(), work_s=self.budget.tube.value
        )
        return None if reason is None else ("exposure", reason)

    def _give_up(self, delay_s: float) -> str | None:
        """Why a failing motion must not be tried again after `delay_s` (see `_motion`)."""
        out = self._racks.out_since()
        if not out:  # nothing exposed: keep trying, unless the job is cancelled
            job = self._job
            return "the job is cancelled" if job is not None and job.cancel_requested else None
        return self.budget.overrun(out, now=self._clock(), work_s=delay_s + self.budget.tube.value)

    async def _wait_until_safe(self, job: Job) -> None:
        """Until the pick chamber's alarm is over (or the job is cancelled meanwhile)."""
        backoff = Backoff(initial_s=1.0, max_s=10.0)
        while self._pick_chamber is not None and not job.cancel_requested:
            if self._pick_chamber() is None:
                return
            await self._sleep(backoff.next_delay())

    # ------------------------------------------------------------------ racks

    async def _arrange(self, job: Job, racks: tuple[str, ...]) -> None:
        await self._racks.arrange(job.job, racks)

    async def return_all(self, job: str) -> None:
        """Every rack at the station back to the store, the one out longest first."""
        await self._racks.return_all(job)

    # ------------------------------------------------------------------ tubes

    def next_output_position(self, rack: str) -> str:
        used = self._journal.used_output_positions(rack)
        for position in OUTPUT_POSITIONS:
            if position not in used:
                return position
        raise JobFailed(f"output rack {rack} is full")

    async def pick_tube(self, job: Job, tube: TubeTask) -> None:
        """Verify, pick, carry and place one tube, and record its movement."""
        log = self._log.bind(job=job.job, barcode=tube.barcode)
        start, failures = self._clock(), self._gantry.failures
        port = self.station[tube.rack]
        x, y = self.xy(port, tube.position)
        motion = self._motion
        await self._gantry.run(
            "move",
            lambda: motion.move_to(x_mm=x, y_mm=y),
            job=job.job,
            subject=tube.barcode,
            to=f"{port} {tube.position}",
        )
        read = await self._gantry.run(
            "scan", motion.scan, job=job.job, subject=tube.barcode, record_result=True
        )
        if read != tube.barcode:
            text = (
                f"{tube.rack} {tube.position}: expected {tube.barcode}, "
                f"read {read if read is not None else 'nothing'}; tube left in place"
            )
            log.warning("barcode mismatch: tube not picked", read=read)
            self.alarm("barcode_mismatch", active=True, text=text)
            self._journal.tube_state(job.job, tube, "failed", text)
            return
        self.alarm("barcode_mismatch", active=False, text="barcode verified")
        out_rack = job.output_rack
        out_position = self.next_output_position(out_rack)
        self._journal.reserve_output(job.job, tube, out_rack, out_position)
        await self._gantry.run(
            "pick", motion.pick, job=job.job, subject=tube.barcode, settled=lambda s: s.holding
        )
        self._journal.tube_state(job.job, tube, "held")
        await self.place_held(job, tube)
        if self._gantry.failures == failures:  # faults and their retries are not a tube's time
            self.budget.tube.add(self._clock() - start)

    async def place_held(self, job: Job, tube: TubeTask, *, verify: bool = False) -> None:
        """Carry the tube in the gripper to its reserved slot, place it, record it.

        With `verify` (when the journal's word is all we have about what the gripper holds)
        the placed tube is scanned first: another barcode is not recorded, raises
        `{picker}.tube_unaccounted`, and keeps its slot occupied.
        """
        assert tube.out_rack is not None and tube.out_position is not None
        ox, oy = self.xy(self._cfg.output_port, tube.out_position)
        motion = self._motion
        await self._gantry.run(
            "carry",
            lambda: motion.move_to(x_mm=ox, y_mm=oy),
            job=job.job,
            subject=tube.barcode,
            to=f"{tube.out_rack} {tube.out_position}",
        )
        await self._gantry.run(
            "place",
            motion.place,
            job=job.job,
            subject=tube.barcode,
            settled=lambda s: not s.holding,
        )
        if verify:
            read = await self._gantry.run(
                "scan", motion.scan, job=job.job, subject=tube.barcode, record_result=True
            )
            if read != tube.barcode:
                text = (
                    f"gripper held {read or 'an unreadable tube'}, not {tube.barcode}; placed in "
                    f"{tube.out_rack} {tube.out_position}"
                )
                self.alarm("tube_unaccounted", active=True, text=text)
                self._journal.tube_state(job.job, tube, "failed", text, release=False)
                return
        self.record_movement(job, tube)

    def record_movement(self, job: Job, tube: TubeTask) -> None:
        assert tube.out_rack is not None and tube.out_position is not None
        since = self._journal.rack_out_since(self._store_id, tube.rack)
        exposure = max(0.0, self._clock() - since) if since is not None else 0.0
        self._outbox.append(
            barcode=tube.barcode,
            from_=Location(store=self._store_id, rack=tube.rack, position=tube.position),
            to=Location(store=self._store_id, rack=tube.out_rack, position=tube.out_position),
            job=job.job,
            operator=job.operator,
            exposure_s=exposure,
            also=self._journal.done_writer(job.job, tube),
        )
        tube.state = "done"

    # ------------------------------------------------------------------ interrupted tubes

    async def settle_interrupted(self, job: Job) -> None:
        """Settle every tube of the job whose move was interrupted (controllerd.jobs._recovery)."""
        for tube in job.tubes:
            if tube.state in ("picking", "held"):
                await settle_tube(self, job, tube)

    async def scan_at(self, job: Job, tube: TubeTask, port: str, position: str) -> str | None:
        """Move over a position and read the barcode there (journalled as `tube`'s steps)."""
        await self._gantry.ensure_homed(job.job)
        x, y = self.xy(port, position)
        motion = self._motion
        await self._gantry.run(
            "move",
            lambda: motion.move_to(x_mm=x, y_mm=y),
            job=job.job,
            subject=tube.barcode,
            to=f"{port} {position}",
        )
        return await self._gantry.run(
            "scan", motion.scan, job=job.job, subject=tube.barcode, record_result=True
        )

    def alarm(self, name: str, *, active: bool, text: str) -> None:
        if self._alarms is not None:
            self._alarms.external(
                f"{self._picker_id}.{name}",
                device=self._picker_id,
                active=active,
                severity="high",
                text=text,
            )
