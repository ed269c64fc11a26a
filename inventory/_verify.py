"""`inventoryd verify`: re-check every chain, sequence and location of a ledger.

For each controller it walks the stored events by `seq` and reports the *first broken link*:
a missing `seq` (deleted), a payload that no longer hashes to its hash (edited), a column that
differs from the hashed payload, or a `prev_hash` that does not name the previous event's hash
(inserted, reordered, swapped). An event inserted with the later ones renumbered is named
itself: the event after it is hashed as its seq and links to the one before it. A chain that
walks cleanly is then compared with the controller's stored head (`heads` table, written with
the events): a chain that stops short of it lost its last events, one that goes past it was
extended, and a last event whose hash is not the head's was replaced. Then it replays every
event to recompute where each tube must be and compares that with the `locations` table (an
edited or invented location).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from inventory._store import Head, Store, StoredEvent
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


def _inserted(chain: list[StoredEvent], position: int) -> bool:
    """Whether the event before `position` (1-based) was inserted: the one at `position` is
    hashed as the seq before it and links to the event two before it."""
    if position < 2:
        return False
    event, before = chain[position - 1], chain[position - 2]
    try:
        body: Any = json.loads(event.payload)
    except ValueError:
        return False
    if not isinstance(body, dict) or event.hash == before.hash:
        return False  # a copy of the event before it: that copy is the intruder
    linked = GENESIS_PREV_HASH if position == 2 else chain[position - 3].hash
    return body.get("seq") == position - 1 and body.get("prev_hash") == linked


def _against_head(checked: int, last_hash: str, head: Head | None) -> tuple[int, str] | None:
    """Where and why a cleanly walked chain disagrees with its stored head, or None."""
    if head is None:
        return 1, "there is no stored head for this chain: it was written behind the service"
    if checked < head.seq:
        return checked + 1, (
            f"seq {checked + 1} is missing: the chain ends at seq {checked} but the stored "
            f"head is seq {head.seq}"
        )
    if checked > head.seq:
        return head.seq + 1, (
            f"seq {head.seq + 1} is past the stored head (seq {head.seq}): added behind the "
            "service's back"
        )
    if last_hash != head.hash:
        return checked, (
            f"the last event hashes to {last_hash} but the stored head is {head.hash}: "
            "it was replaced"
        )
    return None


async def verify_store(store: Store) -> VerifyReport:
    """Check every controller's chain against its head, and the locations table."""
    report = VerifyReport()
    heads = await store.heads()
    newest: dict[str, tuple[tuple[str, str, int], StoredEvent]] = {}
    for controller in await store.controllers():
        chain = await store.chain(controller)
        prev_hash = GENESIS_PREV_HASH
        checked = 0
        broken: tuple[int, str] | None = None
        for expected_seq, event in enumerate(chain, start=1):
            problem = _check_event(event, expected_seq, prev_hash)
            if problem is not None:
                if _inserted(chain, expected_seq):
                    # The chain holds up to the event before the intruder.
                    checked = expected_seq - 2
                    prev_hash = chain[checked - 1].hash if checked else GENESIS_PREV_HASH
                    broken = (
                        expected_seq - 1,
                        (
                            f"inserted: seq {expected_seq} is hashed as seq {expected_seq - 1} and "
                            f"links to seq {expected_seq - 2}, so the event stored as seq "
                            f"{expected_seq - 1} is not part of the chain"
                        ),
                    )
                else:
                    broken = expected_seq, problem
                break
            prev_hash = event.hash
            checked += 1
        else:
            broken = _against_head(checked, prev_hash, heads.get(controller))
        if broken is not None:
            seq, message = broken
            report.problems.append(
                Problem(
                    where=f"{controller} seq {seq}",
                    message=message,
                    controller=controller,
                    seq=seq,
                )
            )
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
