"""The picker's motions as a job runs them: journalled, retried, bounded by the racks' exposure.

Every motion of a job is written to the journal before it starts and after it ends (`fault` for
each failed attempt, with the error). A motion that fails — a jam or a stop (`MotionFault`), a
silent controller (`CommunicationLost`, `FirmwareTimeout`), a refusal (`CommandRejected`) —
raises `{picker}.motion_fault` and is retried after a capped, jittered backoff. Before each wait
the executor's `give_up` says whether the racks at the station can afford it (the wait, the
rest of the tube, and their way back within E); when they cannot, the motion raises
`PickerStuck` and the executor sends the racks back. A motion refused `MAX_REFUSALS` times in a
row fails the job. A pick or place whose outcome is unknown after a fault is settled from the
picker's `holding` flag, so no tube is picked or placed twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog

from controllerd.jobs._errors import JobFailed, PickerStuck
from controllerd.jobs._journal import Journal
from drivers import Backoff, DriverError
from firmware_bridge import CommandRejected, PickerStatus, Position

_log = structlog.get_logger("controllerd.jobs")

T = TypeVar("T")

#: A motion the controller refuses this often in a row (no tube, slot occupied) ends the job.
MAX_REFUSALS = 3

#: How often the picker is tried again (with `home`) while a job waits for it: 1 s, doubling, 30 s.
PROBE_INITIAL_S, PROBE_MAX_S = 1.0, 30.0


class MotionOps(Protocol):
    """What the executor needs of the picker (firmware_bridge.PickerMotion)."""

    async def home(self) -> Position: ...
    async def move_to(self, *, x_mm: float, y_mm: float) -> Position: ...
    async def pick(self) -> Position: ...
    async def place(self) -> Position: ...
    async def scan(self) -> str | None: ...
    async def status(self) -> PickerStatus: ...


class Gantry:
    """Runs the picker's motions for the executor (see the module docstring)."""

    def __init__(
        self,
        *,
        motion: MotionOps,
        journal: Journal,
        picker_id: str,
        alarm: Callable[[str, bool, str], None],
        give_up: Callable[[float], str | None],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.motion = motion
        self._journal = journal
        self._picker_id = picker_id
        self._alarm = alarm
        self._give_up = give_up
        self._sleep = sleep
        self._homed = False
        #: failed motion attempts so far (the executor times only tubes without any)
        self.failures = 0
        self._log = _log.bind(device=picker_id)

    async def run(
        self,
        op: str,
        call: Callable[[], Awaitable[T]],
        *,
        job: str | None,
        subject: str,
        settled: Callable[[PickerStatus], bool] | None = None,
        record_result: bool = False,
        **detail: object,
    ) -> T | None:
        """Run a motion until it succeeds and return its result; None when it faulted but the
        picker's state shows it done anyway (`settled`: a pick or place)."""
        if job is not None:
            self._journal.step(job, op, subject, "before", **detail)
        backoff = Backoff(initial_s=0.2, max_s=3.0)
        refusals = 0
        while True:
            try:
                result = await call()
            except DriverError as exc:  # the picker's: link down, timeout, fault, refusal
                self.failures += 1
                if job is not None:
                    self._journal.step(job, op, subject, "fault", error=str(exc))
                if isinstance(exc, CommandRejected):
                    refusals += 1
                    if refusals >= MAX_REFUSALS:
                        raise JobFailed(f"{self._picker_id} refuses {op}: {exc}") from exc
                delay = backoff.next_delay()
                if backoff.failures == 1:
                    self._log.warning("motion failed: retrying", op=op, error=str(exc))
                self._alarm("motion_fault", True, f"{op}: {exc}")
                await self._wait(op, str(exc), delay)
                status = await self.status()
                if not status.homed:
                    self._homed = False
                    await self.run("home", self.motion.home, job=job, subject="gantry")
                    self._homed = True
                if settled is not None and settled(status):
                    self._recovered(op, backoff)
                    if job is not None:
                        self._journal.step(job, op, subject, "after", settled=True)
                    return None
                continue
            self._recovered(op, backoff)
            if job is not None:
                if record_result:
                    self._journal.step(job, op, subject, "after", result=result, **detail)
                else:
                    self._journal.step(job, op, subject, "after", **detail)
            return result

    async def _wait(self, op: str, error: str, delay: float) -> None:
        """Sleep before the next attempt, unless the racks cannot afford it."""
        reason = self._give_up(delay)
        if reason is not None:
            self._log.error("picker stuck: giving up the motion", op=op, error=error, why=reason)
            raise PickerStuck(f"{self._picker_id} {op} keeps failing ({error}); {reason}")
        await self._sleep(delay)

    def _recovered(self, op: str, backoff: Backoff) -> None:
        if backoff.failures:
            self._log.info("motion recovered", op=op, after_failures=backoff.failures)
            self._alarm("motion_fault", False, f"{op} recovered")

    async def status(self) -> PickerStatus:
        """The picker's state, retried while it does not answer (bounded like a motion)."""
        backoff = Backoff(initial_s=0.2, max_s=3.0)
        while True:
            try:
                return await self.motion.status()
            except DriverError as exc:
                self.failures += 1
                if backoff.failures == 0:
                    self._log.warning("picker status not available: retrying", error=str(exc))
                await self._wait("status", str(exc), backoff.next_delay())

    async def ensure_homed(self, job: str | None) -> None:
        if self._homed:
            return
        status = await self.status()
        if not status.homed:
            await self.run("home", self.motion.home, job=job, subject="gantry")
        self._homed = True

    async def home_when_able(self, cancelled: Callable[[], bool]) -> bool:
        """Try `home` with backoff until it works (True) or `cancelled()` (False).

        Called with every rack back in the store: the gantry has nothing to run into, and a
        completed `home` proves the axes move and the controller answers again.
        """
        backoff = Backoff(initial_s=PROBE_INITIAL_S, max_s=PROBE_MAX_S)
        while not cancelled():
            try:
                await self.motion.home()
            except DriverError as exc:
                self._log.debug("picker still not working", error=str(exc))
                await self._sleep(backoff.next_delay())
                continue
            self._homed = True
            self._log.info("picker works again", after_probes=backoff.failures + 1)
            self._alarm("motion_fault", False, "picker homed again")
            return True
        return False
