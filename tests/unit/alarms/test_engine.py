"""The engine on a fake clock and an in-memory publisher, with its real SQLite state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controllerd.alarms.engine import AlarmEngine, AlarmNotice
from controllerd.config import Config, parse_config
from controllerd.statedb import StateDb
from controllerd.topics import Topics
from drivers import Reading


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Broker:
    """Keeps the last retained payload per topic, like a broker would."""

    def __init__(self) -> None:
        self.retained: dict[str, dict[str, Any]] = {}

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        if retain:
            self.retained[topic] = json.loads(payload)
        return True

    async def clear_retained(self, topic: str) -> None:
        self.retained.pop(topic, None)


def room(tmp_path: Path, alarms: dict[str, Any] | None = None) -> Config:
    freezer: dict[str, Any] = {
        "id": "f1",
        "kind": "ult_freezer",
        "poll_interval_s": 1.0,
        "driver": {
            "type": "modbus_tcp",
            "host": "127.0.0.1",
            "port": 15999,
            "unit_id": 1,
            "timeout_s": 0.5,
        },
        "registers": [
            {
                "name": "temperature_c",
                "address": 0,
                "table": "input",
                "type": "int16",
                "scale": 0.1,
            },
            {"name": "door_open", "address": 1, "table": "input", "type": "uint16"},
        ],
    }
    if alarms is not None:
        freezer["alarms"] = alarms
    return parse_config(
        {"controller": {"site": "s", "id": "c", "state_dir": str(tmp_path)}, "devices": [freezer]}
    )


class Harness:
    def __init__(self, tmp_path: Path, alarms: dict[str, Any] | None = None) -> None:
        self.clock = Clock()
        self.wall = Clock()
        self.broker = Broker()
        self.notices: list[AlarmNotice] = []
        self.config = room(tmp_path, alarms)
        self.db = StateDb(path=tmp_path / "state.db")
        self.engine = AlarmEngine(
            config=self.config,
            mqtt=self.broker,
            topics=Topics(prefix="b", site="s", controller="c"),
            db=self.db,
            notify=self.notices.append,
            clock=self.clock,
            wall=self.wall,
        )

    async def feed(
        self,
        temperature: float | None,
        *,
        door: float = 0,
        dt: float = 1.0,
        faults: dict[str, str] | None = None,
        texts: dict[str, str] | None = None,
    ) -> None:
        self.clock.t += dt
        self.wall.t += dt
        values = {"door_open": door}
        if temperature is not None:
            values["temperature_c"] = temperature
        self.engine.on_reading("f1", Reading(values=values, faults=faults or {}, texts=texts or {}))
        await self.engine.flush()

    def state(self, alarm: str) -> str:
        return str(self.broker.retained[f"b/s/c/alarms/{alarm}"]["state"])

    def message(self, alarm: str) -> str:
        return str(self.broker.retained[f"b/s/c/alarms/{alarm}"]["message"])

    def raised(self, alarm: str) -> int:
        return sum(1 for n in self.notices if n.alarm == alarm and n.event == "raised")


FAST = {
    "values": {
        "temperature_c": {
            "high": {"limit": -70.0, "deadband": 1.0, "on_delay_s": 5},
            "suppress_while": {"value": "door_open", "grace_s": 30, "recovery_s": 10},
        },
        "door_open": {"discrete": {"on_delay_s": 30}},
    }
}


async def test_high_alarm_after_its_on_delay_then_ack_and_clear(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        await h.feed(-80)
        assert h.state("f1.temperature_c.high") == "normal"
        await h.feed(-69, dt=1)
        assert h.state("f1.temperature_c.high") == "normal"  # on-delay running
        assert h.engine.next_deadline() == pytest.approx(h.clock.t + 5)
        h.clock.t += 5
        h.engine.tick()
        await h.engine.flush()
        assert h.state("f1.temperature_c.high") == "unacked"
        assert h.raised("f1.temperature_c.high") == 1
        await h.engine.ack("f1.temperature_c.high", operator="alice")
        assert h.state("f1.temperature_c.high") == "acked"
        await h.feed(-75)
        assert h.state("f1.temperature_c.high") == "normal"
        history = await h.db.run(lambda: h.db.history("f1.temperature_c.high"))
        assert [e for e, *_ in history if not e.startswith("state:")] == [
            "raised",
            "acked",
            "cleared",
        ]
        assert ("acked", 1, "acked", "alice") in history


async def test_dithering_inside_the_deadband_pages_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        for value in [-69.5] * 7 + [-70.2, -69.8, -70.5, -69.9, -70.9, -69.6] * 5:
            await h.feed(value)
        assert h.raised("f1.temperature_c.high") == 1
        assert h.state("f1.temperature_c.high") == "unacked"


async def test_door_opening_within_grace_pages_nobody(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        await h.feed(-80)
        for _ in range(20):  # door open 20 s: the cabinet warms past the limit
            await h.feed(-60, door=1)
        assert h.state("f1.temperature_c.high") == "suppressed"
        for _ in range(12):  # closed, recovered within recovery_s
            await h.feed(-75)
        assert h.notices == []
        assert h.state("f1.temperature_c.high") == "normal"


async def test_door_open_past_grace_raises_door_and_temperature(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        for _ in range(40):
            await h.feed(-60, door=1)
        assert h.raised("f1.door_open") == 1
        assert h.raised("f1.temperature_c.high") == 1


async def test_sensor_fault_is_a_sensor_alarm_not_a_temperature(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        await h.feed(-80)
        for _ in range(10):
            await h.feed(None, faults={"temperature_c": "open circuit"})
        assert h.state("f1.temperature_c.sensor_fault") == "unacked"
        assert h.raised("f1.temperature_c.high") == 0
        assert h.state("f1.temperature_c.high") == "suppressed"


async def test_comm_loss_is_one_alarm_and_suppresses_the_values(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        for _ in range(7):
            await h.feed(-60)
        assert h.state("f1.temperature_c.high") == "unacked"
        for _ in range(5):
            h.clock.t += 1
            h.engine.on_failure("f1", "timed out")
            await h.engine.flush()
        assert h.state("f1.comm_loss") == "unacked"
        assert h.state("f1.temperature_c.high") == "suppressed"
        assert [n.alarm for n in h.notices if n.event == "raised"] == [
            "f1.temperature_c.high",
            "f1.comm_loss",
        ]
        await h.feed(-60)
        assert h.state("f1.comm_loss") == "rtn_unacked"
        assert h.state("f1.temperature_c.high") == "unacked"
        assert h.raised("f1.temperature_c.high") == 1  # the same occurrence, not paged again


async def test_restart_keeps_unacked_and_does_not_raise_again(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        for _ in range(7):
            await h.feed(-60)
        assert h.state("f1.temperature_c.high") == "unacked"
    h2 = Harness(tmp_path, FAST)
    async with h2.db, h2.engine:
        await h2.engine.flush()
        assert h2.state("f1.temperature_c.high") == "unacked"
        for _ in range(7):
            await h2.feed(-60)
        assert h2.notices == []
        assert [n.alarm for n in h2.engine.open_occurrences()] == ["f1.temperature_c.high"]


async def test_restart_keeps_the_devices_own_words_on_a_discrete_alarm(tmp_path: Path) -> None:
    # A tube store names its fault in a text register; the alarm's message carries those words,
    # and still does after a restart, through the end of the occurrence.
    door = "f1.door_open"
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        for _ in range(32):
            await h.feed(-80, door=1, texts={"door_open": "latch broken"})
        assert h.state(door) == "unacked"
        assert h.message(door).endswith(": latch broken")
    h2 = Harness(tmp_path, FAST)
    async with h2.db, h2.engine:
        await h2.engine.flush()
        assert h2.state(door) == "unacked"
        assert h2.message(door).endswith(": latch broken")
        await h2.feed(-80, door=0)  # the fault clears while nobody has acknowledged it
        assert h2.state(door) == "rtn_unacked"
        assert h2.message(door).endswith(": latch broken")


async def test_removed_alarm_loses_its_retained_topic(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        await h.feed(-80)
    assert "b/s/c/alarms/f1.door_open" in h.broker.retained
    no_door = {"values": {"temperature_c": FAST["values"]["temperature_c"], "door_open": {}}}
    h2 = Harness(tmp_path, no_door)
    h2.broker = h.broker
    h2.engine._mqtt = h.broker  # the same broker across the restart
    async with h2.db, h2.engine:
        await h2.engine.flush()
    assert "b/s/c/alarms/f1.door_open" not in h.broker.retained


async def test_shelve_expires_by_itself(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        await h.engine.shelve(
            "f1.temperature_c.high", operator="bob", duration_s=10, reason="defrost"
        )
        for _ in range(7):
            await h.feed(-60)
        assert h.state("f1.temperature_c.high") == "shelved"
        assert [n.event for n in h.notices] == ["shelved"]
        for _ in range(5):
            await h.feed(-60)
        assert h.state("f1.temperature_c.high") == "unacked"
        assert h.raised("f1.temperature_c.high") == 1


def test_default_freezer_rules_alarm_at_minus_70(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    point = h.engine.points["f1.temperature_c.high"]
    assert point.limit == -70.0
    assert "f1.comm_loss" in h.engine.points


def test_comm_loss_counts_from_the_last_good_answer() -> None:
    from controllerd.alarms._detect import TimeoutDetector

    det = TimeoutDetector(after_s=5.0, now=0.0)
    for t in range(0, 3600):
        det.ok(float(t))
    det.failed(3600.0)  # an hour of good answers, then one failure: not yet a loss
    assert not det.active
    assert det.deadline() == 3599.0 + 5.0
    det.failed(3604.5)
    assert det.active
    det.ok(3605.0)
    assert not det.active


async def test_no_deadline_left_once_a_grace_period_is_over(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAST)
    async with h.db, h.engine:
        await h.feed(-80)
        await h.feed(-80, door=1)
        assert h.engine.next_deadline() is not None
        for _ in range(60):  # the door stays open far past its grace and the door alarm's delay
            await h.feed(-80, door=1)
        # Only the stale-data watch is pending (31 s after this reading): the timer must
        # sleep, not spin on a deadline in the past.
        assert h.engine.next_deadline() == pytest.approx(h.clock.t + 31)


async def test_a_failing_alarm_store_is_an_alarm_and_alarms_keep_flowing(tmp_path: Path) -> None:
    import sqlite3

    h = Harness(tmp_path, FAST)

    def broken(**_: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async with h.db, h.engine:
        await h.feed(-80)
        h.db.save_alarm = broken  # type: ignore[method-assign]
        for _ in range(7):
            await h.feed(-60)
        await h.engine.flush()
        assert h.state("f1.temperature_c.high") == "unacked"
        assert h.raised("f1.temperature_c.high") == 1
        assert h.state("c.alarm-store") == "unacked"
        assert "disk I/O error" in h.broker.retained["b/s/c/alarms/c.alarm-store"]["message"]
