"""LN2 tanks through the daemon process and MQTT: the demo room's two tanks on one line.

One module-wide room: a private broker, the daemon as its own process, and the simulated tanks
served from a thread of this process, so a test can pull the line's plug and read the tanks'
true state while the daemon polls them. Each test leaves the room as it found it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controllerd.config import Config, Ln2TankConfig
from controllerd.statedb import StateDb
from simulators import SimulatedRoom
from tests.system._mqtt import Observer
from tests.system.conftest import Stack, make_stack

pytestmark = pytest.mark.system

T = TypeVar("T")
TANKS = ("ln2-1", "ln2-2")
#: Every value an ln2_tank publishes once polled (hours_to_low needs an hour of history).
TANK_VALUES = {
    "temperature_a_c",
    "temperature_b_c",
    "ln2_level_mm",
    "ln2_level_pct",
    "filling",
    "lid_open",
    "bypass_open",
    "alarm_bits",
    "fill_elapsed_s",
    "fill_timeout",
    "valve_stuck_open",
    "fill_overrun",
}


class RoomThread:
    """The simulated room on its own event loop in a thread of the test process."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sim-room", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._room: SimulatedRoom | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None or self._room is None:
            raise RuntimeError("the simulated room did not start") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with SimulatedRoom(config=self._config, scenario=False) as room:
            self._room = room
            self._ready.set()
            await self._stop.wait()

    async def call(self, fn: Callable[[SimulatedRoom], Awaitable[T]]) -> T:
        """Run `fn(room)` on the room's loop and return its result."""
        assert self._loop is not None and self._room is not None
        room = self._room

        async def run() -> T:
            return await fn(room)

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return await asyncio.wrap_future(future)

    async def truth(self, device: str) -> dict[str, Any]:
        """The simulated tank's true state right now (read on the room's own loop)."""

        async def read(room: SimulatedRoom) -> dict[str, Any]:
            tank = room.tanks.get(device)
            assert tank is not None
            m = tank.model
            return {
                "level_pct": m.level_pct,
                "temperature_a_c": m.temperature_a_c,
                "temperature_b_c": m.temperature_b_c,
                "filling": m.filling,
                "lid_open": m.lid_open,
                "bypass_open": m.bypass_open,
                "alarm_bits": m.alarm_bits(),
                "fills": m.fills,
                "unreadable_requests": tank.unreadable_requests,
            }

        return await self.call(read)


@dataclass
class Ln2Room:
    stack: Stack
    sim: RoomThread

    @property
    def base(self) -> str:
        return self.stack.base

    def topic(self, device: str, what: str) -> str:
        return f"{self.base}/devices/{device}/{what}"

    async def inject(self, device: str, fault: str, *, clear: bool = False) -> None:
        await self.sim.call(lambda room: room.inject(device, fault, clear=clear))

    @property
    def port(self) -> str:
        """The one line both tanks are on."""
        ports = {d.driver.port for d in self.stack.config.devices if isinstance(d, Ln2TankConfig)}
        assert len(ports) == 1
        return ports.pop()


@pytest.fixture(scope="module")
def ln2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ln2Room]:
    def edit(data: dict[str, Any]) -> None:
        data["devices"] = [d for d in data["devices"] if d["kind"] == "ln2_tank"]
        data["simulator"].pop("scenario", None)
        for device in data["devices"]:
            device["poll_interval_s"] = 0.5
            device["driver"]["reconnect_max_s"] = 2.0
            device["alarms"] = {"comm_loss_after_s": 3.0}

    stack = make_stack(tmp_path_factory.mktemp("ln2"), speed=1.0, edit=edit)
    sim = RoomThread(stack.config)
    try:
        sim.start()
        stack.start_daemon()
        yield Ln2Room(stack=stack, sim=sim)
    finally:
        stack.stop()
        sim.stop()


@pytest.fixture
async def obs(ln2: Ln2Room) -> AsyncIterator[Observer]:
    async with Observer(port=ln2.stack.broker.port, topic=f"{ln2.base}/#") as observer:
        yield observer


def _after(obs: Observer, body: dict[str, Any]) -> int:
    """The mark just after the message `body` came in."""
    return next(i + 1 for i in range(len(obs.messages) - 1, -1, -1) if obs.messages[i][1] is body)


def good(body: dict[str, Any]) -> bool:
    return body.get("quality") == "good"


def assert_true_state(values: dict[str, float], truth: dict[str, Any]) -> None:
    """A published reading is the simulated tank's state (the level sensor adds 0.03 % noise,
    the wire carries 0.1 % and 0.01 °C)."""
    assert abs(values["ln2_level_pct"] - truth["level_pct"]) < 0.3
    assert abs(values["temperature_a_c"] - truth["temperature_a_c"]) < 0.05
    assert values["temperature_b_c"] == round(truth["temperature_b_c"], 2)
    for flag in ("filling", "lid_open", "bypass_open"):
        assert values[flag] == float(truth[flag]), flag
    assert values["alarm_bits"] == truth["alarm_bits"]


async def test_the_daemon_publishes_each_tank_as_the_simulator_has_it(
    ln2: Ln2Room, obs: Observer
) -> None:
    for tank in TANKS:
        body = await obs.wait_for(ln2.topic(tank, "telemetry"), good, timeout=30)
        assert set(body["values"]) >= TANK_VALUES
        assert_true_state(body["values"], await ln2.sim.truth(tank))
        state = await obs.wait_for(ln2.topic(tank, "state"))
        assert state["connected"] is True and state["kind"] == "ln2_tank"


async def test_noise_never_publishes_a_wrong_value_and_the_line_recovers(
    ln2: Ln2Room, obs: Observer
) -> None:
    before = {tank: (await ln2.sim.truth(tank))["unreadable_requests"] for tank in TANKS}
    mark = obs.mark()
    for tank in TANKS:
        await ln2.inject(tank, "noise")
    try:

        async def watch(tank: str) -> int:
            """Check every telemetry message of `tank` against the tank at that moment."""
            checked, since = 0, mark
            while checked < 4:
                body = await obs.wait_for(ln2.topic(tank, "telemetry"), since=since, timeout=60)
                since = _after(obs, body)
                if good(body):
                    assert_true_state(body["values"], await ln2.sim.truth(tank))
                    checked += 1
                else:
                    assert body["quality"] == "bad" and body["values"] == {}
            return checked

        await asyncio.gather(*(watch(tank) for tank in TANKS))
        after = {tank: (await ln2.sim.truth(tank))["unreadable_requests"] for tank in TANKS}
        assert after != before  # the tanks heard garbled requests, not only garbled replies
    finally:
        for tank in TANKS:
            await ln2.inject(tank, "noise", clear=True)
    mark = obs.mark()
    for tank in TANKS:
        body = await obs.wait_for(ln2.topic(tank, "telemetry"), good, since=mark, timeout=30)
        assert_true_state(body["values"], await ln2.sim.truth(tank))


async def test_unplug_and_replug_without_restarting_the_daemon(ln2: Ln2Room, obs: Observer) -> None:
    daemon = ln2.stack.daemon
    assert daemon is not None and daemon.poll() is None
    port = ln2.port
    mark = obs.mark()
    await ln2.sim.call(lambda room: room.tanks.unplug(port))
    try:
        for tank in TANKS:
            down = await obs.wait_for(
                ln2.topic(tank, "state"), lambda b: b["connected"] is False, since=mark, timeout=30
            )
            assert down["error"]
    finally:
        mark = obs.mark()
        await ln2.sim.call(lambda room: room.tanks.replug(port))
    for tank in TANKS:
        await obs.wait_for(
            ln2.topic(tank, "state"), lambda b: b["connected"] is True, since=mark, timeout=30
        )
        body = await obs.wait_for(ln2.topic(tank, "telemetry"), good, since=mark, timeout=30)
        assert_true_state(body["values"], await ln2.sim.truth(tank))
    assert daemon.poll() is None  # the same daemon process, never restarted


async def test_a_silent_tank_is_comm_loss_while_its_line_neighbour_answers(
    ln2: Ln2Room, obs: Observer
) -> None:
    mark = obs.mark()
    await ln2.inject("ln2-1", "disconnect")
    try:
        lost = await obs.wait_for(
            f"{ln2.base}/alarms/ln2-1.comm_loss",
            lambda b: b["state"] == "unacked",
            since=mark,
            timeout=30,
        )
        assert lost["active"] is True
        # ln2-2, on the same line, keeps answering while ln2-1 is silent.
        since = obs.mark()
        body = await obs.wait_for(ln2.topic("ln2-2", "telemetry"), good, since=since, timeout=30)
        assert_true_state(body["values"], await ln2.sim.truth("ln2-2"))
        assert obs.latest[ln2.topic("ln2-2", "state")]["connected"] is True
        assert not obs.latest.get(f"{ln2.base}/alarms/ln2-2.comm_loss", {}).get("active")
    finally:
        mark = obs.mark()
        await ln2.inject("ln2-1", "disconnect", clear=True)
    back = await obs.wait_for(
        f"{ln2.base}/alarms/ln2-1.comm_loss",
        lambda b: b["active"] is False,
        since=mark,
        timeout=30,
    )
    assert back["state"] in ("rtn_unacked", "normal")
    await obs.wait_for(ln2.topic("ln2-1", "telemetry"), good, since=mark, timeout=30)


async def command(ln2: Ln2Room, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    """An MQTT 5 request with a response topic and correlation data; returns the reply."""
    correlation = uuid.uuid4().bytes
    reply_topic = f"test/replies/{uuid.uuid4().hex}"
    async with aiomqtt.Client(
        "127.0.0.1", port=ln2.stack.broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(reply_topic, qos=1)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        await client.publish(f"{ln2.base}/cmd/{verb}", json.dumps(body), qos=1, properties=props)
        async with asyncio.timeout(15):
            async for message in client.messages:
                assert message.properties is not None
                assert message.properties.CorrelationData == correlation
                return dict(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
    raise AssertionError("no reply")


async def test_a_fill_runs_once_per_command_id_and_every_fill_is_audited(ln2: Ln2Room) -> None:
    run = uuid.uuid4().hex[:8]
    start = {"command_id": f"fill-{run}-1", "operator": "demo", "tank": "ln2-1", "action": "start"}
    stop = {"command_id": f"fill-{run}-2", "operator": "demo", "tank": "ln2-1", "action": "stop"}
    bad = {"command_id": f"fill-{run}-3", "operator": "demo", "tank": "ln2-1", "action": "drain"}
    fills = (await ln2.sim.truth("ln2-1"))["fills"]

    first = await command(ln2, "fill", start)
    assert first["ok"] is True and first["result"]["filling"] is True
    assert (await ln2.sim.truth("ln2-1"))["fills"] == fills + 1
    stopped = await command(ln2, "fill", stop)
    assert stopped["ok"] is True and stopped["result"]["filling"] is False

    again = await command(ln2, "fill", start)  # the same command_id: answered, not applied
    assert again["duplicate"] is True
    assert {k: again[k] for k in ("ok", "result", "ts")} == {
        k: first[k] for k in ("ok", "result", "ts")
    }
    truth = await ln2.sim.truth("ln2-1")
    assert truth["filling"] is False and truth["fills"] == fills + 1

    refused = await command(ln2, "fill", bad)
    assert refused["ok"] is False and "action" in refused["error"]
    assert (await ln2.sim.truth("ln2-1"))["fills"] == fills + 1

    async with StateDb(path=ln2.stack.config.controller.state_dir / "controllerd.db") as db:
        # (actor, action, target, detail) are the last four columns of every row.
        rows = [row[-4:] for row in await db.run(lambda: db.audit_log("cmd.fill"))]
    ours = [
        (actor, target, json.loads(detail)) for actor, _, target, detail in rows if run in target
    ]
    assert [target for _, target, _ in ours] == [c["command_id"] for c in (start, stop, bad)]
    assert all(actor == "demo" for actor, _, _ in ours)  # the repeat is not audited twice
    detail = {target: detail for _, target, detail in ours}
    assert detail[start["command_id"]]["command"] == start
    assert detail[start["command_id"]]["result"] == first["result"]
    assert detail[stop["command_id"]]["result"]["filling"] is False
    assert "action" in detail[bad["command_id"]]["error"]
