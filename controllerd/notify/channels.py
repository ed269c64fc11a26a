"""Delivery channels: Apprise URLs, an MQTT pager topic, and an external command.

Each channel has one async `send(page)` that returns when the page was handed over and raises
`NotifyError` naming the channel and the cause when it was not. Retrying is the pager's job.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import apprise

from controllerd.mqtt import Publisher
from controllerd.notify._config import (
    AppriseNotifierConfig,
    ExecNotifierConfig,
    MqttNotifierConfig,
    NotifierConfig,
)


class NotifyError(Exception):
    """A page that a channel could not deliver."""

    def __init__(self, notifier: str, reason: str) -> None:
        super().__init__(f"notifier {notifier}: {reason}")
        self.notifier = notifier
        self.reason = reason


class Channel(Protocol):
    id: str
    retries: int

    async def send(self, page: dict[str, Any]) -> None: ...


def title_of(page: dict[str, Any]) -> str:
    """`[CRITICAL] freezer-1.temperature_c.high raised`."""
    return f"[{str(page.get('severity', '')).upper()}] {page.get('alarm')} {page.get('event')}"


def body_of(page: dict[str, Any]) -> str:
    lines = [
        f"{page.get('message')}",
        f"state: {page.get('state')}  value: {page.get('value')}  limit: {page.get('limit')}",
        f"device: {page.get('device')}  controller: {page.get('controller')}",
        f"since: {page.get('since')}  occurrence: {page.get('occurrence')}  "
        f"level: {page.get('level')}",
    ]
    return "\n".join(lines)


class AppriseChannel:
    """One Apprise URL."""

    def __init__(self, config: AppriseNotifierConfig) -> None:
        self.id = config.id
        self.retries = config.retries
        self._apprise = apprise.Apprise()
        if not self._apprise.add(config.resolved_url()):
            raise NotifyError(config.id, "Apprise does not understand the URL")

    async def send(self, page: dict[str, Any]) -> None:
        result = await self._apprise.async_notify(title=title_of(page), body=body_of(page))
        if not result:
            raise NotifyError(self.id, f"Apprise delivery failed ({result!r})")


class MqttChannel:
    """Pages as JSON on a topic (QoS 1, not retained)."""

    def __init__(self, config: MqttNotifierConfig, *, mqtt: Publisher, topic: str) -> None:
        self.id = config.id
        self.retries = config.retries
        self._mqtt = mqtt
        self._topic = config.topic or topic

    async def send(self, page: dict[str, Any]) -> None:
        body = json.dumps(page, separators=(",", ":")).encode()
        if not await self._mqtt.publish(self._topic, body, qos=1):
            raise NotifyError(self.id, "broker not reachable")


class ExecChannel:
    """Runs a command with the page on stdin; a non-zero exit is a failed delivery."""

    def __init__(self, config: ExecNotifierConfig) -> None:
        self.id = config.id
        self.retries = config.retries
        self._command = config.command
        self._timeout = config.timeout_s

    async def send(self, page: dict[str, Any]) -> None:
        body = json.dumps(page).encode()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise NotifyError(self.id, f"cannot run {self._command[0]}: {exc}") from exc
        try:
            async with asyncio.timeout(self._timeout):
                _, err = await proc.communicate(body)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise NotifyError(self.id, f"timed out after {self._timeout:g} s") from exc
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise NotifyError(self.id, f"exit status {proc.returncode}: {tail[0]}")


def build_channel(config: NotifierConfig, *, mqtt: Publisher | None, pages_topic: str) -> Channel:
    """The channel for a notifier config."""
    if isinstance(config, AppriseNotifierConfig):
        return AppriseChannel(config)
    if isinstance(config, ExecNotifierConfig):
        return ExecChannel(config)
    if mqtt is None:
        raise NotifyError(config.id, "an MQTT notifier needs a broker connection")
    return MqttChannel(config, mqtt=mqtt, topic=pages_topic)
