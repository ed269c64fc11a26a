"""The service in-process against a private Mosquitto and both stores: acks, head hashes,
quarantine with its alarm, the persistent session holding movements while the service is
down, duplicates acknowledged and ignored, and request/response queries."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controllerd.broker import PrivateBroker
from inventory import Inventory
from tests.inventory._chain import make_chain
from tests.inventory._controller import OutboxPublisher, run_all
from tests.inventory.conftest import StoreSpec, inventory_config
from tests.system._mqtt import Observer

pytestmark = pytest.mark.system

BASE = "biobank/site-a"


async def test_movements_are_stored_acknowledged_and_anchored(
    store_spec: StoreSpec, broker: PrivateBroker
) -> None:
    chains = {"room-1": make_chain("room-1", 120), "room-2": make_chain("room-2", 80)}
    async with Inventory(config=inventory_config(store_spec, port=broker.port)) as inventory:
        await inventory.wait_ready()
        publishers = [
            OutboxPublisher(
                port=broker.port, prefix="biobank", site="site-a", controller=c, events=e
            )
            for c, e in chains.items()
        ]
        async with asyncio.timeout(60):
            await run_all(publishers)
        heads = await inventory.store.heads()
    assert {c: h.seq for c, h in heads.items()} == {"room-1": 120, "room-2": 80}
    # A party connecting later learns the acks and head hashes from retained messages alone.
    async with Observer(port=broker.port, topic=f"{BASE}/inventory/#") as late:
        for controller, chain in chains.items():
            ack = await late.wait_for(f"{BASE}/inventory/acks/{controller}")
            head = await late.wait_for(f"{BASE}/inventory/heads/{controller}")
            assert ack["seq"] == len(chain)
            assert head["hash"] == chain[-1].hash
        status = await late.wait_for(f"{BASE}/inventory/status")
        alarm = await late.wait_for(f"{BASE}/inventory/alarms/quarantine")
    assert status["state"] == "offline"  # a clean stop says so itself
    assert alarm["active"] is False


async def _publish_raw(port: int, controller: str, payloads: list[bytes]) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port=port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        for payload in payloads:
            await client.publish(f"{BASE}/{controller}/events/movements", payload, qos=1)


async def test_bad_events_are_quarantined_with_an_alarm_and_block_the_ack(
    store_spec: StoreSpec, broker: PrivateBroker
) -> None:
    chain = make_chain("room-1", 6)
    wrong_hash = json.loads(chain[1].to_json())
    wrong_hash["to"]["position"] = "Z99"  # edited after sealing
    async with (
        Inventory(config=inventory_config(store_spec, port=broker.port)) as inventory,
        Observer(port=broker.port, topic=f"{BASE}/inventory/#") as obs,
    ):
        await inventory.wait_ready()
        await _publish_raw(
            broker.port,
            "room-1",
            [chain[0].to_json(), b"{oops", json.dumps(wrong_hash).encode(), chain[3].to_json()],
        )
        alarm = await obs.wait_for(
            f"{BASE}/inventory/alarms/quarantine", lambda b: b.get("value") == 3
        )
        assert alarm["active"] is True
        assert alarm["state"] == "unacked"
        notices = [b for t, b, _ in obs.messages if t == f"{BASE}/inventory/quarantine"]
        assert [(n["kind"], n["seq"]) for n in notices] == [
            ("malformed", None),
            ("hash", 2),
            ("sequence", 4),
        ]
        assert "out of sequence: expected seq 2, got 4" in notices[2]["reason"]
        assert obs.latest[f"{BASE}/inventory/acks/room-1"]["seq"] == 1  # nothing past the gap
        entries = await inventory.store.open_quarantine()
        assert [e.kind for e in entries] == ["malformed", "hash", "sequence"]
        assert entries[1].payload == json.dumps(wrong_hash)  # kept as received
        # The service is alive: the real seq 2 and 3 close the gap, the held seq 4 follows.
        await _publish_raw(broker.port, "room-1", [chain[1].to_json(), chain[2].to_json()])
        await obs.wait_for(f"{BASE}/inventory/acks/room-1", lambda b: b["seq"] == 4)
        alarm = await obs.wait_for(
            f"{BASE}/inventory/alarms/quarantine", lambda b: b.get("value") == 2
        )
        assert alarm["active"] is True  # the malformed and the forged one stay for a person
        assert [e.kind for e in await inventory.store.open_quarantine()] == ["malformed", "hash"]


async def test_the_broker_session_keeps_movements_while_the_inventory_is_down(
    store_spec: StoreSpec, broker: PrivateBroker
) -> None:
    """Nothing here republishes: each message is published once, at QoS 1, by a plain client,
    so what the inventory stores after a downtime came from its persistent broker session."""
    chain = make_chain("room-1", 11)
    config = inventory_config(store_spec, port=broker.port)
    ack = f"{BASE}/inventory/acks/room-1"
    async with Observer(port=broker.port, topic=f"{BASE}/inventory/acks/#") as obs:
        async with Inventory(config=config) as first:
            await first.wait_ready()
            await _publish_raw(broker.port, "room-1", [e.to_json() for e in chain[:5]])
            await obs.wait_for(ack, lambda b: b["seq"] == 5)
        # Down. Seq 4 and 5 come again (as from a controller that missed their ack), then 6-10.
        mark = obs.mark()
        await _publish_raw(broker.port, "room-1", [e.to_json() for e in chain[3:10]])
        async with Inventory(config=config) as second:
            await obs.wait_for(ack, lambda b: b["seq"] == 10, since=mark)
            # The duplicates are acknowledged and ignored.
            assert (second.stored, second.duplicates, second.quarantined) == (5, 2, 0)
        # Every message was PUBACKed, duplicates too: the next session gets no redelivery
        # (the broker would resend unacknowledged ones first), only what is new.
        mark = obs.mark()
        async with Inventory(config=config) as third:
            await third.wait_ready()
            await _publish_raw(broker.port, "room-1", [chain[10].to_json()])
            await obs.wait_for(ack, lambda b: b["seq"] == 11, since=mark)
            assert (third.stored, third.duplicates, third.quarantined) == (1, 0, 0)
    async with store_spec.open() as store:
        stored = await store.chain("room-1")
        assert await store.open_quarantine() == []
    assert [e.event_id for e in stored] == [str(e.event_id) for e in chain]


async def _ask(port: int, request: dict[str, Any] | bytes) -> dict[str, Any]:
    response_topic = f"test/replies/{uuid.uuid4().hex}"
    correlation = uuid.uuid4().bytes
    async with aiomqtt.Client(
        "127.0.0.1", port=port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(response_topic, qos=1)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic
        props.CorrelationData = correlation
        payload = request if isinstance(request, bytes) else json.dumps(request).encode()
        await client.publish(f"{BASE}/inventory/query", payload, qos=1, properties=props)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert message.properties is not None
                assert getattr(message.properties, "CorrelationData", None) == correlation
                assert isinstance(message.payload, bytes)
                reply: dict[str, Any] = json.loads(message.payload)
                return reply
    raise AssertionError("no reply")


async def test_queries_answer_on_the_response_topic(
    store_spec: StoreSpec, broker: PrivateBroker
) -> None:
    chain = make_chain("room-1", 30, barcodes=5)
    async with Inventory(config=inventory_config(store_spec, port=broker.port)) as inventory:
        await inventory.wait_ready()
        publisher = OutboxPublisher(
            port=broker.port, prefix="biobank", site="site-a", controller="room-1", events=chain
        )
        async with asyncio.timeout(30):
            await run_all([publisher])
        by_barcode = await _ask(broker.port, {"query": "barcode", "barcode": "room-1-T0002"})
        assert by_barcode["ok"] is True
        assert by_barcode["location"]["position"] == "P00027"
        assert [e["seq"] for e in by_barcode["history"]] == [3, 8, 13, 18, 23, 28]
        assert by_barcode["history"][0]["from"] is None
        assert by_barcode["history"][1]["controller"] == "room-1"
        rack = await _ask(broker.port, {"query": "rack", "store": "room-1-store", "rack": "R06"})
        assert {t["barcode"] for t in rack["tubes"]} == {"room-1-T0002"}  # moved at seq 28
        since = await _ask(broker.port, {"query": "since", "ts": chain[25].ts, "limit": 3})
        assert [e["seq"] for e in since["events"]] == [26, 27, 28]
        assert since["more"] is True
        bad = await _ask(broker.port, {"query": "rack", "store": "s"})
        assert bad["ok"] is False
        assert "rack" in bad["error"]
        garbage = await _ask(broker.port, b"\xff")
        assert garbage["ok"] is False
