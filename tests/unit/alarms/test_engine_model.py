"""The engine under random values, door openings, sensor faults, failed polls, quiet spells,
acks, shelves and time steps, checked against the rules as docs/alarms.md states them.

Where test_state_machine.py drives the bare state model with booleans, this drives the whole
engine (detectors, deadbands, delays, grace periods, suppression, stale data) through its
inputs, on a fake clock, and checks what it publishes. The store is an in-memory stand-in:
this is the engine's logic; its SQLite store is tested in test_engine.py.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from controllerd.alarms import AlarmCommandError, Event
from controllerd.alarms.engine import AlarmEngine, AlarmNotice
from controllerd.topics import Topics
from drivers import Reading
from tests.unit.alarms.test_engine import Broker, Clock, room

LIMIT, DEADBAND, ON_DELAY, OFF_DELAY = -70.0, 1.0, 5.0, 3.0
GRACE, RECOVERY = 30.0, 10.0
STALE = 40.0
RULES = {
    "stale_after_s": STALE,
    "values": {
        "temperature_c": {
            "high": {
                "limit": LIMIT,
                "deadband": DEADBAND,
                "on_delay_s": ON_DELAY,
                "off_delay_s": OFF_DELAY,
            },
            "high_high": {"limit": -60.0, "latching": True, "severity": "critical"},
            "low": {"limit": -90.0, "deadband": 1.0, "on_delay_s": 2},
            "rate": {"limit_per_min": 2.0, "window_s": 60},
            "suppress_while": {"value": "door_open", "grace_s": GRACE, "recovery_s": RECOVERY},
        },
        "door_open": {"discrete": {"on_delay_s": 20}},
    },
}
HIGH = "f1.temperature_c.high"
VALUE_ALARMS = [HIGH, "f1.temperature_c.high_high", "f1.temperature_c.low", "f1.temperature_c.rate"]
ALARMS = [*VALUE_ALARMS, "f1.door_open", "f1.comm_loss", "f1.stale"]
GRACE_SUPPRESSED = {HIGH, "f1.temperature_c.high_high", "f1.temperature_c.rate"}

VALUES = st.one_of(
    st.floats(min_value=-100, max_value=-50, allow_nan=False),
    st.sampled_from([-71.0, -70.5, -70.0, -69.9, -69.5, -69.0, -61.0, -59.0, -89.5, -91.0]),
)
STEPS = st.one_of(st.floats(min_value=0, max_value=45, allow_nan=False), st.sampled_from([0.5, 1]))


class MemoryDb:
    """What the engine asks of its store, in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    async def run(self, fn: Any) -> Any:
        return fn()

    def load_alarms(self) -> dict[str, dict[str, Any]]:
        return {}

    def save_alarm(self, *, alarm: str, state: dict[str, Any], **_: Any) -> None:
        self.rows[alarm] = state

    def delete_alarm(self, alarm: str) -> None:
        self.rows.pop(alarm, None)


@dataclass
class Sample:
    t: float
    value: float


class EngineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock, self.wall = Clock(), Clock()
        self.broker = Broker()
        self.notices: list[AlarmNotice] = []
        self.engine = AlarmEngine(
            # state_dir is never written: the store is in memory.
            config=room(Path(tempfile.gettempdir()), RULES),
            mqtt=self.broker,
            topics=Topics(prefix="b", site="s", controller="c"),
            db=MemoryDb(),  # type: ignore[arg-type]
            notify=self.notices.append,
            clock=self.clock,
            wall=self.wall,
        )
        self.loop.run_until_complete(self.engine.__aenter__())
        self.samples: list[Sample] = []  # temperatures the detectors were fed
        self.door_open_at: float | None = None
        self.door_closed_at: float | None = None
        self.door_opened_for = 0.0
        self.last_reading = self.clock.t
        self.temperature_seen = self.clock.t
        self.failing = False
        self.occurrence = {alarm: 0 for alarm in ALARMS}
        self.condition = {alarm: False for alarm in ALARMS}
        self.seen_notices = 0

    def teardown(self) -> None:
        self.loop.run_until_complete(self.engine.__aexit__(None, None, None))
        self.loop.close()

    # ------------------------------------------------------------------ inputs

    def _advance(self, dt: float) -> None:
        self.clock.t += dt
        self.wall.t += dt

    def _settle(self) -> None:
        self.loop.run_until_complete(self.engine.flush())
        self._check_transitions()

    def _door(self, door: bool) -> None:
        now = self.clock.t
        if door and self.door_open_at is None:
            self.door_open_at, self.door_closed_at = now, None
        elif not door and self.door_open_at is not None:
            self.door_opened_for = now - self.door_open_at
            self.door_open_at, self.door_closed_at = None, now

    @rule(value=VALUES, door=st.booleans(), dt=STEPS)
    def reading(self, value: float, door: bool, dt: float) -> None:
        self._advance(dt)
        self._door(door)
        self.samples.append(Sample(self.clock.t, value))
        self.last_reading = self.temperature_seen = self.clock.t
        self.failing = False
        reading = Reading(values={"temperature_c": value, "door_open": float(door)})
        self.engine.on_reading("f1", reading)
        self._settle()

    @rule(dt=STEPS)
    def sensor_fault(self, dt: float) -> None:
        self._advance(dt)
        self._door(False)
        self.last_reading = self.temperature_seen = self.clock.t
        self.failing = False
        reading = Reading(values={"door_open": 0.0}, faults={"temperature_c": "open circuit"})
        self.engine.on_reading("f1", reading)
        self._settle()

    @rule(dt=STEPS)
    def failed_poll(self, dt: float) -> None:
        self._advance(dt)
        self.failing = True
        self.engine.on_failure("f1", "timed out")
        self._settle()

    @rule(dt=STEPS)
    def quiet(self, dt: float) -> None:
        """Nothing from the poller: the engine's timer wakes."""
        self._advance(dt)
        self.engine.tick()
        self._settle()
        deadline = self.engine.next_deadline()
        assert deadline is None or deadline > self.clock.t  # never spins on a past deadline

    @rule(alarm=st.sampled_from(ALARMS))
    def ack(self, alarm: str) -> None:
        st_ = self.engine.points[alarm].state
        before = st_.acked
        try:
            self.loop.run_until_complete(self.engine.ack(alarm, operator="alice"))
        except AlarmCommandError:
            assert before
        else:
            assert not before and st_.acked
        self._check_transitions()

    @rule(alarm=st.sampled_from(ALARMS), duration=st.floats(min_value=1, max_value=120))
    def shelve(self, alarm: str, duration: float) -> None:
        self.loop.run_until_complete(
            self.engine.shelve(alarm, operator="alice", duration_s=duration, reason="test")
        )
        assert self.broker.retained[f"b/s/c/alarms/{alarm}"]["state"] == "shelved"
        self._check_transitions()

    @rule(alarm=st.sampled_from(ALARMS))
    def unshelve(self, alarm: str) -> None:
        shelved = self.engine.points[alarm].state.shelved_until is not None
        try:
            self.loop.run_until_complete(self.engine.unshelve(alarm, operator="alice"))
        except AlarmCommandError:
            assert not shelved
        else:
            assert shelved
        self._check_transitions()

    # ------------------------------------------------------------------ the rules, as stated

    def _grace_active(self, now: float) -> bool:
        if self.door_open_at is not None:
            return now - self.door_open_at < GRACE
        if self.door_closed_at is not None and self.door_opened_for < GRACE:
            return now - self.door_closed_at < RECOVERY
        return False

    def _check_transitions(self) -> None:
        """What changed in the last step happened for a reason the rules give."""
        now = self.clock.t
        high = self.engine.points[HIGH].state
        if high.occurrence != self.occurrence[HIGH]:
            # On-delay: above the limit at some reading at least ON_DELAY ago, and never back
            # past the deadband since.
            assert any(
                s.value > LIMIT
                and now - s.t >= ON_DELAY
                and all(later.value > LIMIT - DEADBAND for later in self.samples if later.t > s.t)
                for s in self.samples
            ), self.samples[-10:]
        if self.condition[HIGH] and not high.condition:
            # Off-delay and deadband: back past the deadband at least OFF_DELAY ago, and not
            # above the limit since (dithering inside the deadband never clears it).
            assert any(
                s.value <= LIMIT - DEADBAND
                and now - s.t >= OFF_DELAY
                and all(later.value <= LIMIT for later in self.samples if later.t > s.t)
                for s in self.samples
            ), self.samples[-10:]
        for notice in self.notices[self.seen_notices :]:
            if notice.event is Event.RAISED:
                self._check_raised(notice, now)
        self.seen_notices = len(self.notices)
        for alarm in ALARMS:
            point = self.engine.points[alarm]
            self.occurrence[alarm] = point.state.occurrence
            self.condition[alarm] = point.state.condition

    def _check_raised(self, notice: AlarmNotice, now: float) -> None:
        st_ = self.engine.points[notice.alarm].state
        assert not st_.masked, notice  # masked alarms are never annunciated
        if notice.alarm in GRACE_SUPPRESSED:
            assert not self._grace_active(now), notice
        if notice.alarm in VALUE_ALARMS:
            assert not self.engine.points["f1.comm_loss"].state.condition, notice

    # ------------------------------------------------------------------ invariants

    @invariant()
    def published_state_is_the_engine_state(self) -> None:
        for alarm, point in self.engine.points.items():
            payload = self.broker.retained[f"b/s/c/alarms/{alarm}"]
            st_ = point.state
            assert (payload["state"], payload["active"], payload["acked"]) == (
                st_.state,
                st_.active,
                st_.acked,
            ), alarm
            assert payload["occurrence"] == st_.occurrence

    @invariant()
    def each_occurrence_is_raised_once(self) -> None:
        raised = [(n.alarm, n.occurrence) for n in self.notices if n.event is Event.RAISED]
        assert len(raised) == len(set(raised))

    @invariant()
    def an_outage_is_one_alarm(self) -> None:
        if self.engine.points["f1.comm_loss"].state.condition:
            assert self.failing
            for alarm in [*VALUE_ALARMS, "f1.door_open", "f1.stale"]:
                assert self.engine.points[alarm].state.state in ("suppressed", "shelved"), alarm

    @invariant()
    def a_sensor_fault_suppresses_its_limits(self) -> None:
        fault = self.engine.points.get("f1.temperature_c.sensor_fault")
        if fault is not None and fault.state.condition:
            for alarm in VALUE_ALARMS:
                assert self.engine.points[alarm].state.state in ("suppressed", "shelved"), alarm

    @invariant()
    def the_door_grace_suppresses_the_high_alarms(self) -> None:
        if self._grace_active(self.clock.t):
            for alarm in GRACE_SUPPRESSED:
                assert self.engine.points[alarm].state.state in ("suppressed", "shelved"), alarm

    @invariant()
    def stale_means_no_fresh_data_while_answering(self) -> None:
        now = self.clock.t
        expected = not self.failing and (
            now - self.last_reading >= STALE or now - self.temperature_seen >= STALE
        )
        assert self.engine.points["f1.stale"].state.condition == expected

    @invariant()
    def shelves_run_out(self) -> None:
        for point in self.engine.points.values():
            until = point.state.shelved_until
            if until is not None:
                assert until - self.wall.t <= 120

    @invariant()
    def latched_until_acknowledged(self) -> None:
        st_ = self.engine.points["f1.temperature_c.high_high"].state
        if st_.active and not st_.condition:
            assert not st_.acked


TestEngineModel = EngineModel.TestCase
TestEngineModel.settings = settings(max_examples=60, stateful_step_count=50, deadline=None)
