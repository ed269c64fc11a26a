"""The daemon's durable state: one SQLite file under `state_dir` (WAL, synchronous=FULL).

Alarms and their history, paging records, processed command ids and the audit log live here,
so a restart neither forgets an unacknowledged alarm nor pages anyone twice for it, and a
repeated command is answered from its stored reply instead of being applied again.
All access goes through one worker thread: SQLite's fsyncs never stall the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from controllerd._time import utc_now

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    alarm TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    state TEXT NOT NULL,          -- JSON of the AlarmState facts
    payload TEXT NOT NULL,        -- the last published BASE/alarms/{alarm} payload
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alarm_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    alarm TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL,
    value REAL,
    actor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pages (
    alarm TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    level INTEGER NOT NULL,
    first_epoch REAL NOT NULL,
    last_epoch REAL NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (alarm, occurrence, level)
);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    verb TEXT NOT NULL,
    operator TEXT NOT NULL,
    ts TEXT NOT NULL,
    reply TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


class StateDb:
    """`async with StateDb(path=...) as db`: a serialised SQLite connection."""

    def __init__(self, *, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="statedb")
        self._conn: sqlite3.Connection | None = None

    async def __aenter__(self) -> Self:
        await self.run(self._open)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.run(self._close)
        self._executor.shutdown(wait=True)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        self._conn = conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection: only for functions passed to `run`."""
        assert self._conn is not None, "StateDb used outside its context"
        return self._conn

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # --------------------------------------------------------------- alarms

    def load_alarms(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT alarm, state FROM alarms").fetchall()
        return {alarm: json.loads(state) for alarm, state in rows}

    def save_alarm(
        self,
        *,
        alarm: str,
        device: str,
        state: dict[str, Any],
        payload: bytes,
        events: list[tuple[str, int, str, float | None, str]],
    ) -> None:
        """Store an alarm's facts and append its transitions (event, occurrence, state, value,
        actor) to the history and the audit log, in one transaction."""
        now = utc_now()
        conn = self.conn
        with conn:
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO alarms (alarm, device, state, payload, updated) VALUES (?,?,?,?,?)"
                " ON CONFLICT(alarm) DO UPDATE SET state=excluded.state,"
                " payload=excluded.payload, updated=excluded.updated",
                (alarm, device, json.dumps(state), payload.decode(), now),
            )
            for event, occurrence, state_name, value, actor in events:
                conn.execute(
                    "INSERT INTO alarm_history (ts, alarm, occurrence, event, state, value, actor)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (now, alarm, occurrence, event, state_name, value, actor),
                )
                conn.execute(
                    "INSERT INTO audit (ts, actor, action, target, detail) VALUES (?,?,?,?,?)",
                    (
                        now,
                        actor,
                        f"alarm.{event}",
                        alarm,
                        json.dumps({"occurrence": occurrence, "state": state_name, "value": value}),
                    ),
                )

    def delete_alarm(self, alarm: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM alarms WHERE alarm = ?", (alarm,))

    def history(self, alarm: str) -> list[tuple[str, int, str, str]]:
        """(event, occurrence, state, actor) of an alarm, oldest first."""
        return list(
            self.conn.execute(
                "SELECT event, occurrence, state, actor FROM alarm_history WHERE alarm = ?"
                " ORDER BY id",
                (alarm,),
            )
        )

    # --------------------------------------------------------------- pages

    def load_pages(self) -> dict[tuple[str, int], dict[int, tuple[float, float, int]]]:
        """(alarm, occurrence) -> level -> (first_epoch, last_epoch, count)."""
        result: dict[tuple[str, int], dict[int, tuple[float, float, int]]] = {}
        for alarm, occ, level, first, last, count in self.conn.execute(
            "SELECT alarm, occurrence, level, first_epoch, last_epoch, count FROM pages"
        ):
            result.setdefault((alarm, occ), {})[level] = (first, last, count)
        return result

    def record_page(self, *, alarm: str, occurrence: int, level: int) -> None:
        now = time.time()
        with self.conn:
            self.conn.execute(
                "INSERT INTO pages (alarm, occurrence, level, first_epoch, last_epoch, count)"
                " VALUES (?,?,?,?,?,1) ON CONFLICT(alarm, occurrence, level) DO UPDATE SET"
                " last_epoch=excluded.last_epoch, count=count+1",
                (alarm, occurrence, level, now, now),
            )

    def forget_pages(self, alarm: str, occurrence: int) -> None:
        with self.conn:
            self.conn.execute(
                "DELETE FROM pages WHERE alarm = ? AND occurrence <= ?", (alarm, occurrence)
            )

    # --------------------------------------------------------------- commands, audit

    def command_reply(self, command_id: str) -> bytes | None:
        row = self.conn.execute(
            "SELECT reply FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        return None if row is None else str(row[0]).encode()

    def record_command(
        self, *, command_id: str, verb: str, operator: str, reply: bytes, detail: dict[str, Any]
    ) -> None:
        now = utc_now()
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT OR IGNORE INTO commands (command_id, verb, operator, ts, reply)"
                " VALUES (?,?,?,?,?)",
                (command_id, verb, operator, now, reply.decode()),
            )
            self.audit_row(now, operator, f"cmd.{verb}", command_id, detail)

    def audit(self, *, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        with self.conn:
            self.audit_row(utc_now(), actor, action, target, detail)

    def audit_row(
        self, ts: str, actor: str, action: str, target: str, detail: dict[str, Any]
    ) -> None:
        self.conn.execute(
            "INSERT INTO audit (ts, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (ts, actor, action, target, json.dumps(detail, default=str)),
        )

    def audit_log(self, action_prefix: str = "") -> list[tuple[str, str, str, str, str]]:
        """(ts, actor, action, target, detail) rows, oldest first; `detail` is JSON."""
        return list(
            self.conn.execute(
                "SELECT ts, actor, action, target, detail FROM audit WHERE action LIKE ?"
                " ORDER BY id",
                (action_prefix + "%",),
            )
        )
