"""The site-scale store: PostgreSQL through an asyncpg pool, tables in their own schema.

Every connection of the pool gets `search_path` set to the configured schema, so the SQL is
the same as SQLite's apart from placeholders and the serial id. Connection and server failures
are translated into `StoreUnavailable` / `StoreError`.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from inventory._errors import StoreError, StoreUnavailable
from inventory._rows import (
    EVENT_COLUMNS,
    LOCATION_COLUMNS,
    QUARANTINE_COLUMNS,
    event_from_row,
    event_params,
    head_params,
    location_from_row,
    location_params,
    quarantine_from_row,
    quarantine_params,
)
from inventory._store import (
    Batch,
    Head,
    LocationRow,
    QuarantineEntry,
    Store,
    StoredEvent,
    redact,
)
from inventory._time import utc_now

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    controller TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    barcode TEXT NOT NULL,
    hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (controller, seq)
);
CREATE INDEX IF NOT EXISTS events_barcode ON events (barcode, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS locations (
    barcode TEXT PRIMARY KEY,
    store TEXT NOT NULL,
    rack TEXT NOT NULL,
    position TEXT NOT NULL,
    controller TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS locations_rack ON locations (store, rack, position);
CREATE TABLE IF NOT EXISTS heads (
    controller TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id BIGSERIAL PRIMARY KEY,
    controller TEXT NOT NULL,
    received_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    seq BIGINT,
    event_id TEXT,
    state TEXT NOT NULL,
    times_seen INTEGER NOT NULL DEFAULT 1,
    resolved_at TEXT
);
"""

_INSERT_EVENT = "INSERT INTO events VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
# Same rule as SQLite's: the newest event by (ts, controller, seq) decides where a tube is.
_UPSERT_LOCATION = """
INSERT INTO locations (barcode, store, rack, position, controller, seq, ts)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (barcode) DO UPDATE SET
    store = excluded.store, rack = excluded.rack, position = excluded.position,
    controller = excluded.controller, seq = excluded.seq, ts = excluded.ts
WHERE (excluded.ts, excluded.controller, excluded.seq)
    > (locations.ts, locations.controller, locations.seq)
"""
_INSERT_QUARANTINE = """
INSERT INTO quarantine (controller, received_at, kind, reason, payload, digest, seq, event_id,
                        state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (digest) DO UPDATE SET times_seen = quarantine.times_seen + 1
RETURNING id
"""
_RELEASE = "UPDATE quarantine SET state = 'released', resolved_at = $1 WHERE id = $2"
_UPSERT_HEAD = """
INSERT INTO heads (controller, seq, hash, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (controller) DO UPDATE SET
    seq = excluded.seq, hash = excluded.hash, updated_at = excluded.updated_at
WHERE excluded.seq > heads.seq
"""
# A ledger made before the heads table existed: its heads are where its chains end.
_FILL_HEADS = """
INSERT INTO heads (controller, seq, hash, updated_at)
SELECT DISTINCT ON (controller) controller, seq, hash, $1 FROM events
ORDER BY controller, seq DESC
"""

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)


class PostgresStore(Store):
    """`PostgresStore(url="postgresql://inventory@db/biobank", schema="inventory")`."""

    def __init__(self, *, url: str, schema: str = "inventory", pool_size: int = 4) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise StoreError(redact(url), f"'{schema}' is not a plain SQL identifier")
        self.url = url
        self.schema = schema
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    def _error(self, exc: BaseException) -> StoreError:
        kind = StoreUnavailable if isinstance(exc, _UNAVAILABLE) else StoreError
        return kind(redact(self.url), f"{type(exc).__name__}: {exc}")

    async def open(self) -> None:
        try:
            admin = await asyncpg.connect(self.url, timeout=10)
            try:
                await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                await admin.execute(f"SET search_path TO {self.schema}")
                had_heads = await admin.fetchval("SELECT to_regclass('heads') IS NOT NULL")
                await admin.execute(SCHEMA)
                if not had_heads:
                    await admin.execute(_FILL_HEADS, utc_now())
            finally:
                await admin.close()
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                timeout=10,
                command_timeout=30,
                server_settings={"search_path": self.schema},
            )
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise self._error(exc) from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(redact(self.url), "store is not open")
        return self._pool

    async def apply(self, batch: Batch) -> list[int]:
        stored_at = utc_now()
        try:
            async with self._open_pool().acquire() as conn, conn.transaction():
                if batch.events:
                    await conn.executemany(
                        _INSERT_EVENT, [event_params(e, stored_at) for e in batch.events]
                    )
                    await conn.executemany(
                        _UPSERT_LOCATION, [location_params(e) for e in batch.events]
                    )
                    await conn.executemany(_UPSERT_HEAD, head_params(batch, stored_at))
                ids = [
                    int(await conn.fetchval(_INSERT_QUARANTINE, *quarantine_params(entry)))
                    for entry in batch.quarantined
                ]
                if batch.released:
                    await conn.executemany(_RELEASE, [(stored_at, i) for i in batch.released])
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise self._error(exc) from exc
        return ids

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        try:
            return list(await self._open_pool().fetch(sql, *params))
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise self._error(exc) from exc

    async def heads(self) -> dict[str, Head]:
        rows = await self._fetch("SELECT controller, seq, hash FROM heads")
        return {row[0]: Head(seq=int(row[1]), hash=row[2]) for row in rows}

    async def known_events(self, event_ids: list[str]) -> dict[str, str]:
        if not event_ids:
            return {}
        rows = await self._fetch(
            "SELECT event_id, hash FROM events WHERE event_id = ANY($1::text[])", event_ids
        )
        return {row[0]: row[1] for row in rows}

    async def open_quarantine(self) -> list[QuarantineEntry]:
        rows = await self._fetch(
            f"SELECT {QUARANTINE_COLUMNS} FROM quarantine WHERE state = 'open' ORDER BY id"
        )
        return [quarantine_from_row(row) for row in rows]

    async def quarantine(self) -> list[QuarantineEntry]:
        rows = await self._fetch(f"SELECT {QUARANTINE_COLUMNS} FROM quarantine ORDER BY id")
        return [quarantine_from_row(row) for row in rows]

    async def location(self, barcode: str) -> LocationRow | None:
        rows = await self._fetch(
            f"SELECT {LOCATION_COLUMNS} FROM locations WHERE barcode = $1", barcode
        )
        return location_from_row(rows[0]) if rows else None

    async def history(self, barcode: str) -> list[StoredEvent]:
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE barcode = $1 ORDER BY ts, controller, seq",
            barcode,
        )
        return [event_from_row(row) for row in rows]

    async def rack(self, store: str, rack: str) -> list[LocationRow]:
        rows = await self._fetch(
            f"SELECT {LOCATION_COLUMNS} FROM locations WHERE store = $1 AND rack = $2 "
            "ORDER BY position",
            store,
            rack,
        )
        return [location_from_row(row) for row in rows]

    async def events_since(self, ts: str, limit: int) -> list[StoredEvent]:
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE ts >= $1 "
            "ORDER BY ts, controller, seq LIMIT $2",
            ts,
            limit,
        )
        return [event_from_row(row) for row in rows]

    async def locations(self) -> list[LocationRow]:
        rows = await self._fetch(f"SELECT {LOCATION_COLUMNS} FROM locations ORDER BY barcode")
        return [location_from_row(row) for row in rows]

    async def chain(self, controller: str) -> list[StoredEvent]:
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE controller = $1 ORDER BY seq", controller
        )
        return [event_from_row(row) for row in rows]

    async def controllers(self) -> list[str]:
        rows = await self._fetch(
            "SELECT controller FROM heads UNION SELECT controller FROM events ORDER BY controller"
        )
        return [row[0] for row in rows]
