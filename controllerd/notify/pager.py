"""The call tree: who is paged for which alarm occurrence, and when again.

Level 1 is paged when an occurrence is raised; until it is acknowledged (or returns to normal)
every level reached is paged again every `renotify_every_s`, and each further level is paged
once the occurrence has been unacknowledged for its `after_s`. Shelving pauses the schedule
(the unacknowledged time under a shelve does not count). Acknowledgement, return to normal and
clearing are told to everyone who was paged, until the occurrence is over (cleared). Every page
delivered is recorded (SQLite) before the next is planned, so a restarted daemon continues the
schedule instead of paging again, and still tells those paged when the occurrence ends; an
occurrence raised but not yet paged when the daemon stopped is paged after the restart.

A channel that fails is retried with capped, jittered backoff; when it still fails, the pager
raises that notifier's own alarm (through `on_channel_health`) and other channels carry on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import structlog

from controllerd._tasks import BackgroundTasks
from controllerd._time import utc_now
from controllerd.alarms import SEVERITY_RANK, Event
from controllerd.alarms.engine import AlarmNotice
from controllerd.notify._config import EscalationSection
from controllerd.notify.channels import Channel, NotifyError
from controllerd.statedb import StateDb
from drivers import Backoff

_log = structlog.get_logger("controllerd.notify")


@dataclass
class _Occurrence:
    alarm: str
    occurrence: int
    severity: str
    payload: dict[str, Any]
    raised_at: float
    #: level index -> last page time (wall clock)
    paged: dict[int, float] = field(default_factory=dict)
    acked: bool = False
    returned: bool = False
    #: wall-clock time the occurrence was shelved (the schedule pauses meanwhile)
    shelved_at: float | None = None

    @property
    def escalating(self) -> bool:
        """Still reminded and escalated: unacknowledged, active and not shelved."""
        return not (self.acked or self.returned) and self.shelved_at is None


class Pager:
    """Runs the call tree while entered (`async with`)."""

    def __init__(
        self,
        *,
        channels: dict[str, Channel],
        escalation: EscalationSection,
        db: StateDb | None,
        context: dict[str, Any],
        on_channel_health: Callable[[str, bool, str], None] | None = None,
        wall: Callable[[], float] = time.time,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self._channels = channels
        self._escalation = escalation
        self._db = db
        self._context = context
        self._on_health = on_channel_health
        self._wall = wall
        self._retry = (retry_initial_s, retry_max_s)
        self._open: dict[tuple[str, int], _Occurrence] = {}
        self._queue: asyncio.Queue[AlarmNotice] = asyncio.Queue()
        self._tasks = BackgroundTasks()
        self._failing: set[str] = set()
        self.delivered: list[tuple[str, dict[str, Any]]] = []

    async def __aenter__(self) -> Self:
        await self._tasks.start()
        self._tasks.spawn(self._consume(), name="pager-events")
        self._tasks.spawn(self._escalate(), name="pager-escalation")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._tasks.close()  # deliveries still in flight too

    def submit(self, request: AlarmNotice) -> None:
        """Hand an alarm event to the pager (never blocks)."""
        self._queue.put_nowait(request)

    async def resume(self, open_alarms: list[AlarmNotice]) -> None:
        """After a restart: continue the schedule of every occurrence that is not over.

        `open_alarms` are the engine's announced occurrences not yet cleared, as `raised`
        (active, unacknowledged), `acked` (active, acknowledged) or `returned` (back to normal,
        unacknowledged). A raised one never paged at level 1 (the daemon stopped in between) is
        paged now; the others are kept only to tell those paged how they end.
        """
        records = {} if self._db is None else await self._db.run(self._db.load_pages)
        now = self._wall()
        for request in open_alarms:
            levels = records.get((request.alarm, request.occurrence), {})
            if not self._wanted(request.severity):
                continue
            if request.event is not Event.RAISED and not levels:
                continue  # nobody was paged: nobody to tell
            occ = _Occurrence(
                alarm=request.alarm,
                occurrence=request.occurrence,
                severity=request.severity,
                payload=request.payload,
                raised_at=min((v[0] for v in levels.values()), default=now),
                paged={level: v[1] for level, v in levels.items()},
                acked=request.event is Event.ACKED,
                returned=request.event is Event.RETURNED,
                shelved_at=now if request.payload.get("state") == "shelved" else None,
            )
            self._open[(request.alarm, request.occurrence)] = occ
            if occ.escalating and 0 not in occ.paged:
                self._page_level(occ, 0, "raised")

    def _wanted(self, severity: str) -> bool:
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self._escalation.min_severity]

    async def _consume(self) -> None:
        while True:
            request = await self._queue.get()
            key = (request.alarm, request.occurrence)
            event = request.event
            if event is Event.RAISED:
                if not self._wanted(request.severity) or key in self._open:
                    continue
                occ = _Occurrence(
                    alarm=request.alarm,
                    occurrence=request.occurrence,
                    severity=request.severity,
                    payload=request.payload,
                    raised_at=self._wall(),
                )
                self._open[key] = occ
                self._page_level(occ, 0, "raised")
                continue
            occ_or_none = self._open.get(key)
            if occ_or_none is None:
                continue  # never paged (below min_severity, raised under a mask): nobody to tell
            occ = occ_or_none
            occ.payload = request.payload
            if event is Event.SHELVED:
                occ.shelved_at = occ.shelved_at or self._wall()
            elif event is Event.UNSHELVED:
                self._resume_schedule(occ)
            elif event is Event.ACKED:
                occ.acked = True
                # An ack after the return ends the occurrence: the `cleared` that follows at
                # once (with the same operator) tells them, one message instead of two.
                if not occ.returned:
                    self._tell(occ, "acked", request.actor)
            elif event is Event.RETURNED:
                occ.returned = True
                self._tell(occ, "returned", request.actor)
            elif event is Event.CLEARED:
                del self._open[key]
                self._tell(occ, "cleared", request.actor)
                if self._db is not None:
                    await self._forget(self._db, request.alarm, request.occurrence)

    def _tell(self, occ: _Occurrence, event: str, actor: str) -> None:
        """Tell every level that was paged for this occurrence."""
        for level in sorted(occ.paged):
            self._page_level(occ, level, event, actor=actor)

    def _resume_schedule(self, occ: _Occurrence) -> None:
        """After a shelve: the time under it does not count toward reminders or escalation."""
        if occ.shelved_at is None:
            return
        paused = self._wall() - occ.shelved_at
        occ.shelved_at = None
        occ.raised_at += paused
        for level in occ.paged:
            occ.paged[level] += paused

    @staticmethod
    async def _forget(db: StateDb, alarm: str, occurrence: int) -> None:
        await db.run(lambda: db.forget_pages(alarm, occurrence))

    async def _escalate(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s())
            now = self._wall()
            for occ in list(self._open.values()):
                if not occ.escalating:
                    continue
                for index, level in enumerate(self._escalation.levels):
                    if index in occ.paged:
                        due = occ.paged[index] + self._escalation.renotify_every_s
                        if now >= due:
                            self._page_level(occ, index, "reminder")
                    elif now - occ.raised_at >= level.after_s:
                        self._page_level(occ, index, "escalated" if index else "raised")

    def _tick_s(self) -> float:
        steps = [self._escalation.renotify_every_s] + [
            lvl.after_s for lvl in self._escalation.levels if lvl.after_s > 0
        ]
        return max(0.02, min(1.0, min(steps) / 10))

    def _page_level(self, occ: _Occurrence, level: int, event: str, actor: str = "system") -> None:
        if level >= len(self._escalation.levels):
            return
        occ.paged[level] = self._wall()  # planned now: the next reminder counts from here
        page = {
            **self._context,
            **occ.payload,
            "event": event,
            "level": level + 1,
            "ts": utc_now(),
            "by": actor,
        }
        for name in self._escalation.levels[level].notifiers:
            channel = self._channels.get(name)
            if channel is None:
                continue
            record = event in ("raised", "reminder", "escalated")
            self._tasks.spawn(
                self._deliver(channel, page, occ, level, record), name=f"page {name} {occ.alarm}"
            )

    async def _deliver(
        self, channel: Channel, page: dict[str, Any], occ: _Occurrence, level: int, record: bool
    ) -> None:
        backoff = Backoff(initial_s=self._retry[0], max_s=self._retry[1])
        attempts = 1 + channel.retries
        log = _log.bind(notifier=channel.id, alarm=occ.alarm, level=level + 1, event=page["event"])
        for attempt in range(1, attempts + 1):
            try:
                await channel.send(page)
            except NotifyError as exc:
                reason = exc.reason
            except Exception as exc:  # a channel bug must not stop the other pages
                reason = f"internal error: {exc!r}"
                log.exception("notifier raised an untranslated error")
            else:
                log.info("paged", attempt=attempt)
                self.delivered.append((channel.id, page))
                if record and self._db is not None:
                    await self._db.run(
                        lambda: self._db.record_page(  # type: ignore[union-attr]
                            alarm=occ.alarm, occurrence=occ.occurrence, level=level
                        )
                    )
                self._health(channel.id, ok=True, reason="")
                return
            if attempt == attempts:
                break
            delay = backoff.next_delay()
            log.warning("page failed, retrying", reason=reason, attempt=attempt, retry_in_s=delay)
            await asyncio.sleep(delay)
        log.error("page not delivered", reason=reason, attempts=attempts)
        self._health(channel.id, ok=False, reason=reason)

    def _health(self, notifier: str, *, ok: bool, reason: str) -> None:
        was_failing = notifier in self._failing
        if ok and was_failing:
            self._failing.discard(notifier)
        elif not ok:
            self._failing.add(notifier)
        if self._on_health is not None and ok == was_failing:
            self._on_health(notifier, ok, reason)
