"""The ISA-18.2 state model under random conditions, acks, shelves, masks and time steps."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controllerd.alarms import AlarmCommandError, AlarmState, Event

STATES = {"normal", "unacked", "acked", "rtn_unacked", "shelved", "suppressed", "out_of_service"}


class AlarmModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.alarm = AlarmState(alarm="a", latching=False)
        self.latched = AlarmState(alarm="b", latching=True)
        self.now = 0.0
        self.raised: dict[str, list[int]] = {"a": [], "b": []}
        self.last_occurrence = {"a": 0, "b": 0}

    def _record(self, st_: AlarmState, events: list[Event]) -> None:
        for event in events:
            if event is Event.RAISED:
                self.raised[st_.alarm].append(st_.occurrence)

    @rule(condition=st.booleans())
    def condition(self, condition: bool) -> None:
        for a in (self.alarm, self.latched):
            self._record(a, a.set_condition(condition))

    @rule()
    def ack(self) -> None:
        for a in (self.alarm, self.latched):
            before = a.acked
            try:
                self._record(a, a.ack())
            except AlarmCommandError:
                assert before or a.out_of_service
            else:
                assert a.acked

    @rule(duration=st.floats(min_value=0.1, max_value=100))
    def shelve(self, duration: float) -> None:
        for a in (self.alarm, self.latched):
            try:
                a.shelve(until=self.now + duration, reason="test")
            except AlarmCommandError:
                assert a.out_of_service

    @rule()
    def unshelve(self) -> None:
        for a in (self.alarm, self.latched):
            try:
                self._record(a, a.unshelve())
            except AlarmCommandError:
                assert a.shelved_until is None

    @rule(flag=st.booleans())
    def suppress(self, flag: bool) -> None:
        for a in (self.alarm, self.latched):
            self._record(a, a.set_suppressed(flag))

    @rule(flag=st.booleans())
    def out_of_service(self, flag: bool) -> None:
        for a in (self.alarm, self.latched):
            self._record(a, a.set_out_of_service(flag))

    @rule(step=st.floats(min_value=0, max_value=50))
    def time_passes(self, step: float) -> None:
        self.now += step
        for a in (self.alarm, self.latched):
            self._record(a, a.expire_shelve(self.now))
            if a.shelved_until is not None:
                assert a.shelved_until > self.now

    @precondition(lambda self: True)
    @invariant()
    def states_are_consistent(self) -> None:
        for a in (self.alarm, self.latched):
            assert a.state in STATES
            if a.state == "normal":
                assert not a.active and a.acked
            if a.state == "unacked":
                assert a.active and not a.acked and not a.masked
            if a.state == "acked":
                assert a.active and a.acked
            if a.state == "rtn_unacked":
                assert not a.active and not a.acked
            # An unmasked, active, unacknowledged occurrence has been annunciated.
            if a.active and not a.acked and not a.masked:
                assert a.announced
            assert a.occurrence >= self.last_occurrence[a.alarm]
            self.last_occurrence[a.alarm] = a.occurrence

    @invariant()
    def non_latching_follows_its_condition(self) -> None:
        assert self.alarm.active == self.alarm.condition

    @invariant()
    def latching_stays_until_acked(self) -> None:
        if self.latched.condition:
            assert self.latched.active
        if self.latched.active and not self.latched.condition:
            assert not self.latched.acked

    @invariant()
    def each_occurrence_pages_once(self) -> None:
        for occurrences in self.raised.values():
            assert len(occurrences) == len(set(occurrences))


TestAlarmModel = AlarmModel.TestCase
TestAlarmModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_cycle_through_the_states() -> None:
    a = AlarmState(alarm="x")
    assert a.state == "normal"
    assert a.set_condition(True) == [Event.RAISED]
    assert a.state == "unacked"
    assert a.ack() == [Event.ACKED]
    assert a.state == "acked"
    assert a.set_condition(False) == [Event.CLEARED]
    assert a.state == "normal"
    a.set_condition(True)
    assert a.set_condition(False) == [Event.RETURNED]
    assert a.state == "rtn_unacked"
    assert a.ack() == [Event.ACKED, Event.CLEARED]
    assert a.state == "normal"


def test_occurrence_under_a_mask_needs_no_ack_and_pages_nobody() -> None:
    a = AlarmState(alarm="x")
    a.set_suppressed(True)
    assert a.set_condition(True) == []
    assert a.state == "suppressed"
    assert a.set_condition(False) == []
    assert a.set_suppressed(False) == []
    assert a.state == "normal"


def test_unmasking_an_active_condition_raises_it() -> None:
    a = AlarmState(alarm="x")
    a.shelve(until=10.0, reason="maintenance")
    assert a.set_condition(True) == []
    assert a.state == "shelved"
    assert a.expire_shelve(5.0) == []
    assert a.expire_shelve(10.0) == [Event.UNSHELVED, Event.RAISED]
    assert a.state == "unacked"


def test_latching_alarm_holds_until_acked() -> None:
    a = AlarmState(alarm="x", latching=True)
    a.set_condition(True)
    assert a.set_condition(False) == []
    assert a.state == "unacked"
    assert a.ack() == [Event.ACKED, Event.CLEARED]
    assert a.state == "normal"


def test_ack_of_a_normal_alarm_is_refused() -> None:
    a = AlarmState(alarm="x")
    try:
        a.ack()
    except AlarmCommandError as exc:
        assert "nothing to acknowledge" in str(exc)
    else:
        raise AssertionError("ack of a normal alarm was accepted")
