"""Rows to records, shared by both stores: a stored event's location comes from its payload."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from inventory._store import Batch, LocationRow, QuarantineEntry, StoredEvent

#: Column order every store selects events in.
EVENT_COLUMNS = "controller, seq, event_id, ts, barcode, hash, prev_hash, payload"
LOCATION_COLUMNS = "barcode, store, rack, position, controller, seq, ts"
QUARANTINE_COLUMNS = (
    "id, controller, received_at, kind, reason, payload, digest, seq, event_id, state"
)


def event_from_row(row: Sequence[Any]) -> StoredEvent:
    """A stored event; a payload that no longer parses (tampering) gives empty `to_*` fields,
    which `verify` then reports instead of crashing."""
    controller, seq, event_id, ts, barcode, hash_, prev_hash, payload = row
    to: dict[str, Any] = {}
    try:
        parsed = json.loads(payload)
        if isinstance(parsed, dict) and isinstance(parsed.get("to"), dict):
            to = parsed["to"]
    except ValueError:
        pass
    return StoredEvent(
        controller=controller,
        seq=int(seq),
        event_id=event_id,
        ts=ts,
        barcode=barcode,
        hash=hash_,
        prev_hash=prev_hash,
        payload=payload,
        to_store=str(to.get("store", "")),
        to_rack=str(to.get("rack", "")),
        to_position=str(to.get("position", "")),
    )


def location_from_row(row: Sequence[Any]) -> LocationRow:
    barcode, store, rack, position, controller, seq, ts = row
    return LocationRow(
        barcode=barcode,
        store=store,
        rack=rack,
        position=position,
        controller=controller,
        seq=int(seq),
        ts=ts,
    )


def quarantine_from_row(row: Sequence[Any]) -> QuarantineEntry:
    id_, controller, received_at, kind, reason, payload, digest, seq, event_id, state = row
    return QuarantineEntry(
        id=int(id_),
        controller=controller,
        received_at=received_at,
        kind=kind,
        reason=reason,
        payload=payload,
        digest=digest,
        seq=None if seq is None else int(seq),
        event_id=event_id,
        state=state,
    )


def event_params(event: StoredEvent, stored_at: str) -> tuple[Any, ...]:
    return (
        event.controller,
        event.seq,
        event.event_id,
        event.ts,
        event.barcode,
        event.hash,
        event.prev_hash,
        event.payload,
        stored_at,
    )


def location_params(event: StoredEvent) -> tuple[Any, ...]:
    return (
        event.barcode,
        event.to_store,
        event.to_rack,
        event.to_position,
        event.controller,
        event.seq,
        event.ts,
    )


def quarantine_params(entry: QuarantineEntry) -> tuple[Any, ...]:
    return (
        entry.controller,
        entry.received_at,
        entry.kind,
        entry.reason,
        entry.payload,
        entry.digest,
        entry.seq,
        entry.event_id,
        entry.state,
    )


def head_params(batch: Batch, stored_at: str) -> list[tuple[Any, ...]]:
    """(controller, seq, hash, updated_at) of each controller's newest event in a batch."""
    newest: dict[str, StoredEvent] = {}
    for event in batch.events:
        if event.controller not in newest or event.seq > newest[event.controller].seq:
            newest[event.controller] = event
    return [(e.controller, e.seq, e.hash, stored_at) for _, e in sorted(newest.items())]
