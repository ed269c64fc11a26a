"""The inventory service: movements in over a persistent MQTT 5 session, ledger out.

`Inventory` is an async context manager owning one task group: the MQTT session (reconnecting
with capped, jittered backoff) and, per connection, a reader, the ingest loop and the query
loop. The session is persistent (clean start off, a long session expiry) and the subscription
QoS 1, so the broker queues movements while the inventory is down. Messages are acknowledged
to the broker (PUBACK, paho's manual ack) only after their batch is committed, so a `kill -9`
between receipt and commit loses nothing: the broker redelivers them.

Per batch: validate (`Intake`), store in one transaction, PUBACK, then publish retained the
new ack (`acks/{controller}`) and head hash (`heads/{controller}`) of each controller that
advanced, a notice per new quarantine entry and the quarantine alarm when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import time
from types import TracebackType
from typing import Any, Self

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers import Backoff, cancel_and_wait
from drivers.mqtt_session import mqtt_session
from inventory._config import InventoryConfig
from inventory._errors import StoreError
from inventory._intake import Intake
from inventory._queries import answer
from inventory._sdnotify import SystemdNotifier
from inventory._store import Store, open_store
from inventory._time import utc_now
from inventory._topics import (
    InventoryTopics,
    ack_payload,
    alarm_payload,
    head_payload,
    quarantine_payload,
    status_payload,
)

VERSION = "0.1.0"
_log = structlog.get_logger("inventory")


class Inventory:
    """`async with Inventory(config=cfg) as inv: await inv.wait_ready()` — the service."""

    def __init__(self, *, config: InventoryConfig, store: Store | None = None) -> None:
        self._config = config
        self._store = store or open_store(config.store.url, schema=config.store.schema_name)
        self.topics = InventoryTopics(prefix=config.mqtt.prefix, site=config.inventory.site)
        self._backoff = Backoff(
            initial_s=config.mqtt.reconnect_initial_s, max_s=config.mqtt.reconnect_max_s
        )
        self._ready = asyncio.Event()
        self._task_group: asyncio.TaskGroup | None = None
        self._client: aiomqtt.Client | None = None
        self._notifier = SystemdNotifier()
        self._busy_since: float | None = None
        self._alarm_shown: tuple[bool, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._gap_warned: set[str] = set()  # controllers whose current gap was logged
        self._delay = 0.0
        self._alarm_since = utc_now()
        self.stored = 0
        self.duplicates = 0
        self.quarantined = 0

    @property
    def store(self) -> Store:
        return self._store

    async def wait_ready(self) -> None:
        """Until the first connection is up and subscribed."""
        await self._ready.wait()

    async def __aenter__(self) -> Self:
        await self._store.open()
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._tasks.append(self._task_group.create_task(self._run(), name="inventory-mqtt"))
        if self._notifier.watchdog_s is not None:
            watchdog = self._task_group.create_task(self._watchdog(), name="inventory-watchdog")
            self._tasks.append(watchdog)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._notifier.notify("STOPPING=1", "STATUS=stopping")
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2.0):
                    offline = status_payload("offline", VERSION)
                    await client.publish(self.topics.status, offline, qos=1, retain=True)
        assert self._task_group is not None
        await cancel_and_wait(*self._tasks)
        try:
            await self._task_group.__aexit__(None, None, None)
        finally:
            await self._store.close()

    async def _watchdog(self) -> None:
        """WATCHDOG=1 while no store call has hung for half the watchdog period."""
        assert self._notifier.watchdog_s is not None
        period = self._notifier.watchdog_s / 2
        while True:
            busy = self._busy_since
            if busy is None or time.monotonic() - busy < period:
                self._notifier.notify("WATCHDOG=1")
            await asyncio.sleep(period / 2)

    def _make_client(self) -> aiomqtt.Client:
        cfg = self._config.mqtt
        password = None
        if cfg.password_file is not None:
            password = cfg.password_file.read_text(encoding="utf-8").strip()
        tls_context = None
        if cfg.ca_file is not None:
            tls_context = ssl.create_default_context(cafile=str(cfg.ca_file))
            if cfg.cert_file is not None and cfg.key_file is not None:
                tls_context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = cfg.session_expiry_s
        client = aiomqtt.Client(
            cfg.host,
            port=cfg.port,
            identifier=self._config.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            username=cfg.username,
            password=password,
            keepalive=cfg.keepalive_s,
            timeout=10,
            tls_context=tls_context,
            will=aiomqtt.Will(
                self.topics.status, status_payload("offline", VERSION), qos=1, retain=True
            ),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        client.pending_calls_threshold = 1_000_000
        # PUBACK only once a movement is committed: aiomqtt does not expose paho's manual ack,
        # so it is switched on (and sent, in `_puback`) on the paho client underneath.
        client._client.manual_ack_set(True)
        return client

    async def _run(self) -> None:
        while True:
            # The per-connection task group raises groups; a failing connect raises bare errors.
            try:
                await self._session()
            except* (aiomqtt.MqttError, OSError) as group:
                self._retry_later("broker unreachable", group.exceptions[0])
            except* StoreError as group:
                self._retry_later("store failed", group.exceptions[0])
            finally:
                self._client = None
                self._busy_since = None
            await asyncio.sleep(self._delay)

    def _retry_later(self, what: str, exc: BaseException) -> None:
        self._delay = self._backoff.next_delay()
        log = _log.warning if self._backoff.failures == 1 else _log.debug
        log(what, reason=str(exc) or type(exc).__name__, retry_in_s=round(self._delay, 2))

    async def _session(self) -> None:
        """One connection: load the ledger's state, connect, subscribe, ingest until it drops."""
        intake = Intake(
            heads=await self._store.heads(), open_entries=await self._store.open_quarantine()
        )
        cfg = self._config.mqtt
        async with mqtt_session(self._make_client()) as client:
            self._client = client
            # Subscribed before saying `online`: a movement published once the status says
            # online is queued for this session even on the very first start.
            await client.subscribe(self.topics.movements, qos=1)
            await client.subscribe(self.topics.query, qos=0)
            await client.publish(
                self.topics.status, status_payload("online", VERSION), qos=1, retain=True
            )
            for controller in intake.heads:
                await self._publish_head(client, controller, intake)
            await self._publish_alarm(client, intake, "", force=True)
            _log.info(
                "broker connected",
                host=cfg.host,
                port=cfg.port,
                controllers=len(intake.heads),
                open_quarantine=intake.open_count,
                after_failures=self._backoff.failures,
            )
            self._backoff.reset()
            self._ready.set()
            self._notifier.notify("READY=1", f"STATUS=connected to {cfg.host}:{cfg.port}")
            movements: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
            queries: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(client, movements, queries), name="inventory-read")
                group.create_task(self._ingest(client, intake, movements), name="inventory-ingest")
                group.create_task(self._answer(client, queries), name="inventory-query")
        self._delay = self._backoff.next_delay()

    async def _read(
        self,
        client: aiomqtt.Client,
        movements: asyncio.Queue[aiomqtt.Message],
        queries: asyncio.Queue[aiomqtt.Message],
    ) -> None:
        async for message in client.messages:
            if message.topic.matches(self.topics.query):
                queries.put_nowait(message)
            else:
                movements.put_nowait(message)
        raise aiomqtt.MqttError("message stream ended")

    def _puback(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        client._client.ack(message.mid, message.qos)

    async def _ingest(
        self, client: aiomqtt.Client, intake: Intake, queue: asyncio.Queue[aiomqtt.Message]
    ) -> None:
        batch_max = self._config.store.batch_max
        while True:
            messages = [await queue.get()]
            while len(messages) < batch_max and not queue.empty():
                messages.append(queue.get_nowait())
            self._busy_since = time.monotonic()
            await self._ingest_batch(client, intake, messages)
            self._busy_since = None

    async def _ingest_batch(
        self, client: aiomqtt.Client, intake: Intake, messages: list[aiomqtt.Message]
    ) -> None:
        items: list[tuple[str, bytes]] = []
        event_ids: list[str] = []
        for message in messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            controller = self.topics.controller_of(str(message.topic)) or "?"
            items.append((controller, payload))
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                event_ids.append(str(json.loads(payload)["event_id"]))
        known = await self._store.known_events(event_ids)
        batch = intake.begin()
        for controller, payload in items:
            outcome, _ = intake.offer(controller, payload, known=known)
            if outcome == "duplicate":
                self.duplicates += 1
            elif outcome in ("quarantined", "held"):
                self.quarantined += 1
        advanced = {event.controller for event in batch.events}
        ids = await self._store.apply(batch) if batch else []
        intake.committed(batch, ids)
        self.stored += len(batch.events)
        self._gap_warned -= advanced
        for message in messages:
            self._puback(client, message)
        for entry in batch.quarantined:
            # One warning per gap, not one per event held behind it.
            held = entry.reason.startswith("out of sequence")
            log = _log.debug if held and entry.controller in self._gap_warned else _log.warning
            if held:
                self._gap_warned.add(entry.controller)
            log(
                "movement quarantined",
                controller=entry.controller,
                kind=entry.kind,
                seq=entry.seq,
                event_id=entry.event_id,
                reason=entry.reason,
                quarantine_id=entry.id,
            )
            notice = quarantine_payload(
                entry_id=entry.id,
                controller=entry.controller,
                kind=entry.kind,
                reason=entry.reason,
                seq=entry.seq,
                event_id=entry.event_id,
            )
            await client.publish(self.topics.quarantine, notice, qos=1)
        await asyncio.gather(*(self._publish_head(client, c, intake) for c in sorted(advanced)))
        last_reason = batch.quarantined[-1].reason if batch.quarantined else ""
        await self._publish_alarm(client, intake, last_reason)

    async def _publish_head(self, client: aiomqtt.Client, controller: str, intake: Intake) -> None:
        head = intake.heads[controller]
        await asyncio.gather(
            client.publish(
                self.topics.ack(controller), ack_payload(controller, head), qos=1, retain=True
            ),
            client.publish(
                self.topics.head(controller), head_payload(controller, head), qos=1, retain=True
            ),
        )

    async def _publish_alarm(
        self, client: aiomqtt.Client, intake: Intake, reason: str, *, force: bool = False
    ) -> None:
        active = intake.open_count > 0
        shown = (active, intake.open_count)
        if shown == self._alarm_shown and not force:
            return
        if self._alarm_shown is None or active != self._alarm_shown[0]:
            self._alarm_since = utc_now()
            if active or self._alarm_shown is not None:
                log = _log.warning if active else _log.info
                log("quarantine alarm", active=active, open_entries=intake.open_count)
        self._alarm_shown = shown
        message = (
            f"{intake.open_count} movement(s) in quarantine"
            + (f"; latest: {reason}" if reason else "")
            if active
            else "no movement in quarantine"
        )
        payload = alarm_payload(
            open_count=intake.open_count, message=message, since=self._alarm_since
        )
        await client.publish(self.topics.alarm, payload, qos=1, retain=True)

    async def _answer(self, client: aiomqtt.Client, queue: asyncio.Queue[aiomqtt.Message]) -> None:
        while True:
            message = await queue.get()
            props = message.properties
            response_topic = getattr(props, "ResponseTopic", None) if props else None
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if not response_topic:
                _log.warning("query without a response topic ignored", size=len(payload))
                continue
            body: dict[str, Any] = await answer(self._store, payload)
            if not body["ok"]:
                _log.info("bad query", error=body["error"])
            reply = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            correlation = getattr(props, "CorrelationData", None)
            if correlation is not None:
                reply.CorrelationData = correlation
            await client.publish(
                response_topic,
                json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
                qos=1,
                properties=reply,
            )


async def run_inventory(config: InventoryConfig) -> None:
    """`inventoryd run`: the service until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _log.info("starting", version=VERSION, site=config.inventory.site, store=config.store.url)
    try:
        async with Inventory(config=config):
            await stop.wait()
            _log.info("stopping on signal")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
