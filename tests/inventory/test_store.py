"""Both stores behind one interface: storing, queries, quarantine, and `verify` finding every
kind of tampering at the right event (an edit, a deletion in the middle or at the end, a swap,
an insertion in the middle or at the end, a replaced last event: the last three only the stored
head can show). Runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from inventory import Store, verify_store
from inventory._intake import Intake
from inventory.events import MovementEvent
from tests.inventory._chain import make_chain, ts_at
from tests.inventory.conftest import StoreSpec

pytestmark = pytest.mark.system


async def _fill(store: Store, controllers: dict[str, int]) -> None:
    intake = Intake(heads=await store.heads(), open_entries=[])
    for index, (controller, count) in enumerate(controllers.items()):
        batch = intake.begin()
        for event in make_chain(controller, count, barcodes=10, start_index=index):
            assert intake.offer(controller, event.to_json(), known={})[0] == "stored"
        intake.committed(batch, await store.apply(batch))


async def test_store_and_query(store_spec: StoreSpec) -> None:
    async with store_spec.open() as store:
        await _fill(store, {"c1": 30, "c2": 20})
        heads = await store.heads()
        assert {c: h.seq for c, h in heads.items()} == {"c1": 30, "c2": 20}
        chain = make_chain("c1", 30, barcodes=10)
        assert heads["c1"].hash == chain[-1].hash
        known = await store.known_events([str(chain[3].event_id), "nope"])
        assert known == {str(chain[3].event_id): chain[3].hash}
        # c1-T0003 moved at seq 4, 14, 24: it is where seq 24 put it, with its whole history.
        location = await store.location("c1-T0003")
        assert location is not None
        assert (location.rack, location.position, location.seq) == ("R02", "P00023", 24)
        history = await store.history("c1-T0003")
        assert [e.seq for e in history] == [4, 14, 24]
        rack = await store.rack("c1-store", "R02")
        assert "c1-T0003" in {row.barcode for row in rack}
        since = await store.events_since(chain[25].ts, 100)
        assert {(e.controller, e.seq) for e in since} >= {("c1", 26), ("c1", 30)}
        assert len(await store.locations()) == 20
        report = await verify_store(store)
        assert report.ok, report.problems
        assert report.events == {"c1": 30, "c2": 20}


async def test_quarantine_entries_are_counted_once(store_spec: StoreSpec) -> None:
    async with store_spec.open() as store:
        for _ in range(2):
            intake = Intake(heads={}, open_entries=[])
            batch = intake.begin()
            intake.offer("c1", b"garbage", known={})
            ids = await store.apply(batch)
        entries = await store.open_quarantine()
        assert [e.id for e in entries] == ids
        assert entries[0].kind == "malformed"


async def test_a_ledger_from_before_the_heads_table_gets_its_heads(store_spec: StoreSpec) -> None:
    async with store_spec.open() as store:
        await _fill(store, {"c1": 30, "c2": 10})
        heads = await store.heads()
    await store_spec.execute("DROP TABLE heads")
    async with store_spec.open() as store:
        assert await store.heads() == heads
        assert (await verify_store(store)).ok


def _forged(seq: int, prev_hash: str) -> MovementEvent:
    """A well-formed, correctly sealed event that no controller sent."""
    return MovementEvent.seal(
        event_id=uuid.UUID(int=seq),
        seq=seq,
        ts=ts_at(seq),
        barcode="c1-T0099",
        from_=None,
        to={"store": "c1-store", "rack": "R99", "position": "P99999"},
        job=None,
        operator="mallory",
        exposure_s=0.0,
        prev_hash=prev_hash,
    )


def _insert_sql(event: MovementEvent) -> str:
    """Raw SQL putting a sealed event into c1's chain (`events` columns, in table order)."""
    values = (
        f"'c1', {event.seq}, '{event.event_id}', '{event.ts}', '{event.barcode}', "
        f"'{event.hash}', '{event.prev_hash}', '{event.to_json().decode()}', '{event.ts}'"
    )
    return f"INSERT INTO events VALUES ({values});"


C1 = make_chain("c1", 30, barcodes=10)  # what `_fill` stores for c1
# Every event from seq 15 on moved up by one to make room (via +1000: no key clash midway).
_MAKE_ROOM_AT_15 = (
    "UPDATE events SET seq = seq + 1000 WHERE controller = 'c1' AND seq >= 15;"
    "UPDATE events SET seq = seq - 999 WHERE controller = 'c1' AND seq >= 1000;"
)

TAMPERING = [
    pytest.param(
        "UPDATE events SET payload = replace(payload, '\"P00011\"', '\"P99999\"') "
        "WHERE controller = 'c1' AND seq = 12",
        "c1 seq 12",
        "edited",
        id="edit-location-in-event",
    ),
    pytest.param(
        "UPDATE locations SET position = 'Z99' WHERE barcode = 'c1-T0005'",
        "barcode c1-T0005",
        "the ledger puts it at c1-store/R04/P00025 (c1 seq 26)",
        id="edit-current-location",
    ),
    pytest.param(
        "DELETE FROM events WHERE controller = 'c1' AND seq = 17",
        "c1 seq 17",
        "seq 17 is missing",
        id="delete-event",
    ),
    pytest.param(
        "UPDATE events SET seq = -1 WHERE controller = 'c1' AND seq = 8;"
        "UPDATE events SET seq = 8 WHERE controller = 'c1' AND seq = 9;"
        "UPDATE events SET seq = 9 WHERE controller = 'c1' AND seq = -1;",
        "c1 seq 8",
        "column seq is 8 but the hashed event says 9",
        id="swap-two-events",
    ),
    pytest.param(
        "INSERT INTO events SELECT controller, 31, 'inserted', ts, barcode, hash, prev_hash, "
        "payload, stored_at FROM events WHERE controller = 'c1' AND seq = 30",
        "c1 seq 31",
        "column seq is 31",
        id="insert-event",
    ),
    pytest.param(
        "DELETE FROM events WHERE controller = 'c1' AND seq = 30",
        "c1 seq 30",
        "seq 30 is missing: the chain ends at seq 29 but the stored head is seq 30",
        id="delete-last-event",
    ),
    pytest.param(
        _MAKE_ROOM_AT_15 + _insert_sql(_forged(15, C1[13].hash)),
        "c1 seq 15",
        "inserted: seq 16 is hashed as seq 15 and links to seq 14",
        id="insert-sealed-event-in-the-middle",
    ),
    pytest.param(
        _insert_sql(_forged(31, C1[29].hash)),
        "c1 seq 31",
        "seq 31 is past the stored head (seq 30)",
        id="append-sealed-event",
    ),
    pytest.param(
        "DELETE FROM events WHERE controller = 'c1' AND seq = 30;"
        + _insert_sql(_forged(30, C1[28].hash)),
        "c1 seq 30",
        "it was replaced",
        id="replace-last-event",
    ),
]


@pytest.mark.parametrize(("sql", "where", "message"), TAMPERING)
async def test_verify_names_the_first_broken_link(
    store_spec: StoreSpec, sql: str, where: str, message: str
) -> None:
    async with store_spec.open() as store:
        await _fill(store, {"c1": 30, "c2": 10})
        assert (await verify_store(store)).ok
    await store_spec.execute(sql)
    async with store_spec.open() as store:
        report = await verify_store(store)
    assert not report.ok
    first = report.problems[0]
    assert first.where == where, report.problems
    assert message in first.message, first.message
    assert report.events["c2"] == 10  # the other chain still verifies
