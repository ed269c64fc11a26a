"""Pick jobs end to end: the durable outbox against a real broker and a real inventory, and
the pick command on the demo stack (simulators, daemon, inventoryd)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controllerd.broker import PrivateBroker
from controllerd.config import parse_config
from controllerd.mqtt import MqttConnection
from controllerd.outbox import Outbox, open_state_db
from controllerd.specimen_map import SpecimenMap
from controllerd.topics import Topics
from inventory import Inventory, verify_store
from inventory import parse_config as parse_inventory_config
from inventory.events import Location
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


@pytest.fixture(scope="module")
def job_room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = make_stack(tmp_path_factory.mktemp("jobs"), speed=50.0, edit=_room_edit)
    try:
        stack.start_simulators()
        stack.start_daemon()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def ledger(job_room: Stack) -> AsyncIterator[Inventory]:
    """The site's inventory service (a real one, in this process), for the room's movements."""
    config = parse_inventory_config(
        {
            "inventory": {"site": job_room.config.controller.site},
            "mqtt": {"port": job_room.broker.port, "reconnect_initial_s": 0.1},
            "store": {"url": f"sqlite://{job_room.workdir / 'ledger.sqlite3'}"},
            "logging": {"format": "json"},
        }
    )
    async with Inventory(config=config) as inventory:
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
