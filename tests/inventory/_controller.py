"""A simulated controller's outbox for the inventory tests: it publishes a chain of movements
at QoS 1, at most a window of events past the inventory's retained ack, follows that ack and
republishes everything past it whenever the ack stalls or the connection comes back — what the
daemon's durable outbox does (PRODUCT.md: a PUBACK alone is not delivery)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiomqtt

from drivers.mqtt_session import mqtt_session
from inventory.events import MovementEvent


class OutboxPublisher:
    """`await OutboxPublisher(...).run()` returns once every event is acknowledged."""

    def __init__(
        self,
        *,
        port: int,
        prefix: str,
        site: str,
        controller: str,
        events: list[MovementEvent],
        window: int = 200,
        stall_s: float = 1.5,
        on_ack: asyncio.Event | None = None,
    ) -> None:
        self.port = port
        self.controller = controller
        self.events = events
        self.topic = f"{prefix}/{site}/{controller}/events/movements"
        self.ack_topic = f"{prefix}/{site}/inventory/acks/{controller}"
        self.acked = 0
        self.published = 0
        self.reconnects = 0
        self._window = window
        self._stall_s = stall_s
        self._progress = asyncio.Event()
        self._on_ack = on_ack  # set on every ack, for a watcher of several publishers

    @property
    def done(self) -> bool:
        return self.acked >= len(self.events)

    async def run(self) -> None:
        while not self.done:
            try:
                client = aiomqtt.Client(
                    "127.0.0.1",
                    port=self.port,
                    identifier=f"test-outbox-{self.controller}",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    timeout=5,
                )
                async with mqtt_session(client):
                    client.pending_calls_threshold = 1_000_000
                    await client.subscribe(self.ack_topic, qos=1)
                    async with asyncio.TaskGroup() as group:
                        acks = group.create_task(self._follow_acks(client), name="test-acks")
                        await self._publish_all(client)
                        acks.cancel()
            except* aiomqtt.MqttError:
                self.reconnects += 1
                await asyncio.sleep(0.2)

    async def _follow_acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if isinstance(message.payload, bytes) and message.payload:
                seq = int(json.loads(message.payload)["seq"])
                if seq > self.acked:
                    self.acked = seq
                    self._progress.set()
                    if self._on_ack is not None:
                        self._on_ack.set()

    async def _publish_all(self, client: aiomqtt.Client) -> None:
        window = asyncio.Semaphore(self._window)
        async with asyncio.TaskGroup() as group:
            while not self.done:
                # Everything past the ack, again: the inventory de-duplicates by event_id.
                for event in self.events[self.acked :]:
                    # At most `window` events ahead of the end-to-end ack: a broker drops
                    # QoS 1 messages past a client's queue limit (Mosquitto: 1000) and the
                    # outbox would have to republish them.
                    while event.seq > self.acked + self._window:
                        self._progress.clear()
                        try:
                            async with asyncio.timeout(self._stall_s):
                                await self._progress.wait()
                        except TimeoutError:
                            break
                    if event.seq > self.acked + self._window:
                        break  # the ack stalled: republish from it
                    await window.acquire()
                    group.create_task(self._publish(client, event, window), name="test-pub")
                self._progress.clear()
                while not self.done:
                    try:
                        async with asyncio.timeout(self._stall_s):
                            await self._progress.wait()
                    except TimeoutError:
                        break  # no progress: republish from the ack
                    self._progress.clear()

    async def _publish(
        self, client: aiomqtt.Client, event: MovementEvent, window: asyncio.Semaphore
    ) -> None:
        try:
            await client.publish(self.topic, event.to_json(), qos=1, timeout=10)
            self.published += 1
        finally:
            window.release()


async def run_all(publishers: list[OutboxPublisher]) -> None:
    async with asyncio.TaskGroup() as group:
        for publisher in publishers:
            group.create_task(publisher.run(), name=f"test-outbox-{publisher.controller}")


async def cancel_quietly(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
