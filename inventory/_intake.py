"""Validation of incoming movements: pure, no I/O — messages in, a `Batch` to store out.

`Intake` holds what validation needs to know of the ledger (each controller's chain head, the
open quarantine) and sorts every message into exactly one outcome:

- **stored**: schema valid, hash right, `seq` is the next one and `prev_hash` links;
- **duplicate**: its `event_id` is already stored with the same hash (acknowledged, ignored);
- **quarantined**: anything else, kept with its reason. An event ahead of the next `seq`
  (a gap) is quarantined as `sequence` but *held*: once the gap closes it is re-checked and
  stored (its entry becomes `released`). Everything else stays open for a person to look at.

The acknowledged `seq` is the head of the stored chain, so nothing past a gap or a bad event is
ever acknowledged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from inventory._store import Batch, Head, QuarantineEntry, StoredEvent
from inventory._time import utc_now
from inventory.events import MovementEvent, event_hash

Outcome = Literal["stored", "duplicate", "quarantined", "held"]


@dataclass(frozen=True, slots=True)
class Parsed:
    """A message that passed the schema and hash checks."""

    raw: dict[str, Any]
    event: MovementEvent

    @property
    def event_id(self) -> str:
        return str(self.event.event_id)


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(event)"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse(payload: bytes) -> Parsed | tuple[str, str, MovementEvent | None]:
    """A valid, correctly hashed event, or `(kind, reason, event if it parsed)` saying why not."""
    try:
        raw = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return "malformed", f"not UTF-8 JSON: {exc}", None
    if not isinstance(raw, dict):
        return "malformed", f"not a JSON object but {type(raw).__name__}", None
    try:
        event = MovementEvent.model_validate(raw)
    except ValidationError as exc:
        return "invalid", f"schema: {_summarise(exc)}", None
    computed = event_hash(raw)
    if computed != event.hash:
        reason = f"hash mismatch: the event hashes to {computed}, it says {event.hash}"
        return "hash", reason, event
    return Parsed(raw=raw, event=event)


def stored_event(controller: str, parsed: Parsed) -> StoredEvent:
    event = parsed.event
    return StoredEvent(
        controller=controller,
        seq=event.seq,
        event_id=parsed.event_id,
        ts=event.ts,
        barcode=event.barcode,
        hash=event.hash,
        prev_hash=event.prev_hash,
        payload=json.dumps(parsed.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        to_store=event.to.store,
        to_rack=event.to.rack,
        to_position=event.to.position,
    )


class Intake:
    """Decides what happens to each message; `begin()` a batch, `offer()` messages, store it.

    After the batch is stored, `committed(batch, ids)` records the quarantine ids; if storing
    fails, the service reloads the state from the store (`Intake(heads=..., open_entries=...)`).
    """

    def __init__(self, *, heads: dict[str, Head], open_entries: list[QuarantineEntry]) -> None:
        self.heads = dict(heads)
        self.open_count = 0
        # controller -> seq -> (entry, parsed): events ahead of a gap, waiting for it to close.
        self._held: dict[str, dict[int, tuple[QuarantineEntry, Parsed]]] = {}
        self._digests: set[str] = set()
        for entry in open_entries:
            self._remember(entry)
        self._batch = Batch()
        self._batch_ids: dict[str, str] = {}

    def _remember(self, entry: QuarantineEntry) -> None:
        self._digests.add(entry.digest)
        self.open_count += 1
        if entry.kind == "sequence" and entry.seq is not None:
            parsed = parse(entry.payload.encode("utf-8"))
            if isinstance(parsed, Parsed):
                self._held.setdefault(entry.controller, {}).setdefault(entry.seq, (entry, parsed))

    def begin(self) -> Batch:
        self._batch = Batch()
        self._batch_ids = {}
        return self._batch

    def offer(
        self, controller: str, payload: bytes, *, known: dict[str, str]
    ) -> tuple[Outcome, str]:
        """Sort one message into the current batch; returns the outcome and a reason.

        `known` maps the event ids of this batch already in the store to their hashes.
        """
        result = parse(payload)
        if not isinstance(result, Parsed):
            kind, reason, unsound = result
            return self._quarantine(controller, payload, kind, reason, unsound)
        event = result.event
        event_id = result.event_id
        stored_hash = known.get(event_id) or self._batch_ids.get(event_id)
        if stored_hash is not None:
            if stored_hash == event.hash:
                return "duplicate", f"event {event_id} is already stored"
            reason = f"event_id {event_id} is already stored with different content"
            return self._quarantine(controller, payload, "conflict", reason, result)
        head = self.heads.get(controller, Head())
        if event.seq <= head.seq:
            reason = f"seq {event.seq} is already taken by another event (stored up to {head.seq})"
            return self._quarantine(controller, payload, "sequence", reason, result, hold=False)
        if event.seq > head.seq + 1:
            reason = f"out of sequence: expected seq {head.seq + 1}, got {event.seq}"
            return self._quarantine(controller, payload, "sequence", reason, result, hold=True)
        if event.prev_hash != head.hash:
            reason = (
                f"prev_hash {event.prev_hash} does not link to seq {head.seq} "
                f"(whose hash is {head.hash})"
            )
            return self._quarantine(controller, payload, "link", reason, result)
        self._store(controller, result)
        return "stored", ""

    def _store(self, controller: str, parsed: Parsed) -> None:
        self._batch.events.append(stored_event(controller, parsed))
        self._batch_ids[parsed.event_id] = parsed.event.hash
        head = Head(seq=parsed.event.seq, hash=parsed.event.hash)
        self.heads[controller] = head
        # Events held ahead of the gap that just closed: store those that now link.
        held = self._held.get(controller, {})
        while (waiting := held.get(head.seq + 1)) is not None:
            entry, candidate = waiting
            if candidate.event.prev_hash != head.hash or candidate.event_id in self._batch_ids:
                break
            del held[head.seq + 1]
            if entry in self._batch.quarantined:
                self._batch.quarantined.remove(entry)  # held and released within one batch
            else:
                self._batch.released.append(entry.id)
            self._digests.discard(entry.digest)
            self.open_count -= 1
            self._batch.events.append(stored_event(controller, candidate))
            self._batch_ids[candidate.event_id] = candidate.event.hash
            head = Head(seq=candidate.event.seq, hash=candidate.event.hash)
            self.heads[controller] = head

    def _quarantine(
        self,
        controller: str,
        payload: bytes,
        kind: str,
        reason: str,
        parsed: Parsed | MovementEvent | None = None,
        *,
        hold: bool = False,
    ) -> tuple[Outcome, str]:
        digest = hashlib.sha256(controller.encode() + b"\n" + payload).hexdigest()
        outcome: Outcome = "held" if hold else "quarantined"
        if digest in self._digests:
            return outcome, reason  # the same bytes again (a republish): one entry is enough
        event = parsed.event if isinstance(parsed, Parsed) else parsed
        entry = QuarantineEntry(
            controller=controller,
            received_at=utc_now(),
            kind=kind,
            reason=reason,
            payload=payload.decode("utf-8", errors="replace"),
            digest=digest,
            seq=event.seq if event is not None else None,
            event_id=str(event.event_id) if event is not None else None,
        )
        self._batch.quarantined.append(entry)
        self._digests.add(digest)
        self.open_count += 1
        if hold and isinstance(parsed, Parsed):
            self._held.setdefault(controller, {}).setdefault(parsed.event.seq, (entry, parsed))
        return outcome, reason

    def committed(self, batch: Batch, ids: list[int]) -> None:
        """Give the stored quarantine entries their ids (needed to release held ones later)."""
        for entry, entry_id in zip(batch.quarantined, ids, strict=True):
            entry.id = entry_id
