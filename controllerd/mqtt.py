"""The daemon's MQTT 5 connection: always reconnecting, with a retained last will.

`MqttConnection` owns one background task that keeps a session to the broker: it connects with
`BASE/status` = offline as last will, publishes `online`, republishes every retained message the
daemon has published so far (so a broker that restarted without persistence learns the current
state again), and reconnects with capped, jittered backoff when the connection drops.
Non-retained QoS 0 telemetry published while disconnected is dropped (counted), never queued:
a stale reading delivered late is worse than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import aiomqtt
import structlog
from paho.mqtt.client import MQTT_ERR_SUCCESS, MQTT_LOG_ERR
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controllerd._mqtt_batch import Qos0Batch
from controllerd._time import utc_now
from controllerd.config import Config, MqttSection
from controllerd.topics import StatusPayload, Topics
from drivers import Backoff, cancel_and_wait
from drivers.mqtt_session import mqtt_session

_log = structlog.get_logger("controllerd.mqtt")


class Publisher(Protocol):
    """What device logic needs of the MQTT session."""

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool: ...


class TelemetryPublisher(Publisher, Protocol):
    """What a device poller needs: also a QoS 0, not retained publish that never waits."""

    def publish_nowait(self, topic: str, payload: bytes) -> bool: ...


#: Handles one incoming message; runs as its own task, so a slow handler blocks no other.
MessageHandler = Callable[[aiomqtt.Message], Awaitable[None]]


def response_target(message: aiomqtt.Message) -> tuple[str, bytes | None] | None:
    """(response topic, correlation data) of an MQTT 5 request, or None when it asks no reply."""
    props = message.properties
    topic = getattr(props, "ResponseTopic", None) if props is not None else None
    if not topic:
        return None
    correlation = getattr(props, "CorrelationData", None)
    return str(topic), bytes(correlation) if correlation is not None else None


def _tls_hint(reason: str, mqtt: MqttSection) -> str:
    """What a bare TLS EOF most likely means, for the operator reading the error.

    With TLS 1.3 the client's handshake is over before the broker checks the client
    certificate, so a broker refusing it either sends an alert ("unknown ca") or just closes
    the connection, and the client then sees only an EOF, depending on timing.
    """
    if mqtt.cert_file is not None and "EOF occurred in violation of protocol" in reason:
        return (
            "; the broker closed the TLS connection without a word, which is how it refuses a"
            " client certificate it does not trust: check cert_file against the broker's CA"
        )
    return ""


class MqttConnection:
    """A self-healing MQTT 5 session for one controller."""

    def __init__(self, *, config: Config, topics: Topics) -> None:
        self._mqtt: MqttSection = config.mqtt
        self._client_id = f"controllerd-{config.controller.site}-{config.controller.id}"
        self._topics = topics
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._backoff = Backoff(
            initial_s=self._mqtt.reconnect_initial_s, max_s=self._mqtt.reconnect_max_s
        )
        self._task_group: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._subscriptions: dict[str, MessageHandler] = {}
        self._handlers: asyncio.TaskGroup | None = None
        #: PUBACK waiters of the current client by message id (see publish_confirmed)
        self._pubacks: dict[int, asyncio.Future[str | None]] = {}
        #: telemetry (QoS 0, not retained) of the current loop turn, written as one chunk
        self._batch: Qos0Batch | None = None
        self.dropped = 0
        #: why the last connection attempt failed or the session ended (None once connected)
        self.last_error: str | None = None
        #: failed connection attempts since the last successful connect
        self.failures = 0
        #: the socket or TLS error paho logged during the current attempt (a refused client
        #: certificate surfaces there, while aiomqtt only sees a CONNACK timeout)
        self._transport_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        """Deliver messages matching `topic_filter` to `handler` (QoS 1), from every session.

        Register before entering: subscriptions are (re)made on every connect.
        """
        self._subscriptions[topic_filter] = handler

    async def __aenter__(self) -> Self:
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._handlers = self._task_group
        self._task = self._task_group.create_task(self._run(), name="mqtt-connection")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        client = self._client
        if client is not None:
            if self._batch is not None:
                self._batch.flush()
            # A clean shutdown says `offline` itself; the last will covers crashes.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await client.publish(
                        self._topics.status, self._status("offline"), qos=1, retain=True
                    )
        assert self._task_group is not None and self._task is not None
        await cancel_and_wait(self._task)
        await self._task_group.__aexit__(None, None, None)

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        return StatusPayload(state=state, ts=utc_now()).to_json()

    def _make_client(self) -> aiomqtt.Client:
        cfg = self._mqtt
        password = None
        if cfg.password_file is not None:
            password = cfg.password_file.read_text(encoding="utf-8").strip()
        tls_context = None
        if cfg.ca_file is not None:
            tls_context = ssl.create_default_context(cafile=str(cfg.ca_file))
            if cfg.cert_file is not None and cfg.key_file is not None:
                tls_context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
        client = aiomqtt.Client(
            cfg.host,
            port=cfg.port,
            identifier=self._client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            username=cfg.username,
            password=password,
            keepalive=cfg.keepalive_s,
            timeout=cfg.connect_timeout_s,
            tls_context=tls_context,
            will=aiomqtt.Will(self._topics.status, self._status("offline"), qos=1, retain=True),
            # Small state messages must not wait for Nagle's algorithm.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._transport_error = None

        def on_log(paho: Any, userdata: Any, level: int, text: str) -> None:
            if level == MQTT_LOG_ERR:
                self._transport_error = text

        client._client.on_log = on_log
        # Every poller publishes at its tick, so hundreds of publishes in flight are normal;
        # aiomqtt would log a warning for each one past 10 (thousands of lines a minute).
        client.pending_calls_threshold = 1_000_000
        # aiomqtt drops the PUBACK's reason code; publish_confirmed needs it (an ACL-denied
        # publish is acknowledged with a failure code such as 0x87 Not authorized).
        pubacks: dict[int, asyncio.Future[str | None]] = {}
        aiomqtt_on_publish: Callable[..., None] | None = client._client.on_publish

        def on_publish(paho: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            waiter = pubacks.pop(mid, None)
            if waiter is not None and not waiter.done():
                failed = reason is not None and getattr(reason, "is_failure", False)
                waiter.set_result(f"PUBACK {reason}" if failed else None)
            if aiomqtt_on_publish is not None:
                aiomqtt_on_publish(paho, userdata, mid, reason, props)

        client._client.on_publish = on_publish
        self._pubacks = pubacks
        return client

    async def _run(self) -> None:
        while not self._stopping:
            try:
                async with mqtt_session(self._make_client()) as client:
                    self._client = client
                    self._batch = Qos0Batch(paho=client._client, on_dropped=self._count_dropped)
                    # Subscribed before `online`: whoever waits for `online` to send a
                    # command must not lose it to the gap.
                    for topic_filter in self._subscriptions:
                        await client.subscribe(topic_filter, qos=1)
                    await client.publish(
                        self._topics.status, self._status("online"), qos=1, retain=True
                    )
                    # Connected first, replay second: anything published from now on goes out
                    # directly, and the replay sends each topic's value as it is when its turn
                    # comes (paho sends in call order), so no update is lost or overtaken.
                    self._connected.set()
                    for topic in list(self._retained):
                        if topic in self._retained:
                            payload, qos = self._retained[topic]
                            await client.publish(topic, payload, qos=qos, retain=True)
                    if self._backoff.failures:
                        _log.info(
                            "broker connected",
                            host=self._mqtt.host,
                            port=self._mqtt.port,
                            after_failures=self._backoff.failures,
                        )
                    else:
                        _log.info("broker connected", host=self._mqtt.host, port=self._mqtt.port)
                    self._backoff.reset()
                    self.last_error = None
                    self.failures = 0
                    async for message in client.messages:
                        self._dispatch(message)
            except (aiomqtt.MqttError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
                if self._transport_error:
                    reason = f"{reason} ({self._transport_error})"
                reason += _tls_hint(reason, self._mqtt)
                self.last_error = reason
                self.failures += 1
                delay = self._backoff.next_delay()
                log = _log.warning if self._backoff.failures == 1 else _log.debug
                log(
                    "broker unreachable",
                    host=self._mqtt.host,
                    port=self._mqtt.port,
                    reason=reason,
                    retry_in_s=round(delay, 2),
                )
            else:
                delay = self._backoff.next_delay()
            finally:
                self._client = None
                if self._batch is not None:
                    self._batch.close()
                    self._batch = None
                self._connected.clear()
                for waiter in self._pubacks.values():
                    if not waiter.done():
                        waiter.set_result("connection lost before the PUBACK")
                self._pubacks.clear()
            await asyncio.sleep(delay)

    def _dispatch(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        for topic_filter, handler in self._subscriptions.items():
            if message.topic.matches(topic_filter):
                assert self._handlers is not None
                self._handlers.create_task(
                    self._handle(handler, message, topic_filter), name=f"mqtt-message {topic}"
                )
                return

    async def _handle(
        self, handler: MessageHandler, message: aiomqtt.Message, topic_filter: str
    ) -> None:
        try:
            await handler(message)
        except Exception:
            # A handler bug costs that message, never the session (and is logged loudly).
            _log.exception("message handler failed", topic=message.topic.value, filter=topic_filter)

    async def reply(self, request: aiomqtt.Message, payload: bytes) -> bool:
        """Answer an MQTT 5 request on its response topic with its correlation data (QoS 1).

        Returns False when the request named no response topic or the broker is unreachable.
        """
        target = response_target(request)
        client = self._client
        if target is None or client is None:
            return False
        topic, correlation = target
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if correlation is not None:
            props.CorrelationData = correlation
        props.ContentType = "application/json"
        try:
            await client.publish(topic, payload, qos=1, properties=props)
        except aiomqtt.MqttError as exc:
            _log.warning("reply failed", topic=topic, reason=str(exc))
            return False
        return True

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        """Publish; retained messages are remembered and republished after every reconnect.

        Returns whether the message left for the broker now. QoS 0 messages are handed to the
        socket without waiting for the write: there is no acknowledgement to wait for, and
        awaiting each one was a third of the poll path's CPU. Non-retained ones (telemetry) go
        out together at the end of the loop turn (`Qos0Batch`); anything else flushes them first,
        so the broker sees every message in call order.
        """
        if qos == 0 and not retain:
            return self.publish_nowait(topic, payload)
        if retain:
            self._retained[topic] = (payload, qos)
        client = self._client
        batch = self._batch
        if client is None or batch is None or not self._connected.is_set():
            if not retain:
                self.dropped += 1
            return False
        batch.flush()
        if qos == 0:
            info = client._client.publish(topic, payload, 0, retain)
            if info.rc != MQTT_ERR_SUCCESS:
                _log.debug("publish failed", topic=topic, rc=info.rc)
                if not retain:
                    self.dropped += 1
                return False
            return True
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            _log.debug("publish failed", topic=topic, reason=str(exc))
            if not retain:
                self.dropped += 1
            return False
        return True

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """`publish` of a QoS 0 message that is not retained (telemetry), which never waits:
        a plain call, one coroutine less per poll. Added to this loop turn's `Qos0Batch`."""
        batch = self._batch
        if self._client is None or batch is None or not self._connected.is_set():
            self.dropped += 1
            return False
        batch.add(topic, payload)
        return True

    def _count_dropped(self, count: int) -> None:
        self.dropped += count

    async def publish_confirmed(
        self, topic: str, payload: bytes, *, timeout_s: float = 10.0
    ) -> str | None:
        """Publish at QoS 1 and wait for the broker's PUBACK: None when the broker accepted it,
        else why not (not connected, no PUBACK in time, the connection dropped, or the PUBACK's
        failure reason code such as `Not authorized`). Acceptance is not delivery: the caller
        still waits for its receiver's own acknowledgement."""
        client = self._client
        if client is None or not self._connected.is_set():
            return "not connected"
        pubacks = self._pubacks
        info = client._client.publish(topic, payload, 1, False)
        if info.rc != MQTT_ERR_SUCCESS:
            return f"publish failed (paho rc {info.rc})"
        # The PUBACK is read by a callback of this event loop, so it cannot arrive before the
        # waiter is registered here (no await in between).
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        pubacks[info.mid] = waiter
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter
        except TimeoutError:
            return f"no PUBACK within {timeout_s:g} s"
        finally:
            if pubacks.get(info.mid) is waiter:
                del pubacks[info.mid]

    async def clear_retained(self, topic: str) -> None:
        """Remove a retained topic (an empty retained payload deletes it at the broker)."""
        self._retained.pop(topic, None)
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(topic, b"", qos=1, retain=True)
