"""Runs one pick job on the store and the picker, step by journalled step.

Per batch of racks (see `_batches`): racks not needed go back (scanned first, so the store's
inventory shows what was taken), missing ones are fetched into free ports. Per tube: move over
it, scan and verify the barcode (a wrong or unreadable one raises `{picker}.barcode_mismatch`
and leaves the tube where it is), reserve an output slot, pick, move to the slot, place, and
record the movement in the outbox in the same transaction as the tube's `done`. Before each
tube the executor checks the pick chamber temperature and each rack's time out of the cold:
when either is near its limit, every rack goes back first and the job continues afterwards.
A cancel finishes the current tube, returns the racks and ends the job `cancelled`.

A motion that faults (jam, lost link) raises `{picker}.motion_fault` and is retried with capped
jittered backoff; a pick or place whose outcome is unknown is resolved from the picker's
`holding` flag, so no tube is picked or placed twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog

from controllerd.alarms import Severity
from controllerd.config import JobsSection
from controllerd.jobs._batches import Batch, Batcher, plan_batches, simple_batcher
from controllerd.jobs._journal import Journal
from controllerd.jobs._model import Job, TubeTask
from controllerd.jobs._progress import ProgressReporter
from controllerd.outbox import Outbox
from drivers import Backoff, DeviceRejected, DriverError
from firmware_bridge import CommandRejected, PickerStatus, Position
from inventory.events import Location

_log = structlog.get_logger("controllerd.jobs")

ROWS = "ABCDEFGH"
COLUMNS = 12
OUTPUT_POSITIONS = tuple(f"{row}{col}" for row in ROWS for col in range(1, COLUMNS + 1))

T = TypeVar("T")

#: A motion the controller refuses this often in a row (no tube, slot occupied) ends the job.
MAX_REFUSALS = 3


class JobFailed(Exception):
    """A job cannot go on (the store refuses, the output rack is full, ...)."""


class StoreOps(Protocol):
    """What the executor needs of the tube store (controllerd.store.TubeStore)."""

    async def retrieve_rack(self, rack: str, port: str) -> float: ...
    async def store_rack(self, rack: str) -> float: ...
    async def scan_rack(self, rack: str) -> float: ...


class MotionOps(Protocol):
    """What the executor needs of the picker (firmware_bridge.PickerMotion)."""

    async def home(self) -> Position: ...
    async def move_to(self, *, x_mm: float, y_mm: float) -> Position: ...
    async def pick(self) -> Position: ...
    async def place(self) -> Position: ...
    async def scan(self) -> str | None: ...
    async def status(self) -> PickerStatus: ...


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
        pick_chamber_c: Callable[[], Awaitable[float | None]] | None = None,
        batching: Batcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = config
        self._store_id = store_id
        self._picker_id = picker_id
        self._store = store
        self._motion = motion
        self._journal = journal
        self._outbox = outbox
        self._progress = progress
        self._alarms = alarms
        self._pick_chamber_c = pick_chamber_c
        self._batching = batching or simple_batcher(plan_batches)
        #: wall-clock seconds (exposure is measured with it; the bench runs it on sim time)
        self._clock = clock
        #: rack -> port, for racks this executor has at the pick station
        self.station: dict[str, str] = {}
        self._homed = False
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
        """The picker's state (retried until it answers)."""
        return await self._status_when_reachable()

    async def scan_at(self, port: str, position: str) -> str | None:
        """Move over a position and read the barcode there."""
        await self._ensure_homed()
        x, y = self.xy(port, position)
        await self._retry("move", lambda: self._motion.move_to(x_mm=x, y_mm=y))
        return await self._retry("scan", self._motion.scan)

    # ------------------------------------------------------------------ the job

    async def run(self, job: Job) -> None:
        """Run a job until it is done, cancelled or failed (its state says which)."""
        log = self._log.bind(job=job.job)
        self._journal.set_state(job, "running")
        self._progress.started(job)
        await self._progress.publish(job)
        log.info("job started", tubes=job.total, pending=len(job.pending()))
        try:
            await self._ensure_homed()
            while not job.cancel_requested:
                pending = [tube for tube in job.tubes if tube.state == "pending"]
                if not pending:
                    break
                reason = await self._run_batches(job, await self._batching(pending, self._k))
                if reason is None:
                    continue
                await self.return_all(job)
                self._journal.set_state(job, "paused", reason)
                await self._progress.publish(job)
                log.warning("job paused: racks returned", reason=reason)
                await self._wait_until_safe(job)
                self._journal.set_state(job, "running")
                await self._progress.publish(job)
                log.info("job resumed")
            await self.return_all(job)
        except (JobFailed, DriverError) as exc:
            log.error("job failed", error=str(exc))
            try:
                await self.return_all(job)
            except DriverError as back:
                log.error("racks not returned", error=str(back))
            self._finish(job, failed=str(exc))
        else:
            self._finish(job)
        await self._progress.publish(job)
        log.info("job ended", state=job.state, done=job.done, total=job.total)

    @property
    def _k(self) -> int:
        return len(self._cfg.rack_ports)

    def _finish(self, job: Job, failed: str | None = None) -> None:
        for tube in job.tubes:
            if tube.state == "pending":
                self._journal.tube_state(job.job, tube, "cancelled")
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

    async def _run_batches(self, job: Job, batches: list[Batch]) -> str | None:
        """Work through the batches; a reason when the racks must go back first."""
        for batch in batches:
            await self._arrange(job, batch.racks)
            for tube in batch.tubes:
                if job.cancel_requested:
                    return None
                reason = await self._must_return()
                if reason is not None:
                    return reason
                if tube.state == "pending":
                    await self.pick_tube(job, tube)
                    await self._progress.publish(job)
        return None

    async def _must_return(self) -> str | None:
        if self._pick_chamber_c is not None:
            temperature = await self._pick_chamber_c()
            if temperature is not None and temperature > self._cfg.pick_chamber_max_c:
                return f"pick chamber at {temperature:.1f} °C"
        now = self._clock()
        limit = self._cfg.exposure_limit_s - self._cfg.exposure_margin_s
        for rack in self.station:
            since = self._journal.rack_out_since(self._store_id, rack)
            if since is not None and now - since >= limit:
                return f"rack {rack} out for {now - since:.0f} s (limit {limit:.0f} s)"
        return None

    async def _wait_until_safe(self, job: Job) -> None:
        """Until the pick chamber is cold again (or the job is cancelled meanwhile)."""
        backoff = Backoff(initial_s=1.0, max_s=30.0)
        while self._pick_chamber_c is not None and not job.cancel_requested:
            temperature = await self._pick_chamber_c()
            if temperature is None or temperature <= self._cfg.pick_chamber_max_c:
                return
            await asyncio.sleep(backoff.next_delay())

    # ------------------------------------------------------------------ racks

    async def _arrange(self, job: Job, racks: tuple[str, ...]) -> None:
        for rack in [r for r in self.station if r not in racks]:
            await self.return_rack(job, rack)
        for rack in racks:
            if rack in self.station:
                continue
            free = [p for p in self._cfg.rack_ports if p not in self.station.values()]
            if not free:
                raise JobFailed("no free rack port")
            port = free[0]
            # Out before the call: after a crash mid-retrieve, recovery asks the store where
            # it ended up (and the exposure clock errs on the safe side).
            self._journal.rack_out(self._store_id, rack, self._clock())
            self._journal.step(job.job, "retrieve", rack, "before", port=port)
            try:
                await self._store.retrieve_rack(rack, port)
            except DeviceRejected:  # refused: it never left its shelf
                self._journal.rack_in(self._store_id, rack, self._clock())
                raise
            self.station[rack] = port
            self._journal.step(job.job, "retrieve", rack, "after", port=port)

    async def return_rack(self, job: Job, rack: str) -> None:
        """Scan the rack (the store's inventory then shows what was taken) and store it."""
        self._journal.step(job.job, "scan_rack", rack, "before")
        await self._store.scan_rack(rack)
        self._journal.step(job.job, "store", rack, "before")
        await self._store.store_rack(rack)
        trip = self._journal.rack_in(self._store_id, rack, self._clock())
        self.station.pop(rack, None)
        self._journal.step(job.job, "store", rack, "after", trip_s=round(trip, 3))

    async def return_all(self, job: Job) -> None:
        for rack in list(self.station):
            await self.return_rack(job, rack)

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
        port = self.station[tube.rack]
        x, y = self.xy(port, tube.position)
        self._journal.step(job.job, "move", tube.barcode, "before", port=port)
        await self._retry("move", lambda: self._motion.move_to(x_mm=x, y_mm=y))
        read = await self._retry("scan", self._motion.scan)
        self._journal.step(job.job, "scan", tube.barcode, "after", read=read)
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
        await self._pick()
        self._journal.tube_state(job.job, tube, "held")
        await self.place_held(job, tube)

    async def place_held(self, job: Job, tube: TubeTask, *, verify: bool = False) -> None:
        """Carry the tube in the gripper to its reserved slot, place it, record it.

        With `verify` (after a restart, when the journal's word is all we have about what the
        gripper holds) the placed tube is scanned first: another barcode is not recorded, raises
        `{picker}.tube_unaccounted`, and keeps its slot occupied.
        """
        assert tube.out_rack is not None and tube.out_position is not None
        ox, oy = self.xy(self._cfg.output_port, tube.out_position)
        await self._retry("move", lambda: self._motion.move_to(x_mm=ox, y_mm=oy))
        self._journal.step(job.job, "place", tube.barcode, "before")
        await self._place()
        if verify:
            read = await self._retry("scan", self._motion.scan)
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

    # ------------------------------------------------------------------ motion with retries

    async def _ensure_homed(self) -> None:
        if self._homed:
            return
        status = await self._status_when_reachable()
        if not status.homed:
            await self._retry("home", self._motion.home)
        self._homed = True

    async def _pick(self) -> None:
        """Pick; after a fault the gripper says whether the tube was taken."""
        await self._retry("pick", self._motion.pick, settled=lambda s: s.holding)

    async def _place(self) -> None:
        """Place; after a fault the empty gripper says the tube was put down."""
        await self._retry("place", self._motion.place, settled=lambda s: not s.holding)

    async def _retry(
        self,
        op: str,
        call: Callable[[], Awaitable[T]],
        *,
        settled: Callable[[PickerStatus], bool] | None = None,
    ) -> T | None:
        """Run a motion until it succeeds and return its result; None when it faulted but the
        picker's state shows it done anyway (`settled`: a pick or place)."""
        backoff = Backoff(initial_s=0.2, max_s=3.0)
        refusals = 0
        while True:
            try:
                result = await call()
            except DriverError as exc:  # the picker's: link down, timeout, fault, refusal
                if isinstance(exc, CommandRejected):
                    refusals += 1
                    if refusals >= MAX_REFUSALS:
                        raise JobFailed(f"{self._picker_id} refuses {op}: {exc}") from exc
                delay = backoff.next_delay()
                if backoff.failures == 1:
                    self._log.warning("motion failed: retrying", op=op, error=str(exc))
                self.alarm("motion_fault", active=True, text=f"{op}: {exc}")
                await asyncio.sleep(delay)
                status = await self._status_when_reachable()
                if not status.homed:
                    self._homed = False
                    await self._retry("home", self._motion.home)
                    self._homed = True
                if settled is not None and settled(status):
                    self._recovered(op, backoff)
                    return None
                continue
            self._recovered(op, backoff)
            return result

    def _recovered(self, op: str, backoff: Backoff) -> None:
        if backoff.failures:
            self._log.info("motion recovered", op=op, after_failures=backoff.failures)
            self.alarm("motion_fault", active=False, text=f"{op} recovered")

    async def _status_when_reachable(self) -> PickerStatus:
        backoff = Backoff(initial_s=0.2, max_s=3.0)
        while True:
            try:
                return await self._motion.status()
            except DriverError:
                await asyncio.sleep(backoff.next_delay())

    def alarm(self, name: str, *, active: bool, text: str) -> None:
        if self._alarms is not None:
            self._alarms.external(
                f"{self._picker_id}.{name}",
                device=self._picker_id,
                active=active,
                severity="high",
                text=text,
            )
