"""The room's alarm desk: engine, call tree, operator commands and the retained-topic sweep.

`AlarmService` wires the parts together for the supervisor: the engine's events go to the
pager, a notifier that cannot deliver raises its own alarm through the engine, `ack`, `shelve`
and `unshelve` are registered with the command router, and retained alarm topics that no alarm
owns any more (a device or rule removed from the config) are deleted from the broker.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import aiomqtt
import structlog
from pydantic import Field

from controllerd.alarms._state import AlarmCommandError
from controllerd.alarms.engine import MAX_SHELVE_S, AlarmEngine
from controllerd.commands import CommandBase, CommandContext, CommandError, CommandRouter
from controllerd.config import Config
from controllerd.mqtt import MqttConnection
from controllerd.notify.channels import Channel, NotifyError, build_channel
from controllerd.notify.pager import Pager
from controllerd.statedb import StateDb
from controllerd.topics import Topics

_log = structlog.get_logger("controllerd.alarms")


#: Extra time every device gets at start-up before its silence is a communication loss.
STARTUP_GRACE_S = 10.0


class AckCommand(CommandBase):
    """`BASE/cmd/ack`: acknowledge an alarm."""

    alarm: str = Field(min_length=1, max_length=200)


class ShelveCommand(CommandBase):
    """`BASE/cmd/shelve`: hide an alarm for a limited time, with a reason."""

    alarm: str = Field(min_length=1, max_length=200)
    duration_s: float = Field(gt=0, le=MAX_SHELVE_S)
    reason: str = Field(min_length=1, max_length=500)


class UnshelveCommand(CommandBase):
    """`BASE/cmd/unshelve`: end a shelve early."""

    alarm: str = Field(min_length=1, max_length=200)


class AlarmService:
    """Owns the engine and the pager while entered; build before the MQTT session is entered."""

    def __init__(
        self,
        *,
        config: Config,
        mqtt: MqttConnection,
        topics: Topics,
        db: StateDb,
        commands: CommandRouter,
        retry_initial_s: float = 1.0,
    ) -> None:
        self._config = config
        self._mqtt = mqtt
        self._topics = topics
        self._controller = config.controller.id
        channels: dict[str, Channel] = {}
        self._broken: list[tuple[str, str]] = []
        for notifier in config.notifiers:
            try:
                channels[notifier.id] = build_channel(notifier, mqtt=mqtt, pages_topic=topics.pages)
            except (NotifyError, OSError) as exc:
                self._broken.append((notifier.id, str(exc)))
        self.engine = AlarmEngine(
            config=config,
            mqtt=mqtt,
            topics=topics,
            db=db,
            notify=self._to_pager,
            startup_grace_s=STARTUP_GRACE_S,
        )
        self.pager = Pager(
            channels=channels,
            escalation=config.escalation,
            db=db,
            context={"site": config.controller.site, "controller": config.controller.id},
            on_channel_health=self._channel_health,
            retry_initial_s=retry_initial_s,
        )
        commands.register("ack", model=AckCommand, permission="ack", handler=self._ack)
        commands.register("shelve", model=ShelveCommand, permission="shelve", handler=self._shelve)
        commands.register(
            "unshelve", model=UnshelveCommand, permission="shelve", handler=self._unshelve
        )
        mqtt.subscribe(topics.alarms, self._sweep)

    async def __aenter__(self) -> Self:
        await self.pager.__aenter__()
        try:
            await self.engine.__aenter__()
        except BaseException:
            await self.pager.__aexit__(None, None, None)
            raise
        for notifier, reason in self._broken:
            self._channel_health(notifier, False, reason)
        await self.pager.resume(self.engine.open_occurrences())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.engine.__aexit__(exc_type, exc, tb)
        finally:
            await self.pager.__aexit__(exc_type, exc, tb)

    def _to_pager(self, notice: Any) -> None:
        self.pager.submit(notice)

    def _channel_health(self, notifier: str, ok: bool, reason: str) -> None:
        self.engine.external(
            f"{self._controller}.notifier-{notifier}",
            device=self._controller,
            active=not ok,
            severity="high",
            text=f"notifier {notifier} cannot deliver pages: {reason}"
            if not ok
            else f"notifier {notifier} delivers again",
        )

    async def _sweep(self, message: aiomqtt.Message) -> None:
        if not message.payload:
            return  # our own deletion coming back
        alarm = message.topic.value.rsplit("/", 1)[-1]
        if not self.engine.known(alarm):
            _log.info("removing retained topic of an alarm that no longer exists", alarm=alarm)
            await self._mqtt.clear_retained(message.topic.value)

    async def _ack(self, cmd: AckCommand, ctx: CommandContext) -> dict[str, Any]:
        try:
            return await self.engine.ack(cmd.alarm, operator=ctx.operator)
        except AlarmCommandError as exc:
            raise CommandError(f"alarm: {exc}") from exc

    async def _shelve(self, cmd: ShelveCommand, ctx: CommandContext) -> dict[str, Any]:
        try:
            return await self.engine.shelve(
                cmd.alarm, operator=ctx.operator, duration_s=cmd.duration_s, reason=cmd.reason
            )
        except AlarmCommandError as exc:
            raise CommandError(f"alarm: {exc}") from exc

    async def _unshelve(self, cmd: UnshelveCommand, ctx: CommandContext) -> dict[str, Any]:
        try:
            return await self.engine.unshelve(cmd.alarm, operator=ctx.operator)
        except AlarmCommandError as exc:
            raise CommandError(f"alarm: {exc}") from exc
