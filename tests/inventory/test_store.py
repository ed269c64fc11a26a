"""Both stores behind one interface: storing, queries, quarantine, and `verify` finding every
kind of tampering at the right event. Runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import pytest

from inventory import Store, verify_store
from inventory._intake import Intake
from tests.inventory._chain import make_chain
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
