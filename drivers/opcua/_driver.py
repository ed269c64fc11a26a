"""The tube store driver: a `drivers.Driver` for the poller plus the store's robot methods.

The driver owns one background task (in its own TaskGroup) that keeps a session open: connect,
browse, subscribe, follow data changes, and after a loss reconnect with capped jittered backoff,
re-creating the subscription. `read()` returns the latest subscribed values without a round
trip. Robot methods start an operation on the store and wait for the store to report it done
(docs/store-opcua.md, "Operations").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import structlog
from asyncua import ua

from drivers._backoff import Backoff
from drivers._cancel import cancel_and_wait
from drivers._errors import (
    ConnectFailed,
    DeviceRejected,
    DeviceTimeout,
    DriverError,
    InvalidRequest,
    NotConnected,
)
from drivers._interface import Reading
from drivers.opcua._errors import SecurityRefused, status_name, translate
from drivers.opcua._session import StoreSession, open_session
from drivers.opcua_model import Inventory, OpcUaConfig, OperationResult, names

_log = structlog.get_logger("drivers.opcua")

#: Called with the driver after every (re)connect, before the driver reports itself up.
ConnectListener = Callable[["OpcUaStoreDriver"], Awaitable[None]]


class OpcUaStoreDriver:
    """A tube store over OPC UA. Use as `async with OpcUaStoreDriver(...) as driver:`."""

    def __init__(self, *, device_id: str, config: OpcUaConfig) -> None:
        self._device_id = device_id
        self._config = config
        self._log = _log.bind(device=device_id, url=config.url)
        self._backoff = Backoff(initial_s=config.reconnect_initial_s, max_s=config.reconnect_max_s)
        self._session: StoreSession | None = None
        #: the new session while connect listeners run, before it is up
        self._connecting: StoreSession | None = None
        self._changed = asyncio.Condition()
        self._next_attempt = 0.0
        self._error: str | None = None
        #: the last attempt's failure (None once a session is up)
        self._failure: DriverError | None = None
        self._listeners: list[ConnectListener] = []
        self._operation_lock = asyncio.Lock()
        self._tasks: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        #: sessions opened so far (a reconnect makes it grow)
        self.sessions = 0

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def connected(self) -> bool:
        return self._session is not None

    def add_connect_listener(self, listener: ConnectListener) -> None:
        """Run `listener(driver)` after every (re)connect, before the session counts as up:
        it may call `inventory()` (to reload the specimen map); a DriverError it raises ends
        the session (the driver retries)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._runner = self._tasks.create_task(self._run(), name=f"opcua-{self._device_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            await tasks.__aexit__(None, None, None)

    async def connect(self) -> None:
        """Wait up to `timeout_s` for the session; ConnectFailed naming the last error if not
        (caused by that error), at once when the server refused who we are (SecurityRefused:
        retrying with the same certificate or password will not help)."""
        if self._runner is None:
            raise ConnectFailed(
                "the driver is not running (use it as an async context manager)",
                device=self._device_id,
                operation="connect",
            )

        def settled() -> bool:
            return self._session is not None or isinstance(self._failure, SecurityRefused)

        try:
            async with asyncio.timeout(self._config.timeout_s), self._changed:
                await self._changed.wait_for(settled)
        except TimeoutError as exc:
            raise ConnectFailed(
                self._error or "no session yet", device=self._device_id, operation="connect"
            ) from (self._failure or exc)
        if self._session is None and self._failure is not None:
            raise SecurityRefused(
                self._failure.message, device=self._device_id, operation="connect"
            ) from self._failure

    async def close(self) -> None:
        """Stop the session task and disconnect (safe to call twice)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await cancel_and_wait(runner)

    async def _run(self) -> None:
        while True:
            try:
                async with open_session(config=self._config, device=self._device_id) as session:
                    for listener in self._listeners:
                        await self._notify(listener, session)
                    await self._up(session)
                    while True:
                        if await session.next_change() is not None:
                            async with self._changed:
                                self._changed.notify_all()
            except (DriverError, ConnectionError, OSError, ua.UaError, TimeoutError) as exc:
                error = translate(exc, device=self._device_id, operation="session")
                await self._down(error)
            delay = self._backoff.next_delay()
            self._next_attempt = time.monotonic() + delay
            await asyncio.sleep(delay)

    async def _notify(self, listener: ConnectListener, session: StoreSession) -> None:
        # Listeners read the inventory before the driver reports the session up (the map is
        # loaded before anyone is told the store is there: `connected`, `read()` and the
        # methods wait); their own failures cost them, not the link.
        self._connecting = session
        try:
            await listener(self)
        except DriverError:
            raise
        except Exception:
            self._log.exception("connect listener failed")
        finally:
            self._connecting = None

    async def _up(self, session: StoreSession) -> None:
        self.sessions += 1
        if self._backoff.failures:
            self._log.info("store session up", after_failures=self._backoff.failures)
        else:
            self._log.info("store session up")
        self._backoff.reset()
        self._error = None
        self._failure = None
        async with self._changed:
            self._session = session
            self._changed.notify_all()

    async def _down(self, error: DriverError) -> None:
        was_up = self._session is not None
        async with self._changed:
            self._session = None
            self._failure = error
            self._changed.notify_all()
        message = error.message
        if was_up or self._backoff.failures == 0:
            self._log.warning("store session down", error=message)
        else:
            self._log.debug("store session still down", error=message)
        self._error = message

    def _require(self, operation: str) -> StoreSession:
        session = self._session
        if session is None and operation == "inventory":
            session = self._connecting
        if session is None:
            wait = max(self._next_attempt - time.monotonic(), 0.0)
            raise NotConnected(
                f"no session ({self._error or 'connecting'}), next attempt in {wait:.1f} s",
                retry_in_s=wait,
                device=self._device_id,
                operation=operation,
            )
        return session

    # ------------------------------------------------------------------ Driver protocol

    async def read(self) -> Reading:
        """The latest subscribed values (no round trip); NotConnected while the session is down.
        The store's fault text, while it has one, is the text of `state_code`."""
        session = self._require("read")
        values: dict[str, float] = {}
        for name, path in names.TELEMETRY_PATHS.items():
            raw = session.values.get(path)
            if raw is not None:
                values[name] = float(raw)
        fault = session.values.get(names.FAULT_TEXT)
        return Reading(values=values, texts={"state_code": str(fault)} if fault else {})

    async def write(self, name: str, value: float) -> None:
        raise InvalidRequest(
            f"a tube store has no writable value '{name}'; use its methods",
            device=self._device_id,
            operation="write",
        )

    # ------------------------------------------------------------------ the store's methods

    async def _call(self, method: str, *args: Any) -> list[Any]:
        session = self._require(method)
        operation = " ".join([method, *map(str, args)])
        try:
            async with asyncio.timeout(self._config.timeout_s):
                return await session.call(method, *args)
        except ua.UaStatusCodeError as exc:
            code = int(exc.code)
            try:
                async with asyncio.timeout(self._config.timeout_s):
                    reason = await session.last_rejection()
            except (ua.UaError, OSError, TimeoutError):
                reason = ""
            name = status_name(code)
            raise DeviceRejected(
                f"{name}: {reason}" if reason else name,
                code=code,
                device=self._device_id,
                operation=operation,
            ) from exc
        except (ua.UaError, OSError, TimeoutError) as exc:
            raise translate(exc, device=self._device_id, operation=operation) from exc

    async def _run_operation(self, method: str, *args: str) -> OperationResult:
        """Start a robot operation and wait (across reconnects) until the store reports it done."""
        operation = " ".join([method, *args])
        async with self._operation_lock:
            outputs = await self._call(method, *args)
            if not outputs:
                raise DeviceRejected(
                    f"{method} returned no operation id",
                    code=0,
                    device=self._device_id,
                    operation=operation,
                )
            op_id = int(outputs[0])
            self._log.info("operation started", operation=operation, operation_id=op_id)
            try:
                async with asyncio.timeout(self._config.operation_timeout_s):
                    result = await self._wait_done(op_id, operation)
            except TimeoutError as exc:
                raise DeviceTimeout(
                    f"operation {op_id} not done within {self._config.operation_timeout_s} s",
                    device=self._device_id,
                    operation=operation,
                ) from exc
        if not result.ok:
            self._log.warning(
                "operation failed", operation=operation, status=result.status, reason=result.message
            )
            raise DeviceRejected(
                f"{result.status}: {result.message}" if result.message else result.status,
                code=result.status_code,
                device=self._device_id,
                operation=operation,
            )
        self._log.info("operation done", operation=operation, duration_s=result.duration_s)
        return result

    async def _wait_done(self, op_id: int, operation: str) -> OperationResult:
        while True:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: (
                        self._session is not None
                        and int(self._session.values.get(names.OP_COMPLETED_ID, 0)) >= op_id
                    )
                )
                session = self._session
            assert session is not None
            try:
                async with asyncio.timeout(self._config.timeout_s):
                    result = await session.read_operation()
            except (ua.UaError, OSError, TimeoutError) as exc:
                self._log.debug("reading the operation's result failed", error=repr(exc))
                await asyncio.sleep(0.1)
                continue
            if result.operation_id == op_id:
                return result
            if result.operation_id > op_id:
                raise DeviceRejected(
                    f"operation {op_id}'s result was overwritten by operation "
                    f"{result.operation_id} before it could be read",
                    code=0,
                    device=self._device_id,
                    operation=operation,
                )

    async def retrieve_rack(self, rack: str, port: str) -> float:
        """Bring `rack` to pick-station `port`; the seconds it took on the store's clock."""
        return (await self._run_operation(names.RETRIEVE_RACK, rack, port)).duration_s

    async def store_rack(self, rack: str) -> float:
        """Put `rack` back from its port into its slot; the seconds it took."""
        return (await self._run_operation(names.STORE_RACK, rack)).duration_s

    async def scan_rack(self, rack: str) -> float:
        """Re-read the rack's tube barcodes; the seconds it took. Reload `inventory()` after."""
        return (await self._run_operation(names.SCAN_RACK, rack)).duration_s

    async def reset(self) -> None:
        """Leave the Faulted state (DeviceRejected while the cause persists)."""
        await self._call(names.RESET)

    async def inventory(self) -> Inventory:
        """Every rack with its slot, location and last-scanned tubes, and every port."""
        session = self._require("inventory")
        try:
            async with asyncio.timeout(self._config.timeout_s * 3):
                return await session.inventory()
        except (ua.UaError, OSError, TimeoutError) as exc:
            raise translate(exc, device=self._device_id, operation="inventory") from exc

    def state(self) -> tuple[str, str]:
        """(state name, fault text) as last reported; ("", "") while disconnected."""
        session = self._session
        if session is None:
            return "", ""
        state = session.values.get(names.STATE)
        return (
            str(getattr(state, "Text", state) or ""),
            str(session.values.get(names.FAULT_TEXT, "")),
        )
