"""Alarms end to end: simulators, a private broker, the daemon and four notifier channels.

The room runs its simulators 200x faster than real time (a cabinet warms past its limit in
seconds) with fast delays and escalation in the config; mail goes to a local SMTP server
(aiosmtpd) through Apprise, pages to `BASE/pages` and to exec notifiers writing files, and one
exec notifier fails while a flag file exists.

Each test works on devices of its own and waits for its own preconditions, so a test that
fails (or runs slowly on a loaded machine) leaves nothing another test depends on. Delays the
daemon measures in real time (door grace periods) are generous next to how long a test holds
a fault: the tests never race the daemon's clock.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
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
from controllerd.statedb import StateDb
from drivers import DeviceRejected
from drivers.opcua import OpcUaStoreDriver
from tests.system._mqtt import Observer
from tests.system.conftest import Stack, make_stack

pytestmark = pytest.mark.system

HIGH = {"limit": -75.0, "deadband": 0.5, "on_delay_s": 2.0, "severity": "critical"}
#: Far longer than any test holds a door open or waits for the cabinet to recover.
GRACE_S = 120.0
ESCALATE_S = 3.0
#: An exec notifier that appends the page (one JSON line) to the file named after -c.
WRITE_STDIN = ["sh", "-c", 'cat >> "$0" && echo >> "$0"']
#: An exec notifier that fails (exit status 1) while the file named after -c exists.
FAIL_IF_FLAG = ["sh", "-c", 'cat > /dev/null; test ! -e "$0"']


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


async def eventually(predicate: Callable[[], Any], what: str, *, timeout: float = 30.0) -> None:
    """Wait until `predicate()` holds (for state outside MQTT: files, mailboxes)."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


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
                                "grace_s": GRACE_S,
                                "recovery_s": GRACE_S,
                            },
                        },
                        "door_open": {"discrete": {"on_delay_s": GRACE_S}},
                    }
                }
            if device["id"] == "freezer-1":
                # A leakier cabinet: past -75 °C within seconds of its compressor failing.
                device["simulation"]["leak_tau_min"] = 300.0
            if device["kind"] == "ln2_tank":
                device["fill"] = {**device["fill"], "fill_timeout_s": 3.0, "max_fill_s": 600.0}
            if device["id"] == "ln2-2":
                # Just under its stop level: a stuck valve overfills it within seconds.
                device["simulation"]["initial_level_pct"] = 84.0
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
                # A room probe; its open-circuit code (-327.68 °C) would be far below `low`.
                device["alarms"] = {
                    "values": {"temperature_c": {"high": {"limit": 40.0}, "low": {"limit": -20.0}}}
                }
        data["operators"] = [
            {"id": "alice", "roles": ["ack", "shelve", "fill"]},
            {"id": "bob", "roles": ["pick"]},
        ]
        data["notifiers"] = [
            {"id": "pager", "type": "mqtt"},
            {"id": "script", "type": "exec", "command": [*WRITE_STDIN, str(workdir / "l1.jsonl")]},
            {
                "id": "mail",
                "type": "apprise",
                "url": f"mailto://127.0.0.1:{smtp_port}?from=controllerd@example.org"
                "&to=oncall@example.org&mode=insecure",
            },
            {
                "id": "flaky",
                "type": "exec",
                "retries": 1,
                "command": [*FAIL_IF_FLAG, str(workdir / "flaky-down")],
            },
            {
                "id": "manager",
                "type": "exec",
                "command": [*WRITE_STDIN, str(workdir / "l2.jsonl")],
            },
        ]
        data["escalation"] = {
            "renotify_every_s": 600.0,
            "levels": [
                {"notifiers": ["pager", "script", "mail", "flaky"]},
                {"notifiers": ["manager"], "after_s": ESCALATE_S},
            ],
        }

    with make_stack(workdir, edit=edit).running() as stack:
        yield stack


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


def is_state(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: body.get("state") == state


def pages(observer: Observer, since: int, prefix: str, event: str = "raised") -> list[str]:
    """Alarms (starting with `prefix`) paged on BASE/pages with `event` since a mark."""
    return [
        str(body.get("alarm"))
        for topic, body, _ in observer.messages[since:]
        if topic.endswith("/pages")
        and body.get("event") == event
        and str(body.get("alarm", "")).startswith(prefix)
    ]


async def polls(observer: Observer, stack: Stack, device: str, count: int, since: int) -> None:
    """Wait until `device` has published `count` telemetry messages since a mark: the engine
    has seen that many more polls."""
    topic = f"{stack.base}/devices/{device}/telemetry"
    async with asyncio.timeout(30):
        while sum(1 for t, _, _ in observer.messages[since:] if t == topic) < count:
            await observer.wait_for(topic, new=True)


async def test_compressor_failure_pages_escalates_acks_and_clears(
    alarm_room: Stack, observer: Observer, mailbox: tuple[Mailbox, int]
) -> None:
    base, workdir = alarm_room.base, alarm_room.workdir
    alarm = "freezer-1.temperature_c.high"
    topic = f"{base}/alarms/{alarm}"
    await observer.wait_for(topic, is_state("normal"))
    mark = observer.mark()
    await alarm_room.inject("freezer-1", "compressor_fail")
    try:
        raised = await observer.wait_for(topic, is_state("unacked"), since=mark, timeout=60)
        assert raised["active"] is True and raised["acked"] is False
        assert raised["severity"] == "critical" and raised["limit"] == -75.0
        assert raised["value"] > -75.0

        page = await observer.wait_for(
            f"{base}/pages",
            lambda b: b.get("alarm") == alarm and b.get("event") == "raised",
            since=mark,
        )
        assert page["level"] == 1 and page["controller"] == alarm_room.config.controller.id
        box, _ = mailbox
        subject = f"{alarm} raised"
        await eventually(
            lambda: (
                pages_in(workdir / "l1.jsonl")
                and any(subject in str(m["Subject"]) for m in box.messages)
            ),
            "the raise reaches the exec notifier and the mailbox",
        )
        assert [p["event"] for p in pages_in(workdir / "l1.jsonl")] == ["raised"]

        # Nobody acknowledges: level 2 is paged after its 3 s.
        await eventually(lambda: pages_in(workdir / "l2.jsonl"), "level 2 is paged")
        assert [(p["event"], p["level"]) for p in pages_in(workdir / "l2.jsonl")] == [
            ("escalated", 2)
        ]

        # Commands: malformed, unauthorised and unknown operators change nothing.
        bad = await command(alarm_room, "ack", {"command_id": "c-bad", "operator": "alice"})
        assert bad["ok"] is False and "alarm" in bad["error"]
        denied = await command(
            alarm_room, "ack", {"command_id": "c-bob", "operator": "bob", "alarm": alarm}
        )
        assert denied["ok"] is False and "may not ack" in denied["error"]
        stranger = await command(
            alarm_room, "ack", {"command_id": "c-eve", "operator": "eve", "alarm": alarm}
        )
        assert stranger["ok"] is False and "unknown operator" in stranger["error"]
        assert observer.latest[topic]["state"] == "unacked"

        ack_mark = observer.mark()
        ack = {"command_id": "c-ack-1", "operator": "alice", "alarm": alarm}
        reply = await command(alarm_room, "ack", ack)
        assert reply["ok"] is True and reply["result"]["state"] == "acked"
        await observer.wait_for(topic, is_state("acked"), since=ack_mark)
        again = await command(alarm_room, "ack", ack)
        assert again["ok"] is True and again.get("duplicate") is True
        # The ack is told to both levels that were paged.
        await eventually(
            lambda: [p["event"] for p in pages_in(workdir / "l2.jsonl")] == ["escalated", "acked"],
            "the ack reaches level 2",
        )
        assert pages_in(workdir / "l2.jsonl")[-1]["by"] == "alice"
    finally:
        await alarm_room.inject("freezer-1", "compressor_fail", clear=True)
    await observer.wait_for(topic, is_state("normal"), since=mark, timeout=60)
    # Back to normal is told to whoever was paged, at both levels.
    await eventually(
        lambda: (
            [p["event"] for p in pages_in(workdir / "l2.jsonl")][-1:] == ["cleared"]
            and [p["event"] for p in pages_in(workdir / "l1.jsonl")][-1:] == ["cleared"]
        ),
        "the return to normal reaches both levels",
    )
    assert [p["event"] for p in pages_in(workdir / "l1.jsonl")] == ["raised", "acked", "cleared"]
    assert pages(observer, mark, alarm) == [alarm]  # raised once, on the MQTT pager topic


async def test_door_opening_within_its_grace_pages_nobody(
    alarm_room: Stack, observer: Observer
) -> None:
    base = alarm_room.base
    telemetry = f"{base}/devices/freezer-2/telemetry"

    def temperature(body: dict[str, Any]) -> float:
        return float(body.get("values", {}).get("temperature_c", float("nan")))

    await observer.wait_for(telemetry, lambda b: temperature(b) < -76)
    mark = observer.mark()
    await alarm_room.inject("freezer-2", "door_open")
    try:
        # The cabinet warms past its -75 °C limit while the door is open (seconds, well inside
        # the 120 s grace however loaded the machine).
        await observer.wait_for(telemetry, lambda b: temperature(b) > -70, since=mark)
        await observer.wait_for(
            f"{base}/alarms/freezer-2.temperature_c.high", is_state("suppressed"), since=mark
        )
    finally:
        await alarm_room.inject("freezer-2", "door_open", clear=True)
    await observer.wait_for(telemetry, lambda b: temperature(b) < -76, since=mark)
    await polls(observer, alarm_room, "freezer-2", 2, since=observer.mark())  # two more polls
    freezer2 = [
        (t, body)
        for t, body, _ in observer.messages[mark:]
        if t.startswith(f"{base}/alarms/freezer-2.")
    ]
    assert not any(body["state"] == "unacked" for _, body in freezer2), freezer2
    assert pages(observer, mark, "freezer-2.") == []


async def test_open_sensor_is_a_sensor_alarm_and_no_temperature_alarm(
    alarm_room: Stack, observer: Observer
) -> None:
    base = alarm_room.base
    sensor_topic = f"{base}/alarms/probe-3.temperature_c.sensor_fault"
    mark = observer.mark()
    await alarm_room.inject("probe-3", "sensor_open")
    try:
        sensor = await observer.wait_for(sensor_topic, is_state("unacked"), since=mark)
        assert sensor["active"] is True
        seen = observer.mark()
        await polls(observer, alarm_room, "probe-3", 2, since=seen)  # more open-circuit polls
        bad = [
            body
            for t, body, _ in observer.messages[mark:]
            if t == f"{base}/devices/probe-3/telemetry" and body["quality"] == "bad"
        ]
        assert bad and all("temperature_c" not in body["values"] for body in bad)
        limits = [
            body
            for t, body, _ in observer.messages[mark:]
            if t.startswith(f"{base}/alarms/probe-3.temperature_c.")
            and not t.endswith(".sensor_fault")
        ]
        assert all(body["state"] in ("normal", "suppressed") for body in limits), limits
        assert pages(observer, mark, "probe-3.") == ["probe-3.temperature_c.sensor_fault"]
    finally:
        await alarm_room.inject("probe-3", "sensor_open", clear=True)
    await observer.wait_for(sensor_topic, is_state("rtn_unacked"), since=mark)


async def test_a_failing_notifier_is_an_alarm_of_its_own_and_recovers(
    alarm_room: Stack, observer: Observer
) -> None:
    base = alarm_room.base
    controller = alarm_room.config.controller.id
    notifier_topic = f"{base}/alarms/{controller}.notifier-flaky"
    sensor_topic = f"{base}/alarms/probe-1.temperature_c.sensor_fault"
    flag = alarm_room.workdir / "flaky-down"
    mark = observer.mark()
    flag.touch()
    try:
        await alarm_room.inject("probe-1", "sensor_open")
        # The page for the sensor fault fails at `flaky` (and its one retry): its own alarm.
        failing = await observer.wait_for(notifier_topic, is_state("unacked"), since=mark)
        assert failing["severity"] == "high" and failing["device"] == controller
        assert "exit status 1" in failing["message"]
        # ... which the notifiers that work carry (the MQTT pager among them).
        await observer.wait_for(
            f"{base}/pages",
            lambda b: (
                b.get("alarm") == f"{controller}.notifier-flaky" and b.get("event") == "raised"
            ),
            since=mark,
        )
    finally:
        flag.unlink(missing_ok=True)
        await alarm_room.inject("probe-1", "sensor_open", clear=True)
    # The sensor's return is told to level 1, `flaky` included: it delivers again.
    await observer.wait_for(sensor_topic, is_state("rtn_unacked"), since=mark)
    recovered = await observer.wait_for(notifier_topic, is_state("rtn_unacked"), since=mark)
    assert recovered["active"] is False and "delivers again" in recovered["message"]


async def test_shelve_and_unshelve_over_mqtt_are_validated_and_audited(
    alarm_room: Stack, observer: Observer
) -> None:
    base = alarm_room.base
    alarm = "picker-1.comm_loss"  # no test touches the picker: its alarm is normal
    topic = f"{base}/alarms/{alarm}"
    await observer.wait_for(topic, is_state("normal"))
    run = uuid.uuid4().hex[:8]
    started = datetime.now(UTC)
    mark = observer.mark()
    refused: list[tuple[dict[str, Any], str, str]] = [
        ({"duration_s": 0, "reason": "defrost"}, "alice", "duration_s"),
        ({"duration_s": 90000, "reason": "defrost"}, "alice", "duration_s"),
        ({"duration_s": 60}, "alice", "reason: required field is missing"),
        ({"duration_s": 60, "reason": ""}, "alice", "reason"),
        ({"duration_s": "soon", "reason": "defrost"}, "alice", "duration_s"),
        ({"duration_s": 60, "reason": "defrost"}, "bob", "'bob' may not shelve"),
        (
            {"duration_s": 60, "reason": "defrost", "alarm": "no.such"},
            "alice",
            "no alarm 'no.such'",
        ),
    ]
    for index, (fields, operator, problem) in enumerate(refused):
        body = {"command_id": f"s-{run}-{index}", "operator": operator, "alarm": alarm, **fields}
        reply = await command(alarm_room, "shelve", body)
        assert reply["ok"] is False and problem in reply["error"], (body, reply)
        assert reply["command_id"] == body["command_id"] and reply["verb"] == "shelve"
    not_shelved = await command(
        alarm_room,
        "unshelve",
        {"command_id": f"u-{run}-0", "operator": "alice", "alarm": alarm},
    )
    assert not_shelved["ok"] is False and "is not shelved" in not_shelved["error"]
    assert not any(t == topic for t, _, _ in observer.messages[mark:])  # nothing changed

    shelve = {
        "command_id": f"s-{run}-ok",
        "operator": "alice",
        "alarm": alarm,
        "duration_s": 600,
        "reason": "picker maintenance",
    }
    reply = await command(alarm_room, "shelve", shelve)
    assert reply["ok"] is True, reply
    assert reply["result"]["state"] == "shelved"
    assert reply["result"]["shelve_reason"] == "picker maintenance"
    until = datetime.fromisoformat(reply["result"]["shelved_until"])
    assert started + timedelta(seconds=590) < until < datetime.now(UTC) + timedelta(seconds=610)
    shelved = await observer.wait_for(topic, is_state("shelved"), since=mark)
    assert shelved["shelved_until"] == reply["result"]["shelved_until"]
    unshelve = {"command_id": f"u-{run}-ok", "operator": "alice", "alarm": alarm}
    reply = await command(alarm_room, "unshelve", unshelve)
    assert reply["ok"] is True and reply["result"]["state"] == "normal"
    await observer.wait_for(topic, is_state("normal"), since=mark)

    # The audit log: every command, refused or applied, and the transitions, with who and when.
    async with StateDb(path=alarm_room.config.controller.state_dir / "controllerd.db") as db:
        commands = await db.run(lambda: db.audit_log("cmd."))
        transitions = await db.run(lambda: db.audit_log("alarm."))
    ours = {row[3]: row for row in commands if run in row[3]}
    assert set(ours) == {f"s-{run}-{i}" for i in range(len(refused))} | {
        f"u-{run}-0",
        f"s-{run}-ok",
        f"u-{run}-ok",
    }
    now = datetime.now(UTC)
    for ts, _, action, target, detail in ours.values():
        assert started - timedelta(seconds=1) <= datetime.fromisoformat(ts) <= now
        assert action == ("cmd.shelve" if target.startswith("s-") else "cmd.unshelve")
        assert ("error" in json.loads(detail)) == (not target.endswith("-ok"))
    assert {target: row[1] for target, row in ours.items()} == {
        target: "bob" if target == f"s-{run}-5" else "alice" for target in ours
    }
    assert json.loads(ours[f"s-{run}-ok"][4])["command"] == shelve
    mine = [(ts, actor, action) for ts, actor, action, target, _ in transitions if target == alarm]
    assert [(actor, action) for _, actor, action in mine[-2:]] == [
        ("alice", "alarm.shelved"),
        ("alice", "alarm.unshelved"),
    ]
    assert all(started - timedelta(seconds=1) <= datetime.fromisoformat(ts) for ts, *_ in mine[-2:])


async def test_retained_topic_of_an_unknown_alarm_is_removed(
    alarm_room: Stack, observer: Observer
) -> None:
    """A retained alarm no alarm owns (a device or rule since removed, another tool's debris)
    is deleted from the broker; the daemon's own alarms stay."""
    base = alarm_room.base
    ghost = f"{base}/alarms/freezer-9.temperature_c.high"
    known = f"{base}/alarms/freezer-1.comm_loss"
    await observer.wait_for(known)
    mark = observer.mark()
    async with aiomqtt.Client(
        "127.0.0.1", port=alarm_room.broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        body = {"alarm": "freezer-9.temperature_c.high", "state": "unacked", "active": True}
        await client.publish(ghost, json.dumps(body), qos=1, retain=True)
    await observer.wait_for(ghost, lambda b: b == {}, since=mark)  # the empty retained message

    # A dashboard connecting now gets the daemon's alarms and no ghost. Retained messages come
    # right after each SUBACK, so a marker published after both subscriptions comes last.
    marker = f"test/marker/{uuid.uuid4().hex}"
    async with aiomqtt.Client(
        "127.0.0.1", port=alarm_room.broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(ghost, qos=1)
        await client.subscribe(known, qos=1)
        await client.subscribe(marker, qos=1)
        await client.publish(marker, b"end", qos=1)
        seen = []
        async with asyncio.timeout(15):
            async for message in client.messages:
                seen.append(message.topic.value)
                if message.topic.value == marker:
                    break
    assert seen == [known, marker]


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


async def test_disconnect_is_one_alarm_that_a_restart_keeps_without_paging_again(
    alarm_room: Stack, observer: Observer
) -> None:
    """Runs last: it restarts the daemon."""
    base = alarm_room.base
    topic = f"{base}/alarms/probe-2.comm_loss"
    mark = observer.mark()
    await alarm_room.inject("probe-2", "disconnect")
    try:
        comm = await observer.wait_for(topic, is_state("unacked"), since=mark)
        assert comm["device"] == "probe-2"
        for value_alarm in ("probe-2.temperature_c.high", "probe-2.stale"):
            await observer.wait_for(
                f"{base}/alarms/{value_alarm}", is_state("suppressed"), since=mark
            )
        await polls(observer, alarm_room, "probe-2", 2, since=observer.mark())

        # The daemon restarts while the probe is still silent: the same occurrence, still
        # unacknowledged, and nobody is paged for it again.
        daemon = alarm_room.daemon
        assert daemon is not None
        daemon.terminate()
        daemon.wait(timeout=10)
        restart = observer.mark()
        alarm_room.start_daemon()
        await observer.wait_for(f"{base}/status", is_state("online"), since=restart)
        after = await observer.wait_for(topic, since=restart)
        assert (after["state"], after["occurrence"]) == ("unacked", comm["occurrence"])
    finally:
        await alarm_room.inject("probe-2", "disconnect", clear=True)
    back = await observer.wait_for(topic, is_state("rtn_unacked"), since=mark)
    assert back["occurrence"] == comm["occurrence"]
    # The pager resumed the occurrence: its return is told to level 1 (and it is the one page
    # since the restart: no second `raised`).
    await observer.wait_for(
        f"{base}/pages",
        lambda b: b.get("alarm") == "probe-2.comm_loss" and b.get("event") == "returned",
        since=restart,
    )
    assert pages(observer, restart, "probe-2.") == []
    assert pages(observer, mark, "probe-2.") == ["probe-2.comm_loss"]  # one alarm, not a flood
