"""Alarms end to end: simulators, a private broker, the daemon and three notifier channels.

The room runs its simulators 200x faster than real time (a cabinet warms past its limit in
seconds) with fast delays and escalation in the config; mail goes to a local SMTP server
(aiosmtpd) through Apprise, pages to `BASE/pages` and to an exec notifier writing files.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiosmtpd.controller import Controller
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controllerd.broker import free_port
from controllerd.config import TubeStoreConfig
from drivers import DeviceRejected
from drivers.opcua import OpcUaStoreDriver
from tests.system._mqtt import Observer
from tests.system.conftest import Stack, make_stack

pytestmark = pytest.mark.system

HIGH = {"limit": -75.0, "deadband": 0.5, "on_delay_s": 2.0, "severity": "critical"}
WRITE_STDIN = "import sys; open(sys.argv[1], 'ab').write(sys.stdin.buffer.read() + b'\\n')"


class Mailbox:
    """aiosmtpd handler: keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def pages_in(path: Path, alarm: str = "freezer-1.temperature_c.high") -> list[dict[str, Any]]:
    """The pages an exec notifier wrote for one alarm."""
    if not path.exists():
        return []
    pages = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [page for page in pages if page.get("alarm") == alarm]


@pytest.fixture(scope="module")
def alarm_room(
    tmp_path_factory: pytest.TempPathFactory, mailbox: tuple[Mailbox, int]
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("alarms")
    _, smtp_port = mailbox

    def edit(data: dict[str, Any]) -> None:
        data["simulator"]["speed"] = 200.0
        data["simulator"].pop("scenario", None)
        data["controller"]["heartbeat_s"] = 0.5
        for device in data["devices"]:
            if device["id"] in ("freezer-1", "freezer-2"):
                device["alarms"] = {
                    "values": {
                        "temperature_c": {
                            "high": HIGH,
                            "suppress_while": {
                                "value": "door_open",
                                "grace_s": 4.0,
                                "recovery_s": 30.0,
                            },
                        },
                        "door_open": {"discrete": {"on_delay_s": 4.0}},
                    }
                }
            if device["kind"] == "ln2_tank":
                device["fill"] = {**device["fill"], "fill_timeout_s": 3.0, "max_fill_s": 600.0}
            if device["kind"] == "tube_store":
                device["alarms"] = {
                    "values": {
                        "chamber_temperature_c": {"high": {"limit": -70.0, "on_delay_s": 1.0}},
                        "state_code": {"discrete": {"active_when": 2, "text": "store faulted"}},
                    }
                }
            if device["id"] == "probe-4":
                # Stale after 4 s instead of the demo's 60 s: the daemon measures real time.
                device["registers"][0]["stale_after_s"] = 4.0
            if device["id"] == "probe-3":
                device["alarms"] = {"values": {"temperature_c": {"high": {"limit": 40.0}}}}
        data["operators"] = [
            {"id": "alice", "roles": ["ack", "shelve", "fill"]},
            {"id": "bob", "roles": ["pick"]},
        ]
        data["notifiers"] = [
            {"id": "pager", "type": "mqtt"},
            {
                "id": "script",
                "type": "exec",
                "command": [sys.executable, "-c", WRITE_STDIN, str(workdir / "level1.jsonl")],
            },
            {
                "id": "mail",
                "type": "apprise",
                "url": f"mailto://127.0.0.1:{smtp_port}?from=controllerd@example.org"
                "&to=oncall@example.org&mode=insecure",
            },
            {
                "id": "manager",
                "type": "exec",
                "command": [sys.executable, "-c", WRITE_STDIN, str(workdir / "level2.jsonl")],
            },
        ]
        data["escalation"] = {
            "renotify_every_s": 600.0,
            "levels": [
                {"notifiers": ["pager", "script", "mail"]},
                {"notifiers": ["manager"], "after_s": 6.0},
            ],
        }

    stack = make_stack(workdir, edit=edit)
    try:
        stack.start_simulators()
        stack.start_daemon()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def observer(alarm_room: Stack) -> AsyncIterator[Observer]:
    async with Observer(port=alarm_room.broker.port, topic=f"{alarm_room.base}/#") as obs:
        await obs.wait_for(
            f"{alarm_room.base}/status", lambda b: b.get("state") == "online", timeout=30
        )
        yield obs


async def command(stack: Stack, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    """An MQTT 5 request with a response topic and correlation data; returns the reply."""
    correlation = uuid.uuid4().bytes
    reply_topic = f"test/replies/{uuid.uuid4().hex}"
    async with aiomqtt.Client(
        "127.0.0.1", port=stack.broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(reply_topic, qos=1)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        await client.publish(f"{stack.base}/cmd/{verb}", json.dumps(body), qos=1, properties=props)
        async with asyncio.timeout(15):
            async for message in client.messages:
                got = message.properties.CorrelationData if message.properties else None
                assert got == correlation
                return dict(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
    raise AssertionError("no reply")


def is_state(state: str) -> Any:
    return lambda body: body.get("state") == state


async def test_compressor_failure_pages_escalates_acks_and_clears(
    alarm_room: Stack, observer: Observer, mailbox: tuple[Mailbox, int]
) -> None:
    base = alarm_room.base
    topic = f"{base}/alarms/freezer-1.temperature_c.high"
    await observer.wait_for(topic, is_state("normal"), timeout=20)
    await alarm_room.inject("freezer-1", "compressor_fail")

    raised = await observer.wait_for(topic, is_state("unacked"), timeout=40)
    assert raised["active"] is True and raised["acked"] is False
    assert raised["severity"] == "critical" and raised["limit"] == -75.0
    assert raised["value"] > -75.0

    page = await observer.wait_for(
        f"{base}/pages",
        lambda b: b.get("alarm") == "freezer-1.temperature_c.high" and b.get("event") == "raised",
        timeout=10,
    )
    assert page["level"] == 1 and page["controller"] == alarm_room.config.controller.id
    box, _ = mailbox
    for _ in range(100):
        if pages_in(alarm_room.workdir / "level1.jsonl") and box.messages:
            break
        await asyncio.sleep(0.1)
    assert [p["event"] for p in pages_in(alarm_room.workdir / "level1.jsonl")] == ["raised"]
    subjects = [str(m["Subject"]) for m in box.messages]
    assert any("freezer-1.temperature_c.high raised" in s for s in subjects), subjects

    # Nobody acknowledges: level 2 is paged after its 6 s.
    for _ in range(150):
        if pages_in(alarm_room.workdir / "level2.jsonl"):
            break
        await asyncio.sleep(0.1)
    level2 = pages_in(alarm_room.workdir / "level2.jsonl")
    assert [(p["event"], p["level"]) for p in level2] == [("escalated", 2)]

    # Commands: malformed, unauthorised and unknown operators change nothing.
    bad = await command(alarm_room, "ack", {"command_id": "c-bad", "operator": "alice"})
    assert bad["ok"] is False and "alarm" in bad["error"]
    denied = await command(
        alarm_room,
        "ack",
        {"command_id": "c-bob", "operator": "bob", "alarm": "freezer-1.temperature_c.high"},
    )
    assert denied["ok"] is False and "may not ack" in denied["error"]
    stranger = await command(
        alarm_room,
        "ack",
        {"command_id": "c-eve", "operator": "eve", "alarm": "freezer-1.temperature_c.high"},
    )
    assert stranger["ok"] is False and "unknown operator" in stranger["error"]
    assert observer.latest[topic]["state"] == "unacked"

    mark = observer.mark()
    ack = {"command_id": "c-ack-1", "operator": "alice", "alarm": "freezer-1.temperature_c.high"}
    reply = await command(alarm_room, "ack", ack)
    assert reply["ok"] is True and reply["result"]["state"] == "acked"
    await observer.wait_for(topic, is_state("acked"), since=mark)
    again = await command(alarm_room, "ack", ack)
    assert again["ok"] is True and again.get("duplicate") is True
    # The ack is told to both levels that were paged.
    for _ in range(100):
        if [p["event"] for p in pages_in(alarm_room.workdir / "level2.jsonl")][-1:] == ["acked"]:
            break
        await asyncio.sleep(0.1)
    assert [p["event"] for p in pages_in(alarm_room.workdir / "level2.jsonl")] == [
        "escalated",
        "acked",
    ]

    await alarm_room.inject("freezer-1", "compressor_fail", clear=True)
    await observer.wait_for(topic, is_state("normal"), since=mark, timeout=40)
    raised_pages = [
        body
        for t, body, _ in observer.messages
        if t == f"{base}/pages"
        and body.get("alarm") == "freezer-1.temperature_c.high"
        and body.get("event") == "raised"
    ]
    assert len(raised_pages) == 1


async def test_door_opening_within_its_grace_pages_nobody(
    alarm_room: Stack, observer: Observer
) -> None:
    base = alarm_room.base
    telemetry = f"{base}/devices/freezer-2/telemetry"
    await observer.wait_for(
        telemetry, lambda b: b.get("values", {}).get("temperature_c", 0) < -76, timeout=30
    )
    mark = observer.mark()
    await alarm_room.inject("freezer-2", "door_open")
    await observer.wait_for(
        telemetry,
        lambda b: b.get("values", {}).get("temperature_c", -99) > -70,
        since=mark,
        timeout=20,
    )
    await alarm_room.inject("freezer-2", "door_open", clear=True)
    await observer.wait_for(
        telemetry,
        lambda b: b.get("values", {}).get("temperature_c", 0) < -76,
        since=mark,
        timeout=40,
    )
    await asyncio.sleep(1.0)
    freezer2 = [
        (t, body)
        for t, body, _ in observer.messages[mark:]
        if t.startswith(f"{base}/alarms/freezer-2.")
    ]
    assert any(body["state"] == "suppressed" for _, body in freezer2)
    assert not any(body["state"] == "unacked" for _, body in freezer2), freezer2
    assert not any(
        t == f"{base}/pages" and str(body.get("alarm", "")).startswith("freezer-2.")
        for t, body, _ in observer.messages[mark:]
    )


async def test_open_sensor_is_a_sensor_alarm_and_no_temperature_alarm(
    alarm_room: Stack, observer: Observer
) -> None:
    base = alarm_room.base
    mark = observer.mark()
    await alarm_room.inject("probe-3", "sensor_open")
    sensor = await observer.wait_for(
        f"{base}/alarms/probe-3.temperature_c.sensor_fault",
        is_state("unacked"),
        since=mark,
        timeout=20,
    )
    assert sensor["active"] is True
    await asyncio.sleep(3.0)  # more polls of the open-circuit code
    temperature = [
        body
        for t, body, _ in observer.messages[mark:]
        if t == f"{base}/alarms/probe-3.temperature_c.high"
    ]
    assert all(body["state"] in ("normal", "suppressed") for body in temperature), temperature
    await alarm_room.inject("probe-3", "sensor_open", clear=True)
    await observer.wait_for(
        f"{base}/alarms/probe-3.temperature_c.sensor_fault",
        is_state("rtn_unacked"),
        since=mark,
        timeout=20,
    )


async def test_disconnect_is_one_comm_loss_alarm(alarm_room: Stack, observer: Observer) -> None:
    base = alarm_room.base
    mark = observer.mark()
    await alarm_room.inject("freezer-2", "disconnect")
    comm = await observer.wait_for(
        f"{base}/alarms/freezer-2.comm_loss", is_state("unacked"), since=mark, timeout=30
    )
    assert comm["device"] == "freezer-2"
    await observer.wait_for(
        f"{base}/alarms/freezer-2.temperature_c.high", is_state("suppressed"), since=mark
    )
    await asyncio.sleep(2.0)
    raised = {
        body.get("alarm")
        for t, body, _ in observer.messages[mark:]
        if t == f"{base}/pages"
        and body.get("event") == "raised"
        and str(body.get("alarm")).startswith("freezer-2.")
    }
    assert raised == {"freezer-2.comm_loss"}
    await alarm_room.inject("freezer-2", "disconnect", clear=True)
    await observer.wait_for(
        f"{base}/alarms/freezer-2.comm_loss", is_state("rtn_unacked"), since=mark, timeout=30
    )


async def test_restart_keeps_an_unacked_alarm_and_pages_nobody_again(
    alarm_room: Stack, observer: Observer
) -> None:
    base = alarm_room.base
    topic = f"{base}/alarms/freezer-2.comm_loss"
    before = observer.latest.get(topic) or await observer.wait_for(topic)
    assert before["state"] == "rtn_unacked"
    alarm_room.daemon.terminate()  # type: ignore[union-attr]
    alarm_room.daemon.wait(timeout=10)  # type: ignore[union-attr]
    mark = observer.mark()
    alarm_room.start_daemon()
    await observer.wait_for(f"{base}/status", is_state("online"), since=mark, timeout=30)
    await asyncio.sleep(3.0)
    after = observer.latest[topic]
    assert after["state"] == "rtn_unacked"
    assert after["occurrence"] == before["occurrence"]
    assert not any(
        t == f"{base}/pages" and body.get("event") == "raised"
        for t, body, _ in observer.messages[mark:]
    )


async def test_fill_command_and_fill_alarms(alarm_room: Stack, observer: Observer) -> None:
    base = alarm_room.base
    mark = observer.mark()
    for body, problem in [
        ({"command_id": "f-1", "operator": "alice", "tank": "ln2-9", "action": "start"}, "ln2-9"),
        ({"command_id": "f-2", "operator": "alice", "tank": "ln2-1", "action": "drain"}, "action"),
        ({"command_id": "f-3", "tank": "ln2-1", "action": "start"}, "operator"),
        (
            {"command_id": "f-4", "operator": "bob", "tank": "ln2-1", "action": "start"},
            "may not fill",
        ),
    ]:
        reply = await command(alarm_room, "fill", body)
        assert reply["ok"] is False and problem in reply["error"], reply
    assert not any(
        t == f"{base}/devices/ln2-1/telemetry" and b.get("values", {}).get("filling") == 1
        for t, b, _ in observer.messages[mark:]
    )

    await alarm_room.inject("ln2-1", "supply_empty")
    reply = await command(
        alarm_room,
        "fill",
        {"command_id": "f-5", "operator": "alice", "tank": "ln2-1", "action": "start"},
    )
    assert reply["ok"] is True and reply["result"]["filling"] is True
    alarm = await observer.wait_for(
        f"{base}/alarms/ln2-1.fill_timeout", is_state("unacked"), since=mark, timeout=30
    )
    assert alarm["severity"] == "critical"
    reply = await command(
        alarm_room,
        "fill",
        {"command_id": "f-6", "operator": "alice", "tank": "ln2-1", "action": "stop"},
    )
    assert reply["ok"] is True and reply["result"]["filling"] is False
    await alarm_room.inject("ln2-1", "supply_empty", clear=True)

    await alarm_room.inject("ln2-2", "valve_stuck")
    reply = await command(
        alarm_room,
        "fill",
        {"command_id": "f-7", "operator": "alice", "tank": "ln2-2", "action": "start"},
    )
    assert reply["ok"] is True
    await observer.wait_for(
        f"{base}/alarms/ln2-2.valve_stuck_open", is_state("unacked"), since=mark, timeout=60
    )
    await alarm_room.inject("ln2-2", "valve_stuck", clear=True)


async def test_store_alarms(alarm_room: Stack, observer: Observer) -> None:
    base = alarm_room.base
    mark = observer.mark()
    await alarm_room.inject("store-1", "chamber_warm")
    warm = await observer.wait_for(
        f"{base}/alarms/store-1.chamber_temperature_c.high",
        is_state("unacked"),
        since=mark,
        timeout=60,
    )
    assert warm["value"] > -70.0
    await alarm_room.inject("store-1", "chamber_warm", clear=True)

    # A jam during a method call: the store goes Faulted, which is an alarm of the daemon's.
    store_config = alarm_room.config.device("store-1")
    assert isinstance(store_config, TubeStoreConfig)
    await alarm_room.inject("store-1", "robot_jam")
    async with OpcUaStoreDriver(device_id="test-client", config=store_config.driver) as client:
        await client.connect()
        with pytest.raises(DeviceRejected, match="robot jam"):
            await client.retrieve_rack("R0001", "P1")
        faulted = await observer.wait_for(
            f"{base}/alarms/store-1.state_code", is_state("unacked"), since=mark, timeout=30
        )
        assert faulted["message"] == "store faulted: robot jam during RetrieveRack R0001"
        await alarm_room.inject("store-1", "robot_jam", clear=True)
        await client.reset()
    await observer.wait_for(
        f"{base}/alarms/store-1.state_code", is_state("rtn_unacked"), since=mark, timeout=30
    )


async def test_stuck_value_is_uncertain_and_a_stale_alarm(
    alarm_room: Stack, observer: Observer
) -> None:
    base = alarm_room.base
    mark = observer.mark()
    await alarm_room.inject("probe-4", "stuck")
    try:
        stale = await observer.wait_for(
            f"{base}/devices/probe-4/telemetry",
            lambda b: b["quality"] == "uncertain",
            since=mark,
            timeout=30,
        )
        assert stale["stale"] == ["temperature_c"]
        alarm = await observer.wait_for(
            f"{base}/alarms/probe-4.temperature_c.stale", is_state("unacked"), since=mark
        )
        assert alarm["severity"] == "medium"
    finally:
        await alarm_room.inject("probe-4", "stuck", clear=True)
    await observer.wait_for(
        f"{base}/devices/probe-4/telemetry",
        lambda b: b["quality"] == "good",
        since=mark,
        timeout=30,
    )
