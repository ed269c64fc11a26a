"""Poll-loop logic with an in-memory driver and publisher (the real ones are system-tested)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controllerd.config import load_config
from controllerd.poller import DevicePoller
from controllerd.topics import Topics
from drivers import DeviceTimeout, Reading
from tests.unit.test_config import CONFIG_DIR


class ScriptedDriver:
    """Returns (or raises) the next scripted result on every read."""

    def __init__(self, results: list[Reading | Exception]) -> None:
        self.results = results

    @property
    def device_id(self) -> str:
        return "freezer-1"

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def read(self) -> Reading:
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    async def write(self, name: str, value: float) -> None:
        raise NotImplementedError


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], int, bool]] = []

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        self.sent.append((topic, json.loads(payload), qos, retain))
        return True

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, json.loads(payload), 0, False))
        return True

    def on(self, suffix: str) -> list[dict[str, Any]]:
        return [body for topic, body, _, _ in self.sent if topic.endswith(suffix)]


def _poller(results: list[Reading | Exception]) -> tuple[DevicePoller, RecordingPublisher]:
    device = load_config(CONFIG_DIR / "demo.toml").device("freezer-1")
    publisher = RecordingPublisher()
    poller = DevicePoller(
        device=device,
        driver=ScriptedDriver(results),
        mqtt=publisher,
        topics=Topics(prefix="biobank", site="s", controller="c"),
    )
    return poller, publisher


async def test_state_is_published_on_changes_only() -> None:
    good = Reading(values={"temperature_c": -80.1})
    timeout = DeviceTimeout("no answer within 0.5 s", device="freezer-1", operation="read")
    poller, pub = _poller(
        [
            good,
            Reading(values={"temperature_c": -80.2}),
            timeout,
            timeout,
            Reading(values={"temperature_c": -80.0}),
        ]
    )
    for _ in range(5):
        await poller.poll_once()
    states = pub.on("/state")
    assert [s["connected"] for s in states] == [True, False, True]
    assert states[1]["error"] == "freezer-1 read: no answer within 0.5 s"
    assert all(s["since"].endswith("Z") for s in states)
    retained = [(qos, retain) for topic, _, qos, retain in pub.sent if topic.endswith("/state")]
    assert set(retained) == {(1, True)}
    qualities = [t["quality"] for t in pub.on("/telemetry")]
    assert qualities == ["good", "good", "bad", "bad", "good"]
    assert pub.on("/telemetry")[2]["values"] == {}


async def test_sensor_fault_is_bad_quality_and_no_value() -> None:
    poller, pub = _poller(
        [
            Reading(
                values={"setpoint_c": -80.0}, faults={"temperature_c": "sensor fault code -32768"}
            )
        ]
    )
    await poller.poll_once()
    (telemetry,) = pub.on("/telemetry")
    assert telemetry["quality"] == "bad"
    assert "temperature_c" not in telemetry["values"]
    assert telemetry["faults"] == {"temperature_c": "sensor fault code -32768"}


async def test_frozen_value_becomes_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("controllerd.poller.time.monotonic", lambda: now[0])
    frozen = Reading(values={"temperature_c": -80.0, "door_open": 0.0})
    poller, pub = _poller([frozen] * 3 + [Reading(values={"temperature_c": -79.9})])
    for step in (0, 30, 61, 62):  # demo config: stale_after_s = 60 for temperature_c
        now[0] = 1000.0 + step
        await poller.poll_once()
    telemetry = pub.on("/telemetry")
    assert [t["quality"] for t in telemetry] == ["good", "good", "uncertain", "good"]
    assert telemetry[2]["stale"] == ["temperature_c"]


def test_watchdog_sees_a_stalled_poll_loop() -> None:
    from controllerd.supervisor import Supervisor

    config = load_config(CONFIG_DIR / "demo.toml")
    supervisor = Supervisor(config=config)
    poller, _ = _poller([])
    supervisor.pollers.append(poller)
    assert supervisor.stalled_pollers() == []
    # freezer-1 polls every 1 s with a 0.5 s timeout and 1 retry: a minute without a cycle
    # is far past any honest poll and must withhold the watchdog.
    poller.last_cycle -= 60
    assert supervisor.stalled_pollers() == ["freezer-1"]
