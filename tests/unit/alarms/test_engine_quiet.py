"""The engine's quiet path (a reading or a timer tick that changes no alarm of a device whose
alarms are all normal) against the full evaluation, on the same random inputs.

Every poll of a healthy device takes the quiet path, so it must be exactly the full path's
shortcut: after every step both engines have published the same messages, paged the same
events, stored the same rows and hold the same state, values, texts and next deadline.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from controllerd.alarms import AlarmCommandError
from controllerd.alarms.engine import AlarmEngine, AlarmNotice, _Device
from controllerd.config import parse_config
from controllerd.topics import Topics
from drivers import Reading
from tests.unit.alarms.test_engine import Broker, Clock
from tests.unit.alarms.test_engine_model import RULES, MemoryDb

ALARMS = [
    "f1.temperature_c.high",
    "f1.temperature_c.high_high",
    "f1.temperature_c.low",
    "f1.temperature_c.rate",
    "f1.door_open",
    "f1.comm_loss",
    "f1.stale",
    "f1.temperature_c.stale",
]


def _config(door_rule: bool) -> Any:
    registers = [
        {"name": "temperature_c", "address": 0, "table": "input", "scale": 0.1},
        {"name": "door_open", "address": 1, "table": "input", "type": "uint16"},
    ]
    registers[0]["stale_after_s"] = 20
    freezer = {
        "id": "f1",
        "kind": "ult_freezer",
        "poll_interval_s": 1.0,
        "driver": {"type": "modbus_tcp", "host": "127.0.0.1", "port": 15999, "timeout_s": 0.5},
        "registers": registers,
        "alarms": RULES,
    }
    if not door_rule:  # the door only opens grace periods: nothing else leaves the quiet path
        values = {"temperature_c": RULES["values"]["temperature_c"], "door_open": {}}
        freezer["alarms"] = {**RULES, "values": values}
    return parse_config(
        {
            # state_dir is never written: the store is in memory.
            "controller": {"site": "s", "id": "c", "state_dir": tempfile.gettempdir()},
            "devices": [freezer],
        }
    )


class _FullEngine(AlarmEngine):
    """Never quiet: every reading and tick takes the full evaluation."""

    @staticmethod
    def _is_quiet(dev: _Device, now: float) -> bool:
        return False


class _Side:
    def __init__(
        self, engine_class: type[AlarmEngine], loop: asyncio.AbstractEventLoop, door_rule: bool
    ) -> None:
        self.loop = loop
        self.clock, self.wall = Clock(), Clock()
        self.broker = Broker()
        self.db = MemoryDb()
        self.notices: list[AlarmNotice] = []
        self.engine = engine_class(
            config=_config(door_rule),
            mqtt=self.broker,
            topics=Topics(prefix="b", site="s", controller="c"),
            db=self.db,  # type: ignore[arg-type]
            notify=self.notices.append,
            clock=self.clock,
            wall=self.wall,
        )
        for point in self.engine.points.values():
            point.since = "start"  # both engines' points stamped alike (see `_STAMP`)
        loop.run_until_complete(self.engine.__aenter__())

    def step(self, action: tuple[Any, ...]) -> str:
        kind, dt = action[0], action[1]
        self.clock.t += dt
        self.wall.t += dt
        engine = self.engine
        outcome = ""
        if kind == "reading":
            _, _, temperature, door, stale, text = action
            values = {"door_open": door}
            if temperature is not None:
                values["temperature_c"] = temperature
            texts = {"door_open": text} if text else {}
            stale_values = ["temperature_c"] if stale else []
            engine.on_reading("f1", Reading(values=values, texts=texts), stale_values)
        elif kind == "fault":
            faults = {"temperature_c": "open circuit"}
            engine.on_reading("f1", Reading(values={"door_open": 0.0}, faults=faults))
        elif kind == "failure":
            engine.on_failure("f1", "timed out")
        elif kind == "tick":
            engine.tick()
        else:
            alarm = action[2]
            try:
                if kind == "ack":
                    self.loop.run_until_complete(engine.ack(alarm, operator="alice"))
                elif kind == "shelve":
                    self.loop.run_until_complete(
                        engine.shelve(alarm, operator="alice", duration_s=30, reason="test")
                    )
                else:
                    self.loop.run_until_complete(engine.unshelve(alarm, operator="alice"))
            except AlarmCommandError as exc:
                outcome = str(exc)
        self.loop.run_until_complete(engine.flush())
        return outcome

    def observed(self) -> Any:
        points = {
            alarm: (vars(point.state), point.value, point.text, point.since, point.last_state)
            for alarm, point in self.engine.points.items()
        }
        return (
            self.broker.retained,
            [(n.event, n.alarm, n.occurrence, n.payload) for n in self.notices],
            self.db.rows,
            points,
            self.engine.next_deadline(),
        )


TEMPERATURES = st.one_of(
    st.none(),
    # each limit (high -70, high_high -60, low -90), just inside and just past it
    st.sampled_from(
        [-80.0, -75.0, -71.0, -70.5, -70.0, -69.9, -69.0, -60.0, -59.9, -89.5, -90.0, -90.1, -91.0]
    ),
)
DT = st.sampled_from([0.0, 0.5, 1.0, 3.0, 6.0, 25.0, 45.0])
#: a calm reading, the quiet path's case (some after long gaps: shelves and delays run out)
CALM = st.tuples(
    st.just("reading"),
    st.sampled_from([1.0, 1.0, 1.0, 35.0]),
    st.sampled_from([-80.0, -80.0, -80.0, None]),  # None: a watched value goes missing
    st.just(0.0),
    st.just(False),
    st.sampled_from(["", "", "", "door jammed"]),
)
#: a calm device's first reading past a limit (or just inside it)
NUDGE = st.tuples(
    st.just("reading"),
    st.just(1.0),
    st.sampled_from([-70.0, -69.9, -60.0, -59.9, -90.0, -90.1]),
    st.just(0.0),
    st.just(False),
    st.just(""),
)
ACTIONS = st.one_of(
    NUDGE,
    st.tuples(
        st.just("reading"),
        DT,
        TEMPERATURES,
        st.sampled_from([0.0, 1.0]),
        st.booleans(),
        st.sampled_from(["", "door jammed", "door ajar"]),
    ),
    CALM,
    CALM,
    CALM,
    st.tuples(st.just("fault"), DT),
    st.tuples(st.just("failure"), DT),
    st.tuples(st.just("tick"), DT),
    st.tuples(
        st.sampled_from(["ack", "shelve", "unshelve"]), st.just(0.0), st.sampled_from(ALARMS)
    ),
)


#: the engine's `since` stamps, the same for both engines at the same step
_STAMP = ["start"]


_CALM = ("reading", 1.0, -80.0, 0.0, False, "")


@settings(max_examples=200, deadline=None)
@given(actions=st.lists(ACTIONS, max_size=60), door_rule=st.booleans())
# a calm device's alarm shelved by an operator, the shelve running out during calm readings
@example(
    actions=[
        _CALM,
        _CALM,
        ("shelve", 0.0, "f1.temperature_c.high"),
        (*_CALM[:1], 35.0, *_CALM[2:]),
    ],
    door_rule=True,
).via("the shelve on a quiet device")
# a calm device's door opening a grace period (no door alarm of its own), then a warm reading
@example(
    actions=[
        _CALM,
        _CALM,
        ("reading", 1.0, -80.0, 1.0, False, ""),
        ("reading", 1.0, -65.0, 0.0, False, ""),
    ],
    door_rule=False,
).via("the grace period on a quiet device")
def test_the_quiet_path_does_what_the_full_evaluation_does(
    actions: list[Any], door_rule: bool
) -> None:
    loop = asyncio.new_event_loop()
    with mock.patch("controllerd.alarms.engine.utc_now", lambda: _STAMP[0]):
        quick = _Side(AlarmEngine, loop, door_rule)
        full = _Side(_FullEngine, loop, door_rule)
        try:
            for step, action in enumerate(actions):
                _STAMP[0] = f"step {step}"
                assert quick.step(action) == full.step(action), action
                assert quick.observed() == full.observed(), action
        finally:
            for side in (quick, full):
                loop.run_until_complete(side.engine.__aexit__(None, None, None))
    loop.close()


def test_calm_readings_take_the_quiet_path() -> None:
    """The shortcut is taken at all (else the test above compares the full path to itself)."""
    loop = asyncio.new_event_loop()
    side = _Side(AlarmEngine, loop, door_rule=True)
    try:
        for _ in range(3):
            side.step(("reading", 1.0, -80.0, 0.0, False, ""))
        assert side.engine._devices["f1"].quiet
        side.step(("reading", 1.0, -65.0, 0.0, False, ""))  # above the high limit: on-delay runs
        assert not side.engine._devices["f1"].quiet
    finally:
        loop.run_until_complete(side.engine.__aexit__(None, None, None))
        loop.close()
