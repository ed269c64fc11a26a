"""Pick jobs end to end: the durable outbox against a real broker and a real inventory, and
the pick command on the demo stack (simulators, daemon, inventoryd)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from controllerd.broker import PrivateBroker
from controllerd.config import parse_config
from controllerd.mqtt import MqttConnection
from controllerd.outbox import Outbox, open_state_db
from controllerd.topics import Topics
from inventory import Inventory, verify_store
from inventory import parse_config as parse_inventory_config
from inventory.events import Location

pytestmark = pytest.mark.system

SITE, ROOM = "site-j", "room-j"


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
