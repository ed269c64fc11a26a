"""`inventoryd verify`: re-check every chain, sequence and location of a ledger.

For each controller it walks the stored events by `seq` and reports the *first broken link*:
a missing `seq` (deleted), a payload that no longer hashes to its hash (edited), a column that
differs from the hashed payload, or a `prev_hash` that does not name the previous event's hash
(inserted, reordered, swapped). Then it replays every event to recompute where each tube must
be and compares that with the `locations` table (an edited or invented location).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from inventory._store import Store, StoredEvent
from inventory.events import GENESIS_PREV_HASH, event_hash


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken thing: where (controller and seq, or barcode) and what."""

    where: str
    message: str
    controller: str | None = None
    seq: int | None = None
    barcode: str | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(slots=True)
class VerifyReport:
    """What `verify` checked and found."""

    events: dict[str, int] = field(default_factory=dict)  # controller -> events checked
    heads: dict[str, str] = field(default_factory=dict)  # controller -> last good hash
    locations: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_event(event: StoredEvent, expected_seq: int, prev_hash: str) -> str | None:
    """Why this stored event breaks the chain, or None."""
    if event.seq != expected_seq:
        return f"seq {expected_seq} is missing (the next stored event is seq {event.seq})"
    try:
        body: Any = json.loads(event.payload)
    except ValueError:
        return "the stored payload is not JSON any more"
    if not isinstance(body, dict):
        return "the stored payload is not a JSON object any more"
    recomputed = event_hash(body)
    if recomputed != event.hash or body.get("hash") != event.hash:
        return (
            f"edited: the payload hashes to {recomputed}, the stored hash is {event.hash}"
            f" (and the payload says {body.get('hash')})"
        )
    for column, value in (
        ("seq", event.seq),
        ("event_id", event.event_id),
        ("ts", event.ts),
        ("barcode", event.barcode),
        ("prev_hash", event.prev_hash),
    ):
        if str(body.get(column)) != str(value):
            return f"column {column} is {value!r} but the hashed event says {body.get(column)!r}"
    if event.prev_hash != prev_hash:
        return (
            f"prev_hash {event.prev_hash} does not link to the previous event "
            f"(whose hash is {prev_hash}): an event was inserted, removed or reordered"
        )
    return None


async def verify_store(store: Store) -> VerifyReport:
    """Check every controller's chain and the locations table."""
    report = VerifyReport()
    newest: dict[str, tuple[tuple[str, str, int], StoredEvent]] = {}
    for controller in await store.controllers():
        chain = await store.chain(controller)
        prev_hash = GENESIS_PREV_HASH
        checked = 0
        for expected_seq, event in enumerate(chain, start=1):
            problem = _check_event(event, expected_seq, prev_hash)
            if problem is not None:
                report.problems.append(
                    Problem(
                        where=f"{controller} seq {expected_seq}",
                        message=problem,
                        controller=controller,
                        seq=expected_seq,
                    )
                )
                break
            prev_hash = event.hash
            checked += 1
        report.events[controller] = checked
        report.heads[controller] = prev_hash
        for event in chain:
            key = (event.ts, event.controller, event.seq)
            if event.barcode not in newest or key > newest[event.barcode][0]:
                newest[event.barcode] = (key, event)
    rows = {row.barcode: row for row in await store.locations()}
    report.locations = len(rows)
    for barcode in sorted(set(rows) | set(newest)):
        row = rows.get(barcode)
        if barcode not in newest:
            report.problems.append(
                Problem(
                    where=f"barcode {barcode}",
                    message="has a location but no movement in the ledger",
                    barcode=barcode,
                )
            )
            continue
        event = newest[barcode][1]
        expected = (event.to_store, event.to_rack, event.to_position)
        actual = None if row is None else (row.store, row.rack, row.position)
        if actual != expected:
            shown = "none" if actual is None else "/".join(actual)
            report.problems.append(
                Problem(
                    where=f"barcode {barcode}",
                    message=f"location is {shown} but the ledger puts it at "
                    f"{'/'.join(expected)} ({event.controller} seq {event.seq})",
                    controller=event.controller,
                    seq=event.seq,
                    barcode=barcode,
                )
            )
    return report
