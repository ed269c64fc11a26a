"""The call tree: who is paged for which alarm occurrence, and when again.

Level 1 is paged when an occurrence is raised; until it is acknowledged every level reached is
paged again every `renotify_every_s`, and each further level is paged once the occurrence has
been unacknowledged for its `after_s`. Acknowledgement, return and clearing are told to
everyone who was paged. Every page delivered is recorded (SQLite) before the next is planned,
so a restarted daemon continues the schedule instead of paging again; an occurrence raised but
not yet paged when the daemon stopped is paged after the restart.

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
        """After a restart: continue the schedule of occurrences still raised and unacked.

        `open_alarms` are the announced, active, unacknowledged occurrences; any of them never
        paged at level 1 (the daemon stopped in between) is paged now.
        """
        records = {} if self._db is None else await self._db.run(self._db.load_pages)
        for request in open_alarms:
            levels = records.get((request.alarm, request.occurrence), {})
            if not self._wanted(request.severity):
                continue
            first = min((v[0] for v in levels.values()), default=self._wall())
            occ = _Occurrence(
                alarm=request.alarm,
                occurrence=request.occurrence,
                severity=request.severity,
                payload=request.payload,
                raised_at=first,
                paged={level: v[1] for level, v in levels.items()},
            )
            self._open[(request.alarm, request.occurrence)] = occ
            if 0 not in occ.paged:
                self._page_level(occ, 0, "raised")

    def _wanted(self, severity: str) -> bool:
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self._escalation.min_severity]

    async def _consume(self) -> None:
        while True:
            request = await self._queue.get()
            key = (request.alarm, request.occurrence)
            if request.event is Event.RAISED:
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
            elif request.event in (Event.ACKED, Event.RETURNED, Event.CLEARED):
                if key not in self._open:
                    continue
                occ = self._open.pop(key)
                occ.payload = request.payload
                for level in sorted(occ.paged):
                    self._page_level(occ, level, request.event.value, actor=request.actor)
                if self._db is not None:
                    await self._forget(self._db, request.alarm, request.occurrence)

    @staticmethod
    async def _forget(db: StateDb, alarm: str, occurrence: int) -> None:
        await db.run(lambda: db.forget_pages(alarm, occurrence))

    async def _escalate(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s())
            now = self._wall()
            for occ in list(self._open.values()):
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
