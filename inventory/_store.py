"""The ledger's storage interface, its records, and `open_store` choosing SQLite or PostgreSQL.

Both stores keep the same four tables (see docs/inventory.md):

- `events`: every accepted movement, one row per (controller, seq), with the canonical JSON
  payload exactly as hashed, and the columns needed to find it (event_id, barcode, ts);
- `locations`: each barcode's current place (the newest event by ts, controller, seq);
- `heads`: each controller's chain head (highest stored seq and its hash), written in the
  same transaction as the events, so `verify` sees a chain cut short or extended behind the
  service's back (a database made before this table existed gets it filled from `events`);
- `quarantine`: every message that failed validation, kept with its reason; `open` entries
  block nothing by themselves but raise the alarm, `released` ones were out of sequence and got
  stored once the gap closed.

`apply` writes one `Batch` in one transaction: each event together with its specimen's new
location, the heads it advances, new quarantine entries and releases. Nothing is half-stored.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

from inventory.events import GENESIS_PREV_HASH


@dataclass(frozen=True, slots=True)
class Head:
    """The end of one controller's stored chain: highest contiguous seq and its hash."""

    seq: int = 0
    hash: str = GENESIS_PREV_HASH


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One accepted movement as the ledger keeps it."""

    controller: str
    seq: int
    event_id: str
    ts: str
    barcode: str
    hash: str
    prev_hash: str
    payload: str  # the canonical JSON of the whole event, exactly as hashed (hash included)
    to_store: str
    to_rack: str
    to_position: str


@dataclass(slots=True)
class QuarantineEntry:
    """A message that failed validation, with why. `id` is 0 until stored."""

    controller: str
    received_at: str
    kind: str  # malformed | invalid | hash | conflict | link | sequence
    reason: str
    payload: str
    digest: str
    seq: int | None = None
    event_id: str | None = None
    state: str = "open"  # open | released
    id: int = 0


@dataclass(frozen=True, slots=True)
class LocationRow:
    """A barcode's current place and the event that put it there."""

    barcode: str
    store: str
    rack: str
    position: str
    controller: str
    seq: int
    ts: str


@dataclass(slots=True)
class Batch:
    """What one transaction writes."""

    events: list[StoredEvent] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    released: list[int] = field(default_factory=list)  # ids of held quarantine entries

    def __bool__(self) -> bool:
        return bool(self.events or self.quarantined or self.released)


class Store(abc.ABC):
    """One ledger database. `async with store:` opens it (creating the tables) and closes it."""

    url: str

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if it is missing."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def apply(self, batch: Batch) -> list[int]:
        """Write a batch in one transaction; returns the ids given to `batch.quarantined`.

        A quarantine entry whose digest is already stored is counted, not stored twice
        (its id is then that of the existing entry).
        """

    @abc.abstractmethod
    async def heads(self) -> dict[str, Head]:
        """Every controller's chain head as `apply` recorded it (the `heads` table)."""

    @abc.abstractmethod
    async def known_events(self, event_ids: list[str]) -> dict[str, str]:
        """Which of these event ids are stored: event_id -> hash."""

    @abc.abstractmethod
    async def open_quarantine(self) -> list[QuarantineEntry]:
        """Every quarantine entry still open, oldest first."""

    @abc.abstractmethod
    async def quarantine(self) -> list[QuarantineEntry]:
        """Every quarantine entry, oldest first."""

    @abc.abstractmethod
    async def location(self, barcode: str) -> LocationRow | None: ...

    @abc.abstractmethod
    async def history(self, barcode: str) -> list[StoredEvent]:
        """Every movement of a barcode, oldest first (by ts)."""

    @abc.abstractmethod
    async def rack(self, store: str, rack: str) -> list[LocationRow]:
        """The barcodes now in a rack, by position."""

    @abc.abstractmethod
    async def events_since(self, ts: str, limit: int) -> list[StoredEvent]:
        """Movements with `ts` at or after a time, oldest first, at most `limit`."""

    @abc.abstractmethod
    async def locations(self) -> list[LocationRow]:
        """Every barcode's current place, by barcode."""

    @abc.abstractmethod
    async def chain(self, controller: str) -> list[StoredEvent]:
        """One controller's events as stored, by seq (what `verify` walks)."""

    @abc.abstractmethod
    async def controllers(self) -> list[str]:
        """Every controller with a stored head or at least one stored event."""


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(url: str, *, schema: str = "inventory") -> Store:
    """The store for a URL (`sqlite:///PATH` or `postgresql://…`); use it with `async with`."""
    if url.startswith("sqlite:///"):
        from inventory._sqlite import SqliteStore

        return SqliteStore(url=url)
    from inventory._postgres import PostgresStore

    return PostgresStore(url=url, schema=schema)
