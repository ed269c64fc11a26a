"""The embedded store: one SQLite file in WAL mode, driven from one worker thread.

sqlite3 blocks, so every call runs on a single-thread executor that owns the connection: the
event loop never waits on the disk, and calls are serialised as SQLite wants them. Commits are
`synchronous=FULL`: an acknowledged movement survives a power cut, not only a crash.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
from inventory._store import Batch, Head, LocationRow, QuarantineEntry, Store, StoredEvent
from inventory._time import utc_now

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    controller TEXT NOT NULL,
    seq INTEGER NOT NULL,
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
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS locations_rack ON locations (store, rack, position);
CREATE TABLE IF NOT EXISTS heads (
    controller TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    controller TEXT NOT NULL,
    received_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    seq INTEGER,
    event_id TEXT,
    state TEXT NOT NULL,
    times_seen INTEGER NOT NULL DEFAULT 1,
    resolved_at TEXT
);
"""

_INSERT_EVENT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# The newest event (by ts, then controller, then seq) decides where a tube is, whatever order
# controllers' events arrive in; `verify` replays the same rule.
_UPSERT_LOCATION = """
INSERT INTO locations (barcode, store, rack, position, controller, seq, ts)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (barcode) DO UPDATE SET
    store = excluded.store, rack = excluded.rack, position = excluded.position,
    controller = excluded.controller, seq = excluded.seq, ts = excluded.ts
WHERE (excluded.ts, excluded.controller, excluded.seq)
    > (locations.ts, locations.controller, locations.seq)
"""
_INSERT_QUARANTINE = """
INSERT INTO quarantine (controller, received_at, kind, reason, payload, digest, seq, event_id,
                        state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (digest) DO UPDATE SET times_seen = quarantine.times_seen + 1
RETURNING id
"""
_RELEASE = "UPDATE quarantine SET state = 'released', resolved_at = ? WHERE id = ?"
_UPSERT_HEAD = """
INSERT INTO heads (controller, seq, hash, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (controller) DO UPDATE SET
    seq = excluded.seq, hash = excluded.hash, updated_at = excluded.updated_at
WHERE excluded.seq > heads.seq
"""
# A ledger made before the heads table existed: its heads are where its chains end.
_FILL_HEADS = """
INSERT INTO heads (controller, seq, hash, updated_at)
SELECT e.controller, e.seq, e.hash, ? FROM events e JOIN
    (SELECT controller, max(seq) AS seq FROM events GROUP BY controller) m
    ON e.controller = m.controller AND e.seq = m.seq
"""


class SqliteStore(Store):
    """`SqliteStore(url="sqlite:///var/lib/inventoryd/ledger.sqlite3")`."""

    def __init__(self, *, url: str) -> None:
        self.url = url
        self.path = Path(url.removeprefix("sqlite://"))  # sqlite:///var/x -> /var/x
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._executor is None or self._conn is None:
            raise StoreError(self.url, "store is not open")
        conn = self._conn

        def run() -> _T:
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(self.url, str(exc)) from exc
            except sqlite3.Error as exc:
                raise StoreError(self.url, str(exc)) from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory-sqlite")

        def connect() -> sqlite3.Connection:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=10000")
                had_heads = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'heads'"
                ).fetchone()
                conn.executescript(SCHEMA)
                if had_heads is None:
                    conn.execute(_FILL_HEADS, (utc_now(),))
            except (OSError, sqlite3.Error) as exc:
                raise StoreUnavailable(self.url, f"cannot open: {exc}") from exc
            return conn

        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is None:
            return
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    async def apply(self, batch: Batch) -> list[int]:
        stored_at = utc_now()

        def write(conn: sqlite3.Connection) -> list[int]:
            ids: list[int] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for event in batch.events:
                    conn.execute(_INSERT_EVENT, event_params(event, stored_at))
                    conn.execute(_UPSERT_LOCATION, location_params(event))
                conn.executemany(_UPSERT_HEAD, head_params(batch, stored_at))
                for entry in batch.quarantined:
                    row = conn.execute(_INSERT_QUARANTINE, quarantine_params(entry)).fetchone()
                    ids.append(int(row[0]))
                for entry_id in batch.released:
                    conn.execute(_RELEASE, (stored_at, entry_id))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return ids

        return await self._call(write)

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return await self._call(lambda conn: conn.execute(sql, params).fetchall())

    async def heads(self) -> dict[str, Head]:
        rows = await self._query("SELECT controller, seq, hash FROM heads")
        return {controller: Head(seq=int(seq), hash=hash_) for controller, seq, hash_ in rows}

    async def known_events(self, event_ids: list[str]) -> dict[str, str]:
        if not event_ids:
            return {}
        marks = ",".join("?" * len(event_ids))
        rows = await self._query(
            f"SELECT event_id, hash FROM events WHERE event_id IN ({marks})", tuple(event_ids)
        )
        return {event_id: hash_ for event_id, hash_ in rows}

    async def open_quarantine(self) -> list[QuarantineEntry]:
        rows = await self._query(
            f"SELECT {QUARANTINE_COLUMNS} FROM quarantine WHERE state = 'open' ORDER BY id"
        )
        return [quarantine_from_row(row) for row in rows]

    async def quarantine(self) -> list[QuarantineEntry]:
        rows = await self._query(f"SELECT {QUARANTINE_COLUMNS} FROM quarantine ORDER BY id")
        return [quarantine_from_row(row) for row in rows]

    async def location(self, barcode: str) -> LocationRow | None:
        rows = await self._query(
            f"SELECT {LOCATION_COLUMNS} FROM locations WHERE barcode = ?", (barcode,)
        )
        return location_from_row(rows[0]) if rows else None

    async def history(self, barcode: str) -> list[StoredEvent]:
        rows = await self._query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE barcode = ? ORDER BY ts, controller, seq",
            (barcode,),
        )
        return [event_from_row(row) for row in rows]

    async def rack(self, store: str, rack: str) -> list[LocationRow]:
        rows = await self._query(
            f"SELECT {LOCATION_COLUMNS} FROM locations WHERE store = ? AND rack = ? "
            "ORDER BY position",
            (store, rack),
        )
        return [location_from_row(row) for row in rows]

    async def events_since(self, ts: str, limit: int) -> list[StoredEvent]:
        rows = await self._query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE ts >= ? "
            "ORDER BY ts, controller, seq LIMIT ?",
            (ts, limit),
        )
        return [event_from_row(row) for row in rows]

    async def locations(self) -> list[LocationRow]:
        rows = await self._query(f"SELECT {LOCATION_COLUMNS} FROM locations ORDER BY barcode")
        return [location_from_row(row) for row in rows]

    async def chain(self, controller: str) -> list[StoredEvent]:
        rows = await self._query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE controller = ? ORDER BY seq",
            (controller,),
        )
        return [event_from_row(row) for row in rows]

    async def controllers(self) -> list[str]:
        rows = await self._query(
            "SELECT controller FROM heads UNION SELECT controller FROM events ORDER BY controller"
        )
        return [row[0] for row in rows]
