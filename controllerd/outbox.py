"""The durable outbox of specimen movements: written before published, released on the
inventory's end-to-end acknowledgement.

`Outbox.append` seals the next movement (`seq`, `prev_hash`, `hash`, see inventory.events) and
commits it to SQLite (WAL, `synchronous=FULL`: a returned append survives a power cut) in one
transaction, together with whatever the caller writes in the same transaction (the job
journal's "tube placed" step), so a movement is recorded exactly when its step is. A sender task
publishes the events in `seq` order at QoS 1 and checks each PUBACK's reason code (an
ACL-denied publish is a failure, retried with backoff). An event leaves the outbox only when the
inventory's retained ack (`{prefix}/{site}/inventory/acks/{controller}`, the highest contiguous
`seq` it stored) reaches it; a broker's PUBACK is not delivery. At most `window` events past the
ack are in flight (Mosquitto drops QoS 1 messages past 1000 queued per client), and when the
ack makes no progress for `republish_s` everything past it is published again (the inventory
drops duplicates by `event_id`). Depth and the oldest unacknowledged event's age are published
as the controller's telemetry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import aiomqtt
import structlog

from controllerd._tasks import BackgroundTasks
from controllerd._time import utc_now
from controllerd.topics import TelemetryPayload
from drivers import Backoff
from inventory.events import GENESIS_PREV_HASH, Location, MovementEvent

_log = structlog.get_logger("controllerd.outbox")

FILE_NAME = "jobs.sqlite3"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    acked_seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO outbox_head (id, last_seq, last_hash, acked_seq)
    VALUES (1, 0, '{GENESIS_PREV_HASH}', 0);
"""


class OutboxError(Exception):
    """The outbox could not record a movement (disk full, database broken)."""


class OutboxMqtt(Protocol):
    """What the outbox needs of the MQTT session (controllerd.mqtt.MqttConnection)."""

    async def publish_confirmed(
        self, topic: str, payload: bytes, *, timeout_s: float = 10.0
    ) -> str | None: ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """How far the outbox is behind: events not yet acknowledged end to end."""

    depth: int
    oldest_age_s: float
    last_seq: int
    acked_seq: int


def open_state_db(path: Path) -> sqlite3.Connection:
    """The jobs database (outbox and journal): autocommit mode, WAL, synchronous=FULL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return db


class Outbox:
    """`async with Outbox(db=..., mqtt=..., topic=..., telemetry_topic=...) as outbox:`.

    `db` is the connection from `open_state_db`; the caller owns it (the job journal shares it).
    """

    def __init__(
        self,
        *,
        db: sqlite3.Connection,
        mqtt: OutboxMqtt,
        topic: str,
        telemetry_topic: str | None = None,
        window: int = 200,
        republish_s: float = 10.0,
        publish_timeout_s: float = 10.0,
        telemetry_s: float = 10.0,
    ) -> None:
        self._db = db
        self._mqtt = mqtt
        self._topic = topic
        self._telemetry_topic = telemetry_topic
        self._window = window
        self._republish_s = republish_s
        self._publish_timeout_s = publish_timeout_s
        self._telemetry_s = telemetry_s
        self._wake = asyncio.Event()
        self._acked_changed = asyncio.Condition()
        self._backoff = Backoff(initial_s=0.2, max_s=10.0)
        self._background = BackgroundTasks()
        last_seq, _, acked = self._head()
        self._acked = acked
        #: highest seq the broker accepted in this pass (republishing restarts it at the ack)
        self._sent = acked
        self._last_seq = last_seq
        self._waiting_since = time.monotonic()
        #: every successful PUBACK (republications included), for tests and the bench
        self.published = 0

    async def __aenter__(self) -> Self:
        await self._background.start()
        self._background.spawn(self._send_loop(), name="outbox-sender")
        if self._telemetry_topic is not None:
            self._background.spawn(self._telemetry_loop(), name="outbox-telemetry")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.close()

    # ------------------------------------------------------------------ writing

    def _head(self) -> tuple[int, str, int]:
        row = self._db.execute(
            "SELECT last_seq, last_hash, acked_seq FROM outbox_head WHERE id = 1"
        ).fetchone()
        return int(row[0]), str(row[1]), int(row[2])

    def append(
        self,
        *,
        barcode: str,
        from_: Location | None,
        to: Location,
        job: str | None,
        operator: str,
        exposure_s: float,
        ts: str | None = None,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> MovementEvent:
        """Seal and durably record the next movement; `also` writes in the same transaction.

        Returns once committed (fsync'd). Raises OutboxError and records nothing on failure.
        """
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                last_seq, last_hash, _ = self._head()
                event = MovementEvent.seal(
                    event_id=uuid.uuid4(),
                    seq=last_seq + 1,
                    ts=ts or utc_now(),
                    barcode=barcode,
                    from_=from_,
                    to=to,
                    job=job,
                    operator=operator,
                    exposure_s=round(exposure_s, 3),
                    prev_hash=last_hash,
                )
                db.execute(
                    "INSERT INTO outbox (seq, event_id, payload, created) VALUES (?, ?, ?, ?)",
                    (event.seq, str(event.event_id), event.to_json(), time.time()),
                )
                db.execute(
                    "UPDATE outbox_head SET last_seq = ?, last_hash = ? WHERE id = 1",
                    (event.seq, event.hash),
                )
                if also is not None:
                    also(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise OutboxError(f"movement of {barcode} not recorded: {exc}") from exc
        self._last_seq = event.seq
        self._wake.set()
        _log.info("movement recorded", seq=event.seq, barcode=barcode, job=job)
        return event

    # ------------------------------------------------------------------ acknowledgements

    def acknowledge(self, seq: int) -> int:
        """The inventory stored every event up to `seq`: release them. Returns how many left."""
        if seq <= self._acked:
            return 0
        if seq > self._last_seq:
            _log.error(
                "inventory acknowledges movements this controller never wrote",
                acked=seq,
                last_seq=self._last_seq,
            )
            seq = self._last_seq
            if seq <= self._acked:
                return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            released = db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount
            db.execute("UPDATE outbox_head SET acked_seq = ? WHERE id = 1", (seq,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._acked = seq
        self._sent = max(self._sent, seq)
        self._waiting_since = time.monotonic()
        self._wake.set()
        return int(released)

    async def handle_ack(self, message: aiomqtt.Message) -> None:
        """The retained `.../inventory/acks/{controller}` message (`{"controller","seq","ts"}`)."""
        raw = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        if not raw:
            return
        try:
            seq = json.loads(raw)["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise ValueError(f"seq {seq!r} is not a count")
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning("ignoring a malformed inventory ack", error=str(exc))
            return
        if self.acknowledge(seq):
            async with self._acked_changed:
                self._acked_changed.notify_all()

    async def wait_acked(self, seq: int) -> None:
        """Until the inventory has acknowledged `seq` (for tests and shutdown drains)."""
        async with self._acked_changed:
            await self._acked_changed.wait_for(lambda: self._acked >= seq)

    def stats(self) -> OutboxStats:
        row = self._db.execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
        depth, oldest = int(row[0]), row[1]
        age = max(0.0, time.time() - float(oldest)) if oldest is not None else 0.0
        return OutboxStats(
            depth=depth, oldest_age_s=round(age, 3), last_seq=self._last_seq, acked_seq=self._acked
        )

    # ------------------------------------------------------------------ publishing

    def _next_batch(self) -> list[tuple[int, bytes]]:
        limit = self._acked + self._window
        rows = self._db.execute(
            "SELECT seq, payload FROM outbox WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 50",
            (self._sent, limit),
        ).fetchall()
        return [(int(seq), bytes(payload)) for seq, payload in rows]

    async def _send_loop(self) -> None:
        while True:
            batch = self._next_batch()
            for seq, payload in batch:
                error = await self._mqtt.publish_confirmed(
                    self._topic, payload, timeout_s=self._publish_timeout_s
                )
                if error is not None:
                    delay = self._backoff.next_delay()
                    log = _log.warning if self._backoff.failures == 1 else _log.debug
                    log(
                        "movement not accepted by the broker",
                        seq=seq,
                        reason=error,
                        retry_in_s=round(delay, 2),
                    )
                    await asyncio.sleep(delay)
                    break
                if self._backoff.failures:
                    _log.info(
                        "broker accepts movements again", after_failures=self._backoff.failures
                    )
                    self._backoff.reset()
                if self._sent <= self._acked:
                    self._waiting_since = time.monotonic()  # the ack clock starts now
                self.published += 1
                self._sent = max(self._sent, seq)
            if batch:
                continue
            self._wake.clear()
            remaining = self._waiting_since + self._republish_s - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(remaining, 0.01)):
                    await self._wake.wait()
            stalled = time.monotonic() - self._waiting_since >= self._republish_s
            if self._sent > self._acked and stalled:
                # Lost somewhere past the broker (a broker restart without persistence, an
                # inventory that dropped a held event): publish everything past the ack again.
                _log.info(
                    "no end-to-end ack in time: republishing",
                    from_seq=self._acked + 1,
                    to_seq=self._sent,
                )
                self._sent = self._acked
                self._waiting_since = time.monotonic()

    async def _telemetry_loop(self) -> None:
        assert self._telemetry_topic is not None
        while True:
            stats = self.stats()
            payload = TelemetryPayload(
                ts=utc_now(),
                values={
                    "outbox_depth": float(stats.depth),
                    "outbox_oldest_age_s": stats.oldest_age_s,
                    "outbox_last_seq": float(stats.last_seq),
                    "outbox_acked_seq": float(stats.acked_seq),
                },
                quality="good",
            )
            await self._mqtt.publish(self._telemetry_topic, payload.to_json())
            await asyncio.sleep(self._telemetry_s)
