"""The durable outbox against an in-memory MQTT session: chain, durability, window, PUBACK
failures, end-to-end release and republication."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from controllerd.outbox import Outbox, OutboxError, open_state_db
from inventory.events import GENESIS_PREV_HASH, Location, MovementEvent, event_hash
from tests.unit.jobs._messages import fake_message

TOPIC = "biobank/s/r/events/movements"


class MemoryMqtt:
    """Accepts every publish (or refuses the next `refuse` ones with a PUBACK failure)."""

    def __init__(self) -> None:
        self.sent: list[MovementEvent] = []
        self.refuse = 0
        self.telemetry: list[dict[str, object]] = []

    async def publish_confirmed(
        self, topic: str, payload: bytes, *, timeout_s: float = 10.0
    ) -> str | None:
        assert topic == TOPIC
        await asyncio.sleep(0)
        if self.refuse:
            self.refuse -= 1
            return "PUBACK Not authorized"
        self.sent.append(MovementEvent.model_validate_json(payload))
        return None

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        self.telemetry.append(json.loads(payload))
        return True

    def seqs(self) -> list[int]:
        return [event.seq for event in self.sent]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_state_db(tmp_path / "jobs.sqlite3")
    yield conn
    conn.close()


def _move(outbox: Outbox, n: int) -> MovementEvent:
    return outbox.append(
        barcode=f"BC-{n:04d}",
        from_=Location(store="store-1", rack="R01", position=f"A{n % 12 + 1}"),
        to=Location(store="store-1", rack="OUT-0001", position=f"B{n % 12 + 1}"),
        job="job-1",
        operator="alice",
        exposure_s=1.25,
    )


async def _until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not (callable(predicate) and predicate()):  # noqa: ASYNC110 - polls state
            await asyncio.sleep(0.01)


async def test_events_form_a_gapless_hash_chain_that_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    mqtt = MemoryMqtt()
    db = open_state_db(path)
    async with Outbox(db=db, mqtt=mqtt, topic=TOPIC) as outbox:
        first = [_move(outbox, n) for n in range(3)]
    db.close()
    db = open_state_db(path)  # a restarted daemon continues the chain
    async with Outbox(db=db, mqtt=mqtt, topic=TOPIC) as outbox:
        later = [_move(outbox, n) for n in range(3, 5)]
        assert outbox.stats().depth == 5
    db.close()
    events = first + later
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_PREV_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    for event in events:
        assert event.hash == event_hash(event.wire_dict())


async def test_a_failing_transaction_records_nothing(db: sqlite3.Connection) -> None:
    async with Outbox(db=db, mqtt=MemoryMqtt(), topic=TOPIC) as outbox:

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        with pytest.raises(OutboxError, match="BC-0001"):
            outbox.append(
                barcode="BC-0001",
                from_=None,
                to=Location(store="s", rack="r", position="A1"),
                job=None,
                operator="alice",
                exposure_s=0,
                also=broken,
            )
        assert outbox.stats().depth == 0
        assert _move(outbox, 2).seq == 1  # the failed one used no seq


async def test_at_most_a_window_is_in_flight_and_acks_release(db: sqlite3.Connection) -> None:
    mqtt = MemoryMqtt()
    async with Outbox(db=db, mqtt=mqtt, topic=TOPIC, window=5, republish_s=60) as outbox:
        for n in range(12):
            _move(outbox, n)
        await _until(lambda: len(mqtt.sent) == 5)
        await asyncio.sleep(0.05)
        assert mqtt.seqs() == [1, 2, 3, 4, 5]
        assert outbox.acknowledge(3) == 3
        await _until(lambda: len(mqtt.sent) == 8)
        assert mqtt.seqs()[5:] == [6, 7, 8]
        assert outbox.stats().depth == 9
        assert outbox.acknowledge(2) == 0  # an old ack changes nothing
        assert outbox.acknowledge(99) == 9  # past the end: clamped to what exists
        assert outbox.stats().depth == 0
        assert outbox.stats().acked_seq == 12


async def test_a_refused_puback_is_not_delivery(db: sqlite3.Connection) -> None:
    mqtt = MemoryMqtt()
    mqtt.refuse = 2
    async with Outbox(db=db, mqtt=mqtt, topic=TOPIC, republish_s=60) as outbox:
        _move(outbox, 1)
        _move(outbox, 2)
        await _until(lambda: len(mqtt.sent) == 2, timeout=10)
        assert mqtt.seqs() == [1, 2]
        assert outbox.published == 2


async def test_without_an_end_to_end_ack_everything_past_it_goes_again(
    db: sqlite3.Connection,
) -> None:
    mqtt = MemoryMqtt()
    async with Outbox(db=db, mqtt=mqtt, topic=TOPIC, republish_s=0.2) as outbox:
        _move(outbox, 1)
        _move(outbox, 2)
        await _until(lambda: len(mqtt.sent) >= 4)
        assert mqtt.seqs()[:4] == [1, 2, 1, 2]
        assert {e.event_id for e in mqtt.sent[:2]} == {e.event_id for e in mqtt.sent[2:4]}
        outbox.acknowledge(2)
        count = len(mqtt.sent)
        await asyncio.sleep(0.5)
        assert len(mqtt.sent) == count  # acknowledged: nothing more to send


async def test_malformed_acks_are_ignored(db: sqlite3.Connection) -> None:
    async with Outbox(db=db, mqtt=MemoryMqtt(), topic=TOPIC, republish_s=60) as outbox:
        _move(outbox, 1)
        for payload in (b"", b"nonsense", b'{"seq": "1"}', b'{"seq": -1}', b"[]"):
            await outbox.handle_ack(fake_message(payload))
        assert outbox.stats().acked_seq == 0
        await outbox.handle_ack(fake_message(b'{"controller": "r", "seq": 1, "ts": "x"}'))
        assert outbox.stats().acked_seq == 1
        await outbox.wait_acked(1)


async def test_depth_and_age_are_published_as_telemetry(db: sqlite3.Connection) -> None:
    mqtt = MemoryMqtt()
    async with Outbox(
        db=db, mqtt=mqtt, topic=TOPIC, telemetry_topic="t", telemetry_s=0.05, republish_s=60
    ) as outbox:
        _move(outbox, 1)
        await _until(lambda: any(t["values"]["outbox_depth"] == 1.0 for t in mqtt.telemetry))  # type: ignore[index]
