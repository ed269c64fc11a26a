"""Operator commands over MQTT 5 request/response: `BASE/cmd/{verb}`.

Every command is a JSON object with `command_id` and `operator` plus the verb's own fields. The
router validates it (pydantic, per verb), authorises the operator by role (`[[operators]]` in the
config), applies it at most once per `command_id` (a repeat is answered from the stored reply),
audits it, and replies on the request's response topic with its correlation data:

    {"command_id", "verb", "ok": true, "result": {...}, "error": null, "ts"}
    {"command_id", "verb", "ok": false, "result": null, "error": "alarm: field required", "ts"}

Who sends a command is the broker's business (its ACLs decide who may publish on `cmd/#`);
which operator may do what is ours.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiomqtt
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controllerd._time import utc_now
from controllerd.config import OperatorConfig, Permission
from controllerd.statedb import StateDb
from drivers import DriverError

_log = structlog.get_logger("controllerd.commands")


class CommandBase(BaseModel):
    """The envelope every command carries; a verb's model adds its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str = Field(min_length=1, max_length=128)
    operator: str = Field(min_length=1, max_length=64)


class CommandError(Exception):
    """A command that cannot be applied; the message goes into the error reply."""


@dataclass(frozen=True, slots=True)
class CommandContext:
    command_id: str
    operator: str
    verb: str


M = TypeVar("M", bound=CommandBase)


@dataclass(frozen=True)
class _Verb(Generic[M]):
    model: type[M]
    permission: Permission
    handler: Callable[[M, CommandContext], Awaitable[dict[str, Any]]]


#: Errors a handler may raise that mean "refused", with the message shown to the operator.
REFUSALS: tuple[type[Exception], ...] = (CommandError, DriverError)


def _format_validation(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "command"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


class CommandRouter:
    """Dispatches `BASE/cmd/+` to registered verbs."""

    def __init__(
        self,
        *,
        operators: tuple[OperatorConfig, ...],
        db: StateDb,
        reply: Callable[[aiomqtt.Message, bytes], Awaitable[bool]],
    ) -> None:
        self._operators = {op.id: op for op in operators}
        self._db = db
        self._reply = reply
        self._verbs: dict[str, _Verb[Any]] = {}
        self._in_flight: set[str] = set()
        self._done = asyncio.Condition()

    def register(
        self,
        verb: str,
        *,
        model: type[M],
        permission: Permission,
        handler: Callable[[M, CommandContext], Awaitable[dict[str, Any]]],
    ) -> None:
        self._verbs[verb] = _Verb(model=model, permission=permission, handler=handler)

    @property
    def verbs(self) -> list[str]:
        return sorted(self._verbs)

    async def handle(self, message: aiomqtt.Message) -> None:
        """One request from the broker: reply whatever happens."""
        verb = message.topic.value.rsplit("/", 1)[-1]
        reply = await self.execute(verb, bytes(message.payload or b""))
        if not await self._reply(message, reply):
            _log.info(
                "command without a response topic (or broker gone): reply not sent", verb=verb
            )

    async def execute(self, verb: str, payload: bytes) -> bytes:
        """Apply one command (raw payload) and return the reply payload."""
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._refuse(verb, None, None, f"payload is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return self._refuse(verb, None, None, "payload must be a JSON object")
        command_id = body.get("command_id")
        if not isinstance(command_id, str) or not command_id:
            return self._refuse(verb, None, None, "command_id: required non-empty string")
        async with self._done:
            await self._done.wait_for(lambda: command_id not in self._in_flight)
            self._in_flight.add(command_id)
        try:
            stored = await self._db.run(lambda: self._db.command_reply(command_id))
            if stored is not None:
                previous = json.loads(stored)
                previous["duplicate"] = True
                _log.info(
                    "repeated command answered from its first reply",
                    command_id=command_id,
                    verb=verb,
                )
                return json.dumps(previous, separators=(",", ":")).encode()
            reply, operator, detail = await self._apply(verb, body, command_id)
            await self._db.run(
                lambda: self._db.record_command(
                    command_id=command_id,
                    verb=verb,
                    operator=operator,
                    reply=reply,
                    detail=detail,
                )
            )
            return reply
        finally:
            async with self._done:
                self._in_flight.discard(command_id)
                self._done.notify_all()

    async def _apply(
        self, verb: str, body: dict[str, Any], command_id: str
    ) -> tuple[bytes, str, dict[str, Any]]:
        operator = str(body.get("operator") or "?")
        detail: dict[str, Any] = {"command": body}
        spec = self._verbs.get(verb)
        if spec is None:
            error = f"unknown command '{verb}' (commands: {', '.join(self.verbs)})"
            detail["error"] = error
            return self._refuse(verb, command_id, operator, error), operator, detail
        try:
            command = spec.model.model_validate(body)
        except ValidationError as exc:
            error = _format_validation(exc)
            detail["error"] = error
            return self._refuse(verb, command_id, operator, error), operator, detail
        known = self._operators.get(command.operator)
        if known is None:
            error = f"operator: unknown operator '{command.operator}'"
            detail["error"] = error
            return self._refuse(verb, command_id, operator, error), operator, detail
        if spec.permission not in known.roles:
            error = f"operator: '{command.operator}' may not {spec.permission}"
            detail["error"] = error
            return self._refuse(verb, command_id, operator, error), operator, detail
        ctx = CommandContext(command_id=command_id, operator=command.operator, verb=verb)
        try:
            result = await spec.handler(command, ctx)
        except REFUSALS as exc:
            detail["error"] = str(exc)
            return self._refuse(verb, command_id, operator, str(exc)), operator, detail
        _log.info("command applied", verb=verb, command_id=command_id, operator=operator)
        detail["result"] = result
        return self._body(verb, command_id, ok=True, result=result), operator, detail

    def _refuse(self, verb: str, command_id: str | None, operator: str | None, error: str) -> bytes:
        _log.warning(
            "command refused", verb=verb, command_id=command_id, operator=operator, error=error
        )
        return self._body(verb, command_id, ok=False, error=error)

    @staticmethod
    def _body(
        verb: str,
        command_id: str | None,
        *,
        ok: bool,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bytes:
        return json.dumps(
            {
                "command_id": command_id,
                "verb": verb,
                "ok": ok,
                "result": result,
                "error": error,
                "ts": utc_now(),
            },
            separators=(",", ":"),
            default=str,
        ).encode()
