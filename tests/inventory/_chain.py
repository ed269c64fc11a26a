"""Test data: sealed movement chains as a controller would publish them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from inventory.events import GENESIS_PREV_HASH, MovementEvent

_START = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)


def ts_at(index: int) -> str:
    moment = _START + timedelta(milliseconds=250 * index)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_chain(
    controller: str, count: int, *, barcodes: int = 50, start_index: int = 0
) -> list[MovementEvent]:
    """`count` linked events of one controller moving `barcodes` tubes around its racks."""
    events: list[MovementEvent] = []
    prev = GENESIS_PREV_HASH
    where: dict[str, dict[str, str]] = {}
    for i in range(count):
        barcode = f"{controller}-T{i % barcodes:04d}"
        to = {"store": f"{controller}-store", "rack": f"R{i % 7:02d}", "position": f"P{i:05d}"}
        event = MovementEvent.seal(
            event_id=uuid.UUID(int=uuid.uuid5(uuid.NAMESPACE_URL, f"{controller}/{i}").int),
            seq=i + 1,
            ts=ts_at(start_index + i),
            barcode=barcode,
            from_=where.get(barcode),
            to=to,
            job=f"job-{i // 10}",
            operator="alice",
            exposure_s=round(0.1 * (i % 30), 1),
            prev_hash=prev,
        )
        where[barcode] = to
        prev = event.hash
        events.append(event)
    return events
