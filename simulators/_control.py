"""The running simulator's control endpoint: JSON lines on a Unix socket, and its client.

Requests, one JSON object per line:
  `{"op": "inject", "device": ID, "fault": NAME, "clear": false}` → `{"ok": true}`
  `{"op": "status"}` → `{"ok": true, "status": {...}}` (see `SimulatedRoom.status`)
A request that is not valid JSON, fails validation or cannot be carried out gets
`{"ok": false, "error": "..."}` and changes nothing. Not covered: authentication (the socket's
file permissions are the access control) and subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal, Protocol, Self

import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from simulators._errors import ControlError, SimulatorError

_log = structlog.get_logger("simulators.control")
_LINE_LIMIT = 64 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InjectRequest(_Strict):
    """Inject or clear one fault in one device."""

    op: Literal["inject"]
    device: str = Field(min_length=1)
    fault: str = Field(min_length=1)
    clear: bool = False


class StatusRequest(_Strict):
    """Report every device's state."""

    op: Literal["status"]


ControlRequest = Annotated[InjectRequest | StatusRequest, Field(discriminator="op")]
_REQUEST: TypeAdapter[InjectRequest | StatusRequest] = TypeAdapter(ControlRequest)


class Controllable(Protocol):
    """What the endpoint controls (a SimulatedRoom)."""

    async def inject(self, device: str, fault: str, *, clear: bool = False) -> None: ...

    def status(self) -> dict[str, Any]: ...


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'request'}: {err['msg']}"
        for err in exc.errors()
    )


class ControlServer:
    """Serves the control endpoint at `path` for `target`; owns one task per connection."""

    def __init__(self, *, path: Path, target: Controllable) -> None:
        self.path = path
        self._target = target
        self._server: asyncio.Server | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._count = 0

    async def __aenter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _socket_alive(self.path):
                raise SimulatorError(f"{self.path}: another simulator is already running")
            self.path.unlink()  # stale: left by a simulator that did not exit cleanly
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        try:
            self._server = await asyncio.start_unix_server(
                self._accept, path=str(self.path), limit=_LINE_LIMIT
            )
        except BaseException:
            await self._tasks.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, tasks = self._server, self._tasks
        self._server = self._tasks = None
        if server is not None:
            server.close()
        if tasks is not None:
            for task in self._connections:
                task.cancel()
            await tasks.__aexit__(None, None, None)
        if server is not None:
            await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, not a coroutine, so the connection's task is ours, not asyncio's.
        if self._tasks is None:
            writer.close()
            return
        self._count += 1
        task = self._tasks.create_task(
            self._serve(reader, writer), name=f"control-connection-{self._count}"
        )
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    await _send(writer, {"ok": False, "error": "request line too long"})
                    return
                if not line:
                    return
                await _send(writer, await self.handle(line))
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def handle(self, line: bytes) -> dict[str, Any]:
        """The reply to one request line."""
        try:
            request = _REQUEST.validate_json(line)
        except ValidationError as exc:
            return {"ok": False, "error": _validation_message(exc)}
        if isinstance(request, StatusRequest):
            return {"ok": True, "status": self._target.status()}
        try:
            await self._target.inject(request.device, request.fault, clear=request.clear)
        except SimulatorError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True}


async def _send(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
    writer.write(json.dumps(reply).encode() + b"\n")
    await writer.drain()


def _socket_alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def request(
    socket_path: Path, payload: dict[str, Any], *, timeout_s: float = 5.0
) -> dict[str, Any]:
    """Send one request to a running simulator and return its reply (ControlError on failure
    to reach it or a reply that is not JSON; the reply's own `ok` is left to the caller)."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=_LINE_LIMIT)
            try:
                writer.write(json.dumps(payload).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError as exc:
        raise ControlError(f"{socket_path}: no reply within {timeout_s} s") from exc
    except OSError as exc:
        raise ControlError(
            f"{socket_path}: cannot reach the simulator: {exc.strerror or exc}"
        ) from exc
    try:
        reply = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"{socket_path}: reply is not JSON: {line[:80]!r}") from exc
    if not isinstance(reply, dict):
        raise ControlError(f"{socket_path}: reply is not a JSON object")
    return reply


async def inject(device: str, fault: str, *, clear: bool = False, socket_path: Path) -> None:
    """Inject (or clear) a fault in a running simulator; ControlError with its reason if not."""
    reply = await request(
        socket_path, {"op": "inject", "device": device, "fault": fault, "clear": clear}
    )
    if reply.get("ok") is not True:
        raise ControlError(str(reply.get("error", "refused")))


async def status(*, socket_path: Path) -> dict[str, Any]:
    """The running simulator's status (ControlError when it cannot be had)."""
    reply = await request(socket_path, {"op": "status"})
    if reply.get("ok") is not True or not isinstance(reply.get("status"), dict):
        raise ControlError(str(reply.get("error", "refused")))
    result: dict[str, Any] = reply["status"]
    return result
