"""One Modbus link — a TCP connection or a serial line — shared by every unit id on it.

The link owns what the protocol needs around pymodbus: one lock so a shared RS-485 line carries
one exchange at a time, the silent gap between frames, a timeout around every call, reconnects
with capped jittered backoff, and translation of pymodbus errors into the drivers' tree.

A device read (`read`) is the poll path's hot spot: all its blocks go out under one lock
acquisition, as request PDUs built once (`prepare_reads`). pymodbus frames each request, matches
the answer to it (unit and transaction id) and decodes it; the link times and retries every
attempt itself (`_transact`) with one lazily re-armed timer per link (`LazyDeadline`), where
pymodbus's own `execute` would schedule a `wait_for` (two futures, a timer and a callback) for
every attempt: about a fifth of a read's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import termios
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from pymodbus import ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest
from pymodbus.transaction import TransactionManager
from serial import SerialException

from drivers._backoff import Backoff
from drivers._errors import (
    ConnectFailed,
    DeviceRejected,
    DeviceTimeout,
    DriverError,
    NotConnected,
    ProtocolError,
)
from drivers.modbus import ModbusRtuConfig, ModbusTcpConfig, ReadBlock, RegisterTable
from drivers.modbus_client._deadline import LazyDeadline
from drivers.modbus_client._lock import LineLock

#: What opening or using a link raises besides pymodbus's own errors: sockets and serial ports
#: (termios.error is not an OSError; pyserial raises it when a port refuses its settings).
_LINK_ERRORS = (OSError, SerialException, termios.error)

# pymodbus logs every failed request at ERROR; the link reports failures itself, once per change.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

#: What a pymodbus call may raise that `_translate` turns into the drivers' errors.
_CAUGHT = (ConnectionException, TimeoutError, ModbusException, *_LINK_ERRORS)

_log = structlog.get_logger("drivers.modbus")

T = TypeVar("T")

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


@dataclass(frozen=True, slots=True)
class PreparedReads:
    """One unit's read blocks with their pymodbus request PDUs, built once (`prepare_reads`).

    The PDUs are reused by every read: the link's lock lets one exchange at a time use them,
    and the link stamps each with its transaction id when it sends it.
    """

    #: per block, in order: (request, register count, operation)
    steps: tuple[tuple[ModbusPDU, int, str], ...]


def _first_block(words: list[Sequence[int]]) -> list[int]:
    return list(words[0])


class ModbusLink:
    """A TCP connection or serial line; devices on it share it through `request`."""

    def __init__(self, *, config: ModbusTcpConfig | ModbusRtuConfig) -> None:
        self.key = config.link_key
        self._config = config
        self._lock = LineLock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._backoff = Backoff(initial_s=config.reconnect_initial_s, max_s=config.reconnect_max_s)
        self._next_attempt = 0.0
        self._last_frame_end = 0.0
        self._gap_s = config.gap_s if isinstance(config, ModbusRtuConfig) else 0.0
        self._deadline = LazyDeadline()
        #: attempts per request: the first and `retries` more
        self._attempts = config.retries + 1

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        cfg = self._config
        # reconnect_delay=0 turns pymodbus's own reconnect loop off: this link decides when.
        common: dict[str, Any] = {
            "timeout": cfg.timeout_s,
            "retries": cfg.retries,
            "reconnect_delay": 0,
            "name": self.key,
        }
        if isinstance(cfg, ModbusTcpConfig):
            return AsyncModbusTcpClient(cfg.host, port=cfg.port, **common)
        return AsyncModbusSerialClient(
            cfg.port,
            framer=FramerType.RTU,
            baudrate=cfg.baudrate,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            bytesize=cfg.bytesize,
            **common,
        )

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def connect(self, *, device: str) -> None:
        """Open the link unless it is open; respects the backoff between attempts."""
        async with self._lock:
            await self._ensure_open(device)

    async def _ensure_open(self, device: str) -> None:
        if self.connected:
            return
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            raise NotConnected(
                f"{self.key} is down, next attempt in {wait:.1f} s",
                retry_in_s=wait,
                device=device,
                operation="connect",
            )
        self._drop_client()
        client = self._new_client()
        try:
            async with asyncio.timeout(self._config.timeout_s + 1.0):
                ok = await client.connect()
        except (*_LINK_ERRORS, TimeoutError, ModbusException) as exc:
            ok = False
            reason = str(exc) or type(exc).__name__
        else:
            reason = "refused or unreachable"
        if not ok or not client.connected:
            client.close()
            delay = self._backoff.next_delay()
            self._next_attempt = time.monotonic() + delay
            if self._backoff.failures == 1:
                _log.warning("link down", link=self.key, reason=reason, retry_in_s=round(delay, 2))
            else:
                _log.debug(
                    "link still down", link=self.key, reason=reason, retry_in_s=round(delay, 2)
                )
            raise ConnectFailed(
                f"cannot open {self.key}: {reason}", device=device, operation="connect"
            )
        if self._backoff.failures:
            _log.info("link up", link=self.key, after_failures=self._backoff.failures)
        self._backoff.reset()
        self._client = client

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _mark_broken(self) -> None:
        """Close after a transport failure; the next request reconnects after the backoff."""
        self._drop_client()
        self._next_attempt = time.monotonic() + self._backoff.next_delay()

    async def request(
        self, call: Callable[[Any], Awaitable[Any]], *, device: str, operation: str
    ) -> Any:
        """Run one pymodbus call under the line lock, the gap and the timeout; translate errors."""
        cfg = self._config
        async with self._lock:
            if not self.connected:
                await self._ensure_open(device)
            client = self._client
            assert client is not None
            try:
                # pymodbus times each attempt; this outer bound catches anything that hangs.
                async with asyncio.timeout(cfg.timeout_s * (cfg.retries + 1) + 1.0):
                    response = await self._exchange(call, client)
            except _CAUGHT as exc:
                raise self._translate(exc, device=device, operation=operation) from exc
        self._check(response, device=device, operation=operation)
        return response

    async def _exchange(self, call: Callable[[Any], Awaitable[Any]], client: Any) -> Any:
        """One frame out and its answer, after the line's silent gap (lock held)."""
        if self._gap_s:
            return await self._gapped(call, client)
        return await call(client)

    async def _gapped(self, send: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`send(*args)`, one frame out and its answer, after the line's silent gap and
        marking the end of the line's last frame (lock held)."""
        await self._quiet()
        try:
            return await send(*args)
        finally:
            self._last_frame_end = time.monotonic()

    async def _quiet(self) -> None:
        """Wait out the silent gap since the last frame on the line."""
        quiet = self._last_frame_end + self._gap_s - time.monotonic()
        if quiet > 0:
            await asyncio.sleep(quiet)

    def _translate(self, exc: BaseException, *, device: str, operation: str) -> DriverError:
        """The drivers' error for what a pymodbus call raised; drops a broken connection."""
        timeout_s = self._config.timeout_s
        if isinstance(exc, ConnectionException):
            self._mark_broken()
            return DeviceTimeout(f"connection lost: {exc}", device=device, operation=operation)
        if isinstance(exc, TimeoutError):
            self._timed_out()
            return DeviceTimeout(
                f"no answer within {timeout_s} s", device=device, operation=operation
            )
        if isinstance(exc, ModbusException):
            # pymodbus raises ModbusIOException when retries ran out without an answer.
            self._timed_out()
            if "No response" in str(exc) or "no response" in str(exc):
                return DeviceTimeout(
                    f"no answer within {timeout_s} s", device=device, operation=operation
                )
            return ProtocolError(str(exc), device=device, operation=operation)
        self._mark_broken()
        return DeviceTimeout(f"link error: {exc}", device=device, operation=operation)

    @staticmethod
    def _check(response: Any, *, device: str, operation: str) -> None:
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            name = _EXCEPTION_NAMES.get(code, "unknown exception")
            raise DeviceRejected(
                f"Modbus exception {code} ({name})", code=code, device=device, operation=operation
            )

    def _timed_out(self) -> None:
        # A silent TCP peer is usually a dead connection; reopen it. A serial line stays open:
        # one silent unit says nothing about the others on the line.
        if isinstance(self._config, ModbusTcpConfig):
            self._mark_broken()

    async def read_registers(
        self, *, table: RegisterTable, start: int, count: int, unit_id: int, device: str
    ) -> list[int]:
        """Read `count` registers of `table` from `start` on `unit_id`."""
        reads = self.prepare_reads([ReadBlock(table, start, count, ())], unit_id=unit_id)
        return await self.read(reads, device=device, decode=_first_block)

    def prepare_reads(self, blocks: Sequence[ReadBlock], *, unit_id: int) -> PreparedReads:
        """The requests that read `blocks` from `unit_id`, for `read`."""
        steps = tuple(
            (
                (
                    ReadHoldingRegistersRequest
                    if block.table == "holding"
                    else ReadInputRegistersRequest
                )(address=block.start, count=block.count, dev_id=unit_id),
                block.count,
                block.operation,
            )
            for block in blocks
        )
        return PreparedReads(steps=steps)

    async def read(
        self, reads: PreparedReads, *, device: str, decode: Callable[[list[Sequence[int]]], T]
    ) -> T:
        """Read each block's registers, in one turn on the line; `decode` of the blocks' words.

        One device read takes the lock once; every attempt of every block is bounded by the
        link's timeout (`_transact`), and the gap precedes every frame. `decode` runs once the
        line is free again (a driver's decoding and its errors, in the read's own frame: one
        coroutine less per poll).
        """
        words: list[Sequence[int]] = []
        operation = "read"
        lock = self._lock
        # `async with` would add two coroutines per read: acquire and release spelled out,
        # and a free lock (most reads) taken with a plain call.
        if not lock.try_acquire():
            await lock.acquire()
        try:
            client = self._client
            if client is None or not client.ctx.transport:  # `connected`, one call less
                await self._ensure_open(device)
                client = self._client
                assert client is not None
            transaction = client.ctx
            try:
                for request, count, operation in reads.steps:
                    response = await self._transact(transaction, request)
                    if response.function_code > 0x80:  # `isError()`, one call less
                        self._check(response, device=device, operation=operation)
                    registers: Sequence[int] = response.registers
                    if len(registers) != count:
                        raise ProtocolError(
                            f"asked for {count} registers, got {len(registers)}",
                            device=device,
                            operation=operation,
                        )
                    words.append(registers)
            except _CAUGHT as exc:
                raise self._translate(exc, device=device, operation=operation) from exc
        finally:
            lock.release()
        return decode(words)

    async def _transact(self, transaction: TransactionManager, request: ModbusPDU) -> ModbusPDU:
        """`request` sent and its response awaited, each attempt within the link's timeout
        (lock held): what pymodbus's `TransactionManager.execute` does, without its lock (the
        link's stands in) and with the link's lazy bound in place of a `wait_for` per attempt.

        Like `execute`, a request that gets no answer in time is sent again, with the same
        transaction id, up to `retries` more times: a late answer to an earlier attempt then
        answers the retry (it is the same request's). An answer that comes after its read is
        over is dropped by pymodbus (no waiter, or not the transaction id it expects). Raises
        `TimeoutError` when no attempt got an answer, `ConnectionException` when the
        connection is gone.
        """
        request.transaction_id = transaction.getNextTID()
        deadline = self._deadline
        timeout_s = self._config.timeout_s
        gap_s = self._gap_s
        for _attempt in range(self._attempts):
            if not transaction.transport:  # what pymodbus checks first
                raise ConnectionException(f"Not connected[{self.key}]")
            if gap_s:
                await self._quiet()
            transaction.recv_buffer = b""
            future = transaction.response_future = asyncio.get_running_loop().create_future()
            transaction.pdu_send(request)
            deadline.arm(timeout_s)
            try:
                response: ModbusPDU = await future
            except asyncio.CancelledError as exc:
                if deadline.disarm(exc):
                    continue  # this attempt's time is up: the next one
                raise
            finally:
                if gap_s:
                    self._last_frame_end = time.monotonic()
            deadline.disarm(None)
            return response
        raise TimeoutError

    async def write_registers(
        self, *, start: int, words: list[int], unit_id: int, device: str
    ) -> None:
        """Write holding registers (function 6 for one word, 16 for several)."""

        async def call(client: Any) -> Any:
            if len(words) == 1:
                return await client.write_register(start, words[0], device_id=unit_id)
            return await client.write_registers(start, words, device_id=unit_id)

        await self.request(call, device=device, operation=f"write holding {start}")

    async def close(self) -> None:
        async with self._lock:
            self._drop_client()
            self._deadline.close()


class ModbusLinks:
    """The links of one daemon, one per TCP endpoint or serial port, shared by their units."""

    def __init__(self) -> None:
        self._links: dict[str, ModbusLink] = {}

    def link_for(self, config: ModbusTcpConfig | ModbusRtuConfig) -> ModbusLink:
        link = self._links.get(config.link_key)
        if link is None:
            link = self._links[config.link_key] = ModbusLink(config=config)
        return link

    async def __aenter__(self) -> ModbusLinks:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for link in self._links.values():
            with contextlib.suppress(DriverError):
                await link.close()
