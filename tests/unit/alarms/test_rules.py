"""Each kind of rule through the engine (fake clock, its real SQLite store): off-delays, rates,
low limits, latching, out of service, stale data, and the defaults a device gets without config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controllerd.alarms import AlarmCommandError
from controllerd.alarms._detect import FreshnessDetector, RateDetector, TimeoutDetector
from controllerd.alarms._rules import RateRule
from controllerd.config import ConfigError, parse_config
from controllerd.statedb import StateDb
from tests.unit.alarms.test_engine import Harness

HIGH = "f1.temperature_c.high"


def events(h: Harness, alarm: str) -> list[str]:
    return [str(n.event) for n in h.notices if n.alarm == alarm]


async def later(h: Harness, dt: float) -> None:
    """Time passes without a reading (the engine's timer wakes)."""
    h.clock.t += dt
    h.wall.t += dt
    h.engine.tick()
    await h.engine.flush()


async def test_off_delay_holds_the_alarm_until_the_value_stays_back(tmp_path: Path) -> None:
    rules = {"values": {"temperature_c": {"high": {"limit": -70.0, "off_delay_s": 5}}}}
    h = Harness(tmp_path, rules)
    async with h.db, h.engine:
        await h.feed(-65)
        assert h.state(HIGH) == "unacked"
        await h.engine.ack(HIGH, operator="alice")
        await h.feed(-75)
        assert h.engine.next_deadline() == pytest.approx(h.clock.t + 5)
        for _ in range(4):
            await h.feed(-75)
        assert h.state(HIGH) == "acked"  # back for 4 s of its 5: still active
        await h.feed(-65)  # a blip above the limit restarts the off-delay
        for _ in range(5):
            await h.feed(-75)
        assert h.state(HIGH) == "acked"  # back for 4 s again
        await h.feed(-75)
        assert h.state(HIGH) == "normal"
        assert events(h, HIGH) == ["raised", "acked", "cleared"]  # one occurrence throughout


async def test_rate_of_change_alarms_on_a_fast_rise_only(tmp_path: Path) -> None:
    rate = {"limit_per_min": 1.0, "window_s": 60, "direction": "rise", "severity": "medium"}
    h = Harness(tmp_path, {"values": {"temperature_c": {"rate": rate}}})
    alarm = "f1.temperature_c.rate"
    async with h.db, h.engine:
        value = -80.0
        for _ in range(60):  # 0.5 °C/min for 10 minutes, a reading every 10 s
            value += 0.5 / 6
            await h.feed(value, dt=10)
        for step in [0.0] * 12 + [-0.5] * 30 + [0.0] * 12:  # steady, falling fast, steady
            value += step
            await h.feed(value, dt=10)
        assert events(h, alarm) == []
        for _ in range(3):  # 3 °C/min for 30 s: over the 60 s window, 1.5 °C/min
            value += 0.5
            await h.feed(value, dt=10)
        assert h.state(alarm) == "unacked"
        assert h.broker.retained[f"b/s/c/alarms/{alarm}"]["limit"] == 1.0
        for _ in range(12):  # steady for two minutes: the rate over the window is back to 0
            await h.feed(value, dt=10)
        assert h.state(alarm) == "rtn_unacked"
        assert events(h, alarm) == ["raised", "returned"]


def test_rate_needs_half_a_window_of_history() -> None:
    detector = RateDetector(RateRule(limit_per_min=1.0, window_s=60, direction="both"))
    detector.feed(0.0, 0.0)
    detector.feed(10.0, 20.0)  # 30 °C/min, but over 20 s of a 60 s window
    assert not detector.active and detector.rate_per_min is None
    detector.feed(20.0, 30.0)
    assert detector.active and detector.rate_per_min == pytest.approx(40.0)
    for t in range(40, 200, 10):
        detector.feed(20.0, float(t))
    assert not detector.active and detector.rate_per_min == pytest.approx(0.0)


async def test_low_and_low_low_limits_with_their_deadbands(tmp_path: Path) -> None:
    rules = {
        "values": {
            "temperature_c": {
                "low": {"limit": -90.0, "deadband": 1.0},
                "low_low": {"limit": -95.0, "deadband": 1.0, "severity": "critical"},
            }
        }
    }
    h = Harness(tmp_path, rules)
    low, low_low = "f1.temperature_c.low", "f1.temperature_c.low_low"
    async with h.db, h.engine:
        await h.feed(-85)
        assert (h.state(low), h.state(low_low)) == ("normal", "normal")
        await h.feed(-91)
        assert (h.state(low), h.state(low_low)) == ("unacked", "normal")
        await h.feed(-96)
        assert h.state(low_low) == "unacked"
        payload = h.broker.retained[f"b/s/c/alarms/{low_low}"]
        assert payload["severity"] == "critical" and payload["limit"] == -95.0
        await h.feed(-94.5)  # above the limit, inside the deadband: still active
        assert h.state(low_low) == "unacked"
        await h.feed(-93.5)
        assert (h.state(low), h.state(low_low)) == ("unacked", "rtn_unacked")
        await h.feed(-89.5)  # inside low's deadband
        assert h.state(low) == "unacked"
        await h.feed(-88.9)
        assert h.state(low) == "rtn_unacked"
        assert [n.alarm for n in h.notices if n.event == "raised"] == [low, low_low]


async def test_latching_alarm_holds_through_the_engine_and_a_restart(tmp_path: Path) -> None:
    rules = {"values": {"temperature_c": {"high": {"limit": -70.0, "latching": True}}}}
    h = Harness(tmp_path, rules)
    async with h.db, h.engine:
        await h.feed(-65)
        await h.feed(-80)  # the condition is gone; the alarm is not
        payload = h.broker.retained[f"b/s/c/alarms/{HIGH}"]
        assert (payload["state"], payload["active"]) == ("unacked", True)
    h2 = Harness(tmp_path, rules)
    async with h2.db, h2.engine:
        await h2.feed(-80)
        assert h2.state(HIGH) == "unacked"  # still latched after the restart
        await h2.engine.ack(HIGH, operator="alice")
        assert h2.state(HIGH) == "normal"
        assert events(h2, HIGH) == ["acked", "cleared"]
    assert events(h, HIGH) == ["raised"]


async def test_out_of_service_device_alarms_nothing_until_back_in_service(
    tmp_path: Path,
) -> None:
    rules = {"out_of_service": True, "values": {"temperature_c": {"high": {"limit": -70.0}}}}
    h = Harness(tmp_path, rules)
    async with h.db, h.engine:
        for _ in range(3):
            await h.feed(-60)
        await h.feed(None, faults={"temperature_c": "open circuit"})
        for _ in range(5):
            h.clock.t += 1
            h.engine.on_failure("f1", "timed out")
        await h.engine.flush()
        for alarm in (HIGH, "f1.comm_loss", "f1.stale", "f1.temperature_c.sensor_fault"):
            assert h.state(alarm) == "out_of_service", alarm
        assert h.notices == []
        with pytest.raises(AlarmCommandError, match="out of service"):
            await h.engine.ack(HIGH, operator="alice")
        with pytest.raises(AlarmCommandError, match="out of service"):
            await h.engine.shelve(HIGH, operator="alice", duration_s=60, reason="x")
    # Back in service (the config changed) while the cabinet is still warm: it is raised now.
    h2 = Harness(tmp_path, {"values": rules["values"]})
    async with h2.db, h2.engine:
        await h2.feed(-60)
        assert h2.state(HIGH) == "unacked"
        assert events(h2, HIGH) == ["raised"]


async def test_every_device_has_a_stale_data_alarm_by_default(tmp_path: Path) -> None:
    h = Harness(tmp_path)  # no alarms block at all
    async with h.db, h.engine:
        point = h.engine.points["f1.stale"]
        # Ten 1 s poll intervals (at least 30 s) plus the read budget (0.5 s x 2 tries).
        assert point.limit == pytest.approx(31.0)
        await h.feed(-80)
        await later(h, 30)
        assert h.state("f1.stale") == "normal"
        assert h.engine.next_deadline() == pytest.approx(h.clock.t + 1)
        await later(h, 1)  # a poll loop gone quiet: no readings, no failures
        payload = h.broker.retained["b/s/c/alarms/f1.stale"]
        assert payload["state"] == "unacked" and "no reading for 31 s" in payload["message"]
        await h.feed(-80)
        assert h.state("f1.stale") == "rtn_unacked"


async def test_a_reading_without_a_watched_value_is_stale_data(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"stale_after_s": 10})
    async with h.db, h.engine:
        assert h.engine.points["f1.stale"].limit == 10
        await h.feed(-80)
        for _ in range(9):
            await h.feed(None)  # the device answers without its temperature
        assert h.state("f1.stale") == "normal"
        await h.feed(None)
        payload = h.broker.retained["b/s/c/alarms/f1.stale"]
        assert payload["state"] == "unacked"
        assert "no fresh temperature_c for 10 s" in payload["message"]
        await h.feed(-80)
        assert h.state("f1.stale") == "rtn_unacked"
        for _ in range(20):  # a sensor fault is its own alarm, not stale data
            await h.feed(None, faults={"temperature_c": "open circuit"})
        assert events(h, "f1.stale") == ["raised", "returned"]


async def test_failing_polls_are_comm_loss_not_stale_data(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"stale_after_s": 2})
    async with h.db, h.engine:
        await h.feed(-80)
        for _ in range(10):
            h.clock.t += 1
            h.engine.on_failure("f1", "timed out")
            await h.engine.flush()
        assert h.state("f1.comm_loss") == "unacked"
        assert h.state("f1.stale") == "suppressed"
        assert events(h, "f1.stale") == []


async def test_stale_data_continues_across_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"stale_after_s": 5})
    async with h.db, h.engine:
        await h.feed(-80)
        await later(h, 6)
        assert h.state("f1.stale") == "unacked"
    h2 = Harness(tmp_path, {"stale_after_s": 5})
    async with h2.db, h2.engine:
        await later(h2, 0)
        assert h2.state("f1.stale") == "unacked"
        assert h2.notices == []  # the same occurrence: nobody paged again
        await h2.feed(-80)
        assert h2.state("f1.stale") == "rtn_unacked"


def test_stale_data_can_be_tuned_but_not_turned_off(tmp_path: Path) -> None:
    for bad in (0, -1, 10**6):
        with pytest.raises(ConfigError) as err:
            Harness(tmp_path, {"stale_after_s": bad})
        assert any("alarms.stale_after_s" in problem for problem in err.value.problems)
    tuned = Harness(tmp_path, {"stale_after_s": 120})
    assert tuned.engine.points["f1.stale"].limit == 120


def probe_room(tmp_path: Path, alarms: dict[str, Any] | None = None) -> Any:
    probe: dict[str, Any] = {
        "id": "p1",
        "kind": "probe",
        "poll_interval_s": 10.0,
        "driver": {"type": "modbus_tcp", "host": "127.0.0.1", "port": 15999, "timeout_s": 0.5},
        "registers": [{"name": "temperature_c", "address": 0, "scale": 0.01}],
    }
    if alarms is not None:
        probe["alarms"] = alarms
    return parse_config(
        {"controller": {"site": "s", "id": "c", "state_dir": str(tmp_path)}, "devices": [probe]}
    )


def test_a_probe_without_config_watches_a_minus_80_freezer(tmp_path: Path) -> None:
    from controllerd.alarms.engine import AlarmEngine
    from controllerd.topics import Topics
    from tests.unit.alarms.test_engine import Broker

    engine = AlarmEngine(
        config=probe_room(tmp_path),
        mqtt=Broker(),
        topics=Topics(prefix="b", site="s", controller="c"),
        db=StateDb(path=tmp_path / "db"),
    )
    points = engine.points
    assert (points["p1.temperature_c.high"].limit, points["p1.temperature_c.high"].severity) == (
        -70.0,
        "high",
    )
    assert points["p1.temperature_c.high_high"].limit == -60.0
    assert points["p1.temperature_c.high_high"].severity == "critical"
    assert points["p1.temperature_c.low"].limit == -95.0
    # Polled every 10 s: stale after ten intervals plus the read budget (0.5 s x 2 tries).
    assert points["p1.stale"].limit == pytest.approx(101.0)
    assert {"p1.comm_loss", "p1.stale"} <= set(points)


def test_a_device_whose_alarms_watch_no_value_is_stale_without_readings() -> None:
    from controllerd.alarms._detect import FreshnessDetector

    detector = FreshnessDetector(after_s=5.0, watched=(), now=0.0)  # a tube picker: no rules
    assert detector.deadline() == 5.0
    detector.reading({"x_mm": 1.0}, {}, 4.0)
    detector.tick(8.9)
    assert not detector.active and detector.deadline() == 9.0
    detector.tick(9.0)
    assert detector.active and detector.missing(9.0) == []


def test_at_its_deadline_a_delay_is_over_whatever_the_rounding() -> None:
    # 1021.6383533952527 + 5.0 rounds to 1026.6383533952526, and that minus 1021.63... rounds
    # below 5.0: a detector that compared the difference stayed pending at its own deadline,
    # and the engine's timer woke on a deadline that never passed (found by the state-machine
    # test of the engine).
    since, delay = 1021.6383533952527, 5.0
    assert (since + delay) - since < delay  # the rounding this is about
    comm = TimeoutDetector(after_s=delay, now=since)
    comm.failed(since + 1.0)
    deadline = comm.deadline()
    assert deadline == since + delay
    comm.tick(deadline)
    assert comm.active and comm.deadline() is None
    fresh = FreshnessDetector(after_s=delay, watched=["t"], now=since)
    deadline = fresh.deadline()
    assert deadline == since + delay
    fresh.tick(deadline)
    assert fresh.active and fresh.deadline() is None
    assert fresh.missing(deadline) == ["t"]
