"""Pick jobs end to end: the durable outbox against a real broker and a real inventory, and
the pick command on the demo stack (simulators, daemon, inventoryd)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controllerd.broker import PrivateBroker, free_port
from controllerd.config import parse_config
from controllerd.mqtt import MqttConnection
from controllerd.outbox import Outbox, open_state_db
from controllerd.specimen_map import SpecimenMap
from controllerd.topics import Topics
from inventory import Inventory, verify_store
from inventory import parse_config as parse_inventory_config
from inventory.events import Location
from simulators._control import inject as sim_inject
from simulators._control import status as sim_status
from tests.system._mqtt import Observer
from tests.system.conftest import Stack, make_stack

pytestmark = pytest.mark.system

SITE, ROOM = "site-j", "room-j"
FINAL = ("done", "failed", "cancelled")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as running:
        yield running


def _inventory(tmp_path: Path, port: int) -> Inventory:
    config = parse_inventory_config(
        {
            "inventory": {"site": SITE},
            "mqtt": {"port": port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5},
            "store": {"url": f"sqlite://{tmp_path / 'ledger.sqlite3'}"},
            "logging": {"format": "json"},
        }
    )
    return Inventory(config=config)


def _mqtt(tmp_path: Path, port: int) -> tuple[MqttConnection, Topics]:
    config = parse_config(
        {
            "controller": {"site": SITE, "id": ROOM, "state_dir": str(tmp_path / "state")},
            "mqtt": {"port": port, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5},
        }
    )
    topics = Topics(prefix="biobank", site=SITE, controller=ROOM)
    return MqttConnection(config=config, topics=topics), topics


def _record(outbox: Outbox, n: int) -> None:
    outbox.append(
        barcode=f"BC-{n:05d}",
        from_=Location(store="store-1", rack=f"R{n % 30:02d}", position="A1"),
        to=Location(store="store-1", rack="OUT-0001", position=f"A{n % 12 + 1}"),
        job="job-x",
        operator="alice",
        exposure_s=n / 10,
    )


async def test_outbox_delivers_exactly_once_through_broker_and_inventory_outages(
    tmp_path: Path, broker: PrivateBroker
) -> None:
    """Movements recorded while the broker restarts and while the inventory is down all reach
    the ledger exactly once, in one valid chain, and leave the outbox only once stored."""
    mqtt, topics = _mqtt(tmp_path, broker.port)
    db = open_state_db(tmp_path / "state" / "jobs.sqlite3")
    outbox = Outbox(db=db, mqtt=mqtt, topic=topics.movements, window=50, republish_s=1.0)
    mqtt.subscribe(topics.inventory_ack, outbox.handle_ack)
    inventory = _inventory(tmp_path, broker.port)
    async with mqtt, outbox:
        async with inventory:
            await inventory.wait_ready()
            await mqtt.wait_connected()
            for n in range(1, 101):
                _record(outbox, n)
            await asyncio.wait_for(outbox.wait_acked(100), timeout=30)
            assert outbox.stats().depth == 0
            # The broker crashes and comes back; movements keep being recorded meanwhile.
            await asyncio.to_thread(broker.kill)
            for n in range(101, 151):
                _record(outbox, n)
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(outbox.wait_acked(150), timeout=40)
        # The inventory is down: the outbox keeps everything past the ack.
        for n in range(151, 261):
            _record(outbox, n)
        await asyncio.sleep(1.5)
        stats = outbox.stats()
        assert stats.acked_seq == 150 and stats.depth == 110
        assert stats.oldest_age_s > 0
        async with inventory:
            await asyncio.wait_for(outbox.wait_acked(260), timeout=40)
            chain = await inventory.store.chain(ROOM)
            report = await verify_store(inventory.store)
    db.close()
    assert [event.seq for event in chain] == list(range(1, 261))
    assert len({event.event_id for event in chain}) == 260
    assert [event.barcode for event in chain] == [f"BC-{n:05d}" for n in range(1, 261)]
    assert not report.problems
    assert outbox.published >= 260


# ---------------------------------------------------------------------- the demo stack


def _room_edit(data: dict[str, Any]) -> None:
    data["operators"] = [
        {"id": "alice", "roles": ["pick", "cancel"]},
        {"id": "bob", "roles": ["ack"]},
    ]
    data["jobs"] = {"republish_s": 2.0}
    data["mqtt"]["reconnect_max_s"] = 1.0


@pytest.fixture(scope="module")
def job_room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = make_stack(tmp_path_factory.mktemp("jobs"), speed=20.0, edit=_room_edit)
    try:
        stack.start_simulators()
        stack.start_daemon()
        yield stack
    finally:
        stack.stop()


def _inventory_for(stack: Stack) -> Inventory:
    """The site's inventory service (a real one, in this process), for the room's movements."""
    config = parse_inventory_config(
        {
            "inventory": {"site": stack.config.controller.site},
            "mqtt": {
                "port": stack.broker.port,
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.5,
            },
            "store": {"url": f"sqlite://{stack.workdir / 'ledger.sqlite3'}"},
            "logging": {"format": "json"},
        }
    )
    return Inventory(config=config)


@pytest.fixture
async def ledger(job_room: Stack) -> AsyncIterator[Inventory]:
    async with _inventory_for(job_room) as inventory:
        await inventory.wait_ready()
        yield inventory


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
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        await client.publish(f"{stack.base}/cmd/{verb}", payload, qos=1, properties=props)
        async with asyncio.timeout(20):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return dict(json.loads(message.payload))
    raise AssertionError("no reply")


def specimen_map(stack: Stack) -> SpecimenMap:
    return SpecimenMap.in_state_dir(stack.config.controller.state_dir)


async def _loaded_map(stack: Stack) -> dict[str, list[tuple[str, str]]]:
    """rack -> [(position, barcode)] from the daemon's specimen map, once it is loaded."""
    async with asyncio.timeout(30):
        while True:
            path = stack.config.controller.state_dir / "specimen_map.sqlite3"
            if path.exists():
                with specimen_map(stack) as smap:
                    racks: dict[str, list[tuple[str, str]]] = {}
                    for rack in smap.racks("store-1"):
                        record = smap.rack("store-1", rack)
                        assert record is not None
                        racks[rack] = sorted(
                            (pos, code) for pos, code in record.tubes.items() if code
                        )
                if sum(len(v) for v in racks.values()) > 100:
                    return racks
            await asyncio.sleep(0.2)


async def _sim_status(stack: Stack) -> dict[str, Any]:
    return await sim_status(socket_path=Path(stack.control_socket))


async def test_bad_pick_commands_get_clear_errors_and_move_nothing(job_room: Stack) -> None:
    racks = await _loaded_map(job_room)
    known = next(code for tubes in racks.values() for _, code in tubes)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"operator": "alice", "barcodes": ["NO-SUCH-TUBE"]}, "unknown barcodes: NO-SUCH-TUBE"),
        ({"operator": "alice", "barcodes": []}, "barcodes"),
        ({"operator": "alice", "barcodes": [f"X{n}" for n in range(10_000)]}, "barcodes"),
        ({"operator": "alice", "barcodes": "BC-1"}, "barcodes"),
        ({"operator": "alice", "barcodes": [1, 2]}, "barcodes.0"),
        ({"operator": "alice", "barcodes": [known], "priority": "high"}, "priority"),
        ({"operator": "alice", "barcodes": [known, known]}, f"duplicate barcodes: {known}"),
        ({"operator": "alice", "barcodes": [known], "output_rack": "NOPE"}, "output_rack"),
        ({"operator": "mallory", "barcodes": [known]}, "unknown operator"),
        ({"operator": "bob", "barcodes": [known]}, "may not pick"),
        ({"operator": "alice", "barcodes": [known], "colour": "red"}, "colour: unknown field"),
    ]
    for body, expected in cases:
        reply = await command(job_room, "pick", {"command_id": uuid.uuid4().hex, **body})
        assert reply["ok"] is False, (body, reply)
        assert expected in reply["error"], (expected, reply["error"])
    reply = await command(
        job_room, "cancel", {"command_id": uuid.uuid4().hex, "operator": "alice", "job": "nope"}
    )
    assert reply["ok"] is False and "no unfinished job" in reply["error"]
    status = await _sim_status(job_room)
    assert status["devices"]["picker-1"]["executions"].get("pick", 0) == 0
    assert all(
        rack["location"] == "store" for rack in status["devices"]["store-1"]["racks"].values()
    )


async def test_pick_of_20_tubes_end_to_end(job_room: Stack, ledger: Inventory) -> None:
    racks = await _loaded_map(job_room)
    # 20 tubes over 6 racks: more racks than ports, so two batches.
    chosen: list[tuple[str, str, str]] = []
    for rack in sorted(racks)[:6]:
        for position, code in racks[rack][: 4 if len(chosen) < 16 else 2]:
            if len(chosen) < 20:
                chosen.append((rack, position, code))
    barcodes = [code for _, _, code in chosen]
    assert len(barcodes) == 20
    command_id = uuid.uuid4().hex
    async with Observer(port=job_room.broker.port, topic=f"{job_room.base}/#") as observer:
        body = {"command_id": command_id, "operator": "alice", "barcodes": barcodes}
        reply = await command(job_room, "pick", body)
        assert reply["ok"] is True, reply
        job = reply["result"]["job"]
        assert reply["result"]["total"] == 20
        again = await command(job_room, "pick", body)  # the same command: no second job
        assert again["duplicate"] is True and again["result"]["job"] == job
        claimed = await command(
            job_room,
            "pick",
            {"command_id": uuid.uuid4().hex, "operator": "alice", "barcodes": barcodes[:2]},
        )
        assert claimed["ok"] is False and f"({job})" in claimed["error"]
        done = await observer.wait_for(
            f"{job_room.base}/jobs/{job}", lambda b: b["state"] in FINAL, timeout=90
        )
        assert done["state"] == "done", done
        assert (done["done"], done["total"]) == (20, 20)
        progress = [
            body["done"]
            for topic, body, _ in observer.messages
            if topic == f"{job_room.base}/jobs/{job}"
        ]
        assert progress == sorted(progress) and len(set(progress)) == 21  # 0..20, every tube
    controller = job_room.config.controller.id
    async with asyncio.timeout(30):
        while len(await ledger.store.chain(controller)) < 20:  # noqa: ASYNC110 - a database
            await asyncio.sleep(0.2)
    chain = await ledger.store.chain(controller)
    events = [json.loads(event.payload) for event in chain]
    assert [e["seq"] for e in events] == list(range(1, 21))
    assert not (await verify_store(ledger.store)).problems
    source = {code: (rack, position) for rack, position, code in chosen}
    status = await _sim_status(job_room)
    out = status["station"]["OUT"]
    for event in events:
        assert event["job"] == job and event["operator"] == "alice"
        assert (event["from"]["rack"], event["from"]["position"]) == source[event["barcode"]]
        assert event["to"]["rack"] == out["rack"]
        assert out["tubes"][event["to"]["position"]] == event["barcode"]
        assert event["exposure_s"] > 0
    assert sorted(e["barcode"] for e in events) == sorted(barcodes)
    # The store's own inventory (its scans of the returned racks) no longer has them.
    assert all(r["location"] == "store" for r in status["devices"]["store-1"]["racks"].values())
    with specimen_map(job_room) as smap:
        assert all(smap.where(code) is None for code in barcodes)


def _journal_counts(stack: Stack, job: str) -> dict[str, int]:
    """Tube states of a job, read from the daemon's journal (survives every restart)."""
    with contextlib.closing(
        sqlite3.connect(stack.config.controller.state_dir / "jobs.sqlite3", timeout=10)
    ) as db:
        rows = db.execute(
            "SELECT state, COUNT(*) FROM job_tubes WHERE job = ? GROUP BY state", (job,)
        ).fetchall()
        (state,) = db.execute("SELECT state FROM jobs WHERE job = ?", (job,)).fetchone()
    counts = {str(s): int(n) for s, n in rows}
    counts["job_" + str(state)] = 1
    return counts


async def _until_counts(stack: Stack, job: str, predicate: Any, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not predicate(_journal_counts(stack, job)):  # noqa: ASYNC110 - a database
            await asyncio.sleep(0.1)


def _kill_daemon(stack: Stack) -> None:
    assert stack.daemon is not None
    os.killpg(stack.daemon.pid, signal.SIGKILL)
    stack.daemon.wait()
    stack.start_daemon()


async def test_faults_during_a_job_lose_and_duplicate_nothing(job_room: Stack) -> None:
    """Two kill -9 of the daemon at random steps, three broker restarts, the inventory down a
    while, a misread and a jam: every tube is where the movements say, each reported once."""
    rng = random.Random(8)
    racks = await _loaded_map(job_room)
    barcodes = [code for rack in sorted(racks)[6:11] for _, code in racks[rack][:6]]
    assert len(barcodes) == 30
    source = {code: (rack, pos) for rack in racks for pos, code in racks[rack] if code in barcodes}
    inventory = _inventory_for(job_room)
    sock = Path(job_room.control_socket)
    async with inventory:
        await inventory.wait_ready()
        reply = await command(
            job_room,
            "pick",
            {"command_id": uuid.uuid4().hex, "operator": "alice", "barcodes": barcodes},
        )
        assert reply["ok"] is True, reply
        job = reply["result"]["job"]
        await _until_counts(job_room, job, lambda c: c.get("done", 0) >= 2)
        await asyncio.sleep(rng.uniform(0, 0.5))
        await asyncio.to_thread(_kill_daemon, job_room)  # kill -9 number one
        await _until_counts(job_room, job, lambda c: c.get("done", 0) >= 4)
        await sim_inject("picker-1", "misread", socket_path=sock)
        await _until_counts(job_room, job, lambda c: c.get("failed", 0) >= 1)
        await sim_inject("picker-1", "misread", clear=True, socket_path=sock)
        await _until_counts(job_room, job, lambda c: c.get("done", 0) >= 6)
        await sim_inject("picker-1", "jam", socket_path=sock)
        await asyncio.sleep(1.0)
        await sim_inject("picker-1", "jam", clear=True, socket_path=sock)
        await _until_counts(job_room, job, lambda c: c.get("done", 0) >= 8)
        await asyncio.to_thread(job_room.broker.stop)  # broker restart number one
        await asyncio.to_thread(job_room.broker.start)
        await _until_counts(job_room, job, lambda c: c.get("done", 0) >= 12)
    # The inventory is down for a while; the broker restarts twice and the daemon is killed
    # again meanwhile.
    await asyncio.to_thread(job_room.broker.kill)
    await asyncio.to_thread(job_room.broker.start)
    await asyncio.sleep(rng.uniform(0, 1.0))
    await asyncio.to_thread(_kill_daemon, job_room)  # kill -9 number two
    await asyncio.to_thread(job_room.broker.stop)
    await asyncio.to_thread(job_room.broker.start)
    await _until_counts(job_room, job, lambda c: c.get("done", 0) >= 20)
    async with inventory:
        await inventory.wait_ready()
        await _until_counts(
            job_room, job, lambda c: c.get("job_done", 0) or c.get("job_failed", 0), timeout=90
        )
        counts = _journal_counts(job_room, job)
        moved = counts.get("done", 0)
        controller = job_room.config.controller.id
        async with asyncio.timeout(60):
            while True:
                chain = [json.loads(e.payload) for e in await inventory.store.chain(controller)]
                mine = [e for e in chain if e["job"] == job]
                if len(mine) >= moved:
                    break
                await asyncio.sleep(0.3)
        report = await verify_store(inventory.store)
    assert not report.problems, report.problems
    assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
    assert len(mine) == moved and len({e["barcode"] for e in mine}) == moved
    assert counts.get("failed", 0) >= 1 and moved + counts.get("failed", 0) == 30, counts
    status = await _sim_status(job_room)
    out = status["station"]["OUT"]["tubes"]
    for event in mine:
        assert (event["from"]["rack"], event["from"]["position"]) == source[event["barcode"]]
        assert out[event["to"]["position"]] == event["barcode"]
    left = set(barcodes) - {e["barcode"] for e in mine}
    with specimen_map(job_room) as smap:
        for code in barcodes:
            where = smap.where(code)
            if code in left:  # a misread tube stays where it was
                assert where is not None and (where.rack, where.position) == source[code]
            else:
                assert where is None
    assert sum(1 for code in out.values() if code in left) == 0


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[int]:
    """A Mosquitto that lets anyone publish anywhere except on movement topics."""
    port = free_port()
    acl = tmp_path / "acl"
    acl.write_text("topic deny +/+/+/events/movements\ntopic readwrite #\n")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {acl}\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_an_acl_denied_publish_is_not_a_delivery(tmp_path: Path, acl_broker: int) -> None:
    """The broker acknowledges a denied QoS 1 publish with a failure reason code."""
    mqtt, topics = _mqtt(tmp_path, acl_broker)
    db = open_state_db(tmp_path / "state" / "jobs.sqlite3")
    outbox = Outbox(db=db, mqtt=mqtt, topic=topics.movements, republish_s=60)
    async with mqtt:
        await mqtt.wait_connected()
        assert await mqtt.publish_confirmed(f"{topics.base}/other", b"{}") is None
        refusal = await mqtt.publish_confirmed(topics.movements, b"{}")
        assert refusal is not None and "Not authorized" in refusal
        async with outbox:
            _record(outbox, 1)
            await asyncio.sleep(1.0)
            assert outbox.published == 0
            assert outbox.stats().depth == 1
    db.close()
