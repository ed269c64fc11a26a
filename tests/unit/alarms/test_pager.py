"""The call tree: escalation, reminders, who hears about acks, failing channels, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from controllerd.alarms import Event
from controllerd.alarms.engine import AlarmNotice
from controllerd.notify import EscalationSection
from controllerd.notify.channels import NotifyError
from controllerd.notify.pager import Pager
from controllerd.statedb import StateDb


class Recorder:
    def __init__(self, name: str, *, failures: int = 0) -> None:
        self.id = name
        self.retries = 2
        self.failures = failures
        self.pages: list[dict[str, Any]] = []

    async def send(self, page: dict[str, Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise NotifyError(self.id, "connection refused")
        self.pages.append(page)


def notice(event: Event, occurrence: int = 1) -> AlarmNotice:
    return AlarmNotice(
        event=event,
        alarm="f1.temperature_c.high",
        occurrence=occurrence,
        severity="high",
        payload={"alarm": "f1.temperature_c.high", "state": "unacked", "occurrence": occurrence},
        actor="system" if event is Event.RAISED else "alice",
    )


def tree(renotify_s: float = 600.0) -> EscalationSection:
    return EscalationSection.model_validate(
        {
            "renotify_every_s": renotify_s,
            "levels": [{"notifiers": ["l1"]}, {"notifiers": ["l2"], "after_s": 0.3}],
        }
    )


async def settle(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached")


async def test_escalates_then_tells_everyone_paged_about_the_ack() -> None:
    l1, l2 = Recorder("l1"), Recorder("l2")
    async with Pager(channels={"l1": l1, "l2": l2}, escalation=tree(), db=None, context={}) as p:
        p.submit(notice(Event.RAISED))
        await settle(lambda: [x["event"] for x in l2.pages] == ["escalated"])
        p.submit(notice(Event.ACKED))
        await settle(lambda: len(l1.pages) == 2 and len(l2.pages) == 2)
    assert [x["event"] for x in l1.pages] == ["raised", "acked"]
    assert [x["level"] for x in l2.pages] == [2, 2]
    assert l1.pages[1]["by"] == "alice"


async def test_reminders_until_acknowledged() -> None:
    l1 = Recorder("l1")
    section = EscalationSection.model_validate(
        {"renotify_every_s": 0.1, "levels": [{"notifiers": ["l1"]}]}
    )
    async with Pager(channels={"l1": l1}, escalation=section, db=None, context={}) as p:
        p.submit(notice(Event.RAISED))
        await settle(lambda: len(l1.pages) >= 3)
        p.submit(notice(Event.ACKED))
        await settle(lambda: l1.pages[-1]["event"] == "acked")
        count = len(l1.pages)
        await asyncio.sleep(0.3)
    assert len(l1.pages) == count  # no reminder after the ack
    assert {x["event"] for x in l1.pages[1:-1]} == {"reminder"}


async def test_a_failing_channel_is_retried_and_then_its_own_alarm() -> None:
    flaky, dead = Recorder("l1", failures=1), Recorder("l2", failures=100)
    health: list[tuple[str, bool]] = []
    async with Pager(
        channels={"l1": flaky, "l2": dead},
        escalation=tree(),
        db=None,
        context={},
        on_channel_health=lambda name, ok, reason: health.append((name, ok)),
        retry_initial_s=0.01,
        retry_max_s=0.02,
    ) as p:
        p.submit(notice(Event.RAISED))
        await settle(lambda: ("l2", False) in health)
    assert [x["event"] for x in flaky.pages] == ["raised"]  # delivered on the retry
    assert health == [("l2", False)]


async def test_restart_resumes_without_paging_again(tmp_path: Path) -> None:
    l1 = Recorder("l1")
    section = EscalationSection.model_validate({"levels": [{"notifiers": ["l1"]}]})
    async with StateDb(path=tmp_path / "db") as db:
        async with Pager(channels={"l1": l1}, escalation=section, db=db, context={}) as p:
            p.submit(notice(Event.RAISED))
            await settle(lambda: len(l1.pages) == 1)
            await asyncio.sleep(0.1)  # the record of the page is written after the delivery
        again = Recorder("l1")
        async with Pager(channels={"l1": again}, escalation=section, db=db, context={}) as p:
            await p.resume([notice(Event.RAISED), notice(Event.RAISED, occurrence=2)])
            await settle(lambda: len(again.pages) == 1)
            await asyncio.sleep(0.2)
    # occurrence 1 was paged before the restart; occurrence 2 never was: only it is paged now.
    assert [(x["event"], x["occurrence"]) for x in again.pages] == [("raised", 2)]


async def test_background_tasks_close_even_when_a_task_swallows_one_cancel() -> None:
    from controllerd._tasks import BackgroundTasks

    async def stubborn() -> None:
        # What a lost cancellation looks like from outside: the task goes on after one cancel.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)

    tasks = BackgroundTasks()
    await tasks.start()
    task = tasks.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    await asyncio.wait_for(tasks.close(), timeout=5)
    assert task.done()


def three_levels() -> EscalationSection:
    return EscalationSection.model_validate(
        {
            "renotify_every_s": 600.0,
            "levels": [
                {"notifiers": ["l1"]},
                {"notifiers": ["l2"], "after_s": 0.2},
                {"notifiers": ["l3"], "after_s": 3600},
            ],
        }
    )


async def test_return_to_normal_and_the_late_ack_are_told_to_whoever_was_paged() -> None:
    l1, l2, l3 = Recorder("l1"), Recorder("l2"), Recorder("l3")
    channels = {"l1": l1, "l2": l2, "l3": l3}
    async with Pager(channels=channels, escalation=three_levels(), db=None, context={}) as p:
        p.submit(notice(Event.RAISED))
        await settle(lambda: len(l2.pages) == 1)
        p.submit(notice(Event.RETURNED))
        await settle(lambda: len(l1.pages) == 2 and len(l2.pages) == 2)
        # The ack of a returned alarm ends it: one `cleared` page, by the operator.
        p.submit(notice(Event.ACKED))
        p.submit(notice(Event.CLEARED))
        await settle(lambda: len(l1.pages) == 3 and len(l2.pages) == 3)
    assert [x["event"] for x in l1.pages] == ["raised", "returned", "cleared"]
    assert [x["event"] for x in l2.pages] == ["escalated", "returned", "cleared"]
    assert l2.pages[-1]["by"] == "alice"
    assert l3.pages == []  # never reached, never told


async def test_an_acked_alarm_that_clears_later_is_told_too() -> None:
    l1 = Recorder("l1")
    section = EscalationSection.model_validate(
        {"renotify_every_s": 0.1, "levels": [{"notifiers": ["l1"]}]}
    )
    async with Pager(channels={"l1": l1}, escalation=section, db=None, context={}) as p:
        p.submit(notice(Event.RAISED))
        await settle(lambda: len(l1.pages) == 1)
        p.submit(notice(Event.ACKED))
        await settle(lambda: l1.pages[-1]["event"] == "acked")
        count = len(l1.pages)
        await asyncio.sleep(0.3)  # acknowledged: no reminders any more
        assert len(l1.pages) == count
        p.submit(notice(Event.CLEARED))
        await settle(lambda: l1.pages[-1]["event"] == "cleared")


async def test_a_shelve_pauses_reminders_and_escalation() -> None:
    l1, l2 = Recorder("l1"), Recorder("l2")
    section = EscalationSection.model_validate(
        {
            "renotify_every_s": 0.1,
            "levels": [{"notifiers": ["l1"]}, {"notifiers": ["l2"], "after_s": 0.4}],
        }
    )
    async with Pager(channels={"l1": l1, "l2": l2}, escalation=section, db=None, context={}) as p:
        p.submit(notice(Event.RAISED))
        await settle(lambda: len(l1.pages) >= 2)
        p.submit(notice(Event.SHELVED))
        await asyncio.sleep(0.05)
        count = len(l1.pages)
        await asyncio.sleep(0.6)  # past level 2's time: paused, so nobody is paged
        assert (len(l1.pages), l2.pages) == (count, [])
        p.submit(notice(Event.UNSHELVED))
        await settle(lambda: len(l1.pages) > count and len(l2.pages) == 1)


async def test_after_a_restart_an_acked_occurrence_still_tells_its_end(tmp_path: Path) -> None:
    l1 = Recorder("l1")
    section = EscalationSection.model_validate({"levels": [{"notifiers": ["l1"]}]})
    async with StateDb(path=tmp_path / "db") as db:
        async with Pager(channels={"l1": l1}, escalation=section, db=db, context={}) as p:
            p.submit(notice(Event.RAISED))
            p.submit(notice(Event.ACKED))
            await settle(lambda: len(l1.pages) == 2)
            await asyncio.sleep(0.1)  # the record of the page is written after the delivery
        again = Recorder("l1")
        async with Pager(channels={"l1": again}, escalation=section, db=db, context={}) as p:
            # occurrence 2 was acked but nobody was ever paged for it: nobody to tell
            await p.resume([notice(Event.ACKED), notice(Event.ACKED, occurrence=2)])
            p.submit(notice(Event.CLEARED))
            p.submit(notice(Event.CLEARED, occurrence=2))
            await settle(lambda: len(again.pages) == 1)
            await asyncio.sleep(0.1)
        assert [(x["event"], x["occurrence"]) for x in again.pages] == [("cleared", 1)]
        assert await db.run(db.load_pages) == {}  # the occurrence is over: its record goes
