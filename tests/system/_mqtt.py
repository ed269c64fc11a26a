"""An independent MQTT observer for system tests: records every message it sees by topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import aiomqtt


class Observer:
    """`async with Observer(port=..., topic=...) as obs: await obs.wait_for(...)`."""

    def __init__(self, *, port: int, topic: str) -> None:
        self._client = aiomqtt.Client("127.0.0.1", port=port, protocol=aiomqtt.ProtocolVersion.V5)
        self._topic = topic
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self.latest: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(self._topic, qos=1)
        self._task = asyncio.create_task(self._pump(), name="test-observer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task
        await self._client.__aexit__(None, None, None)

    async def _pump(self) -> None:
        async for message in self._client.messages:
            raw = message.payload if isinstance(message.payload, bytes) else b""
            body = json.loads(raw) if raw else {}
            topic = str(message.topic)
            async with self._changed:
                self.messages.append((topic, body, bool(message.retain)))
                self.latest[topic] = body
                self._changed.notify_all()

    def mark(self) -> int:
        """A point in the message history, for `wait_for(since=...)`."""
        return len(self.messages)

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[dict[str, Any]], bool] = bool,
        *,
        timeout: float = 30.0,
        new: bool = False,
        since: int | None = None,
    ) -> dict[str, Any]:
        """The first payload on `topic` satisfying `predicate`: in the whole history, only
        after this call (`new`), or only after a `mark()` (`since`)."""
        start = since if since is not None else len(self.messages) if new else 0
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for msg_topic, body, _retained in self.messages[start:]:
                    if msg_topic == topic and predicate(body):
                        return body
                start = len(self.messages)
                await self._changed.wait()
