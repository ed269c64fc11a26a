"""The async link to a picker's motion controller: one serial port, one firmware session.

`FirmwareLink` is an async context manager. Entering it opens the port (pyserial-asyncio-fast),
starts the heartbeat supervision task in the link's own task group and runs `hello`, which
refuses a firmware that speaks no protocol version this host speaks. Leaving it cancels the
task, stops a motion still running and closes the port.

What the link owns (docs/firmware-protocol.md, "Host behaviour"):

* sequence numbers: from a random start, 1 … 65535 then 1 again (0 is the firmware's
  event sequence number); a new link is a new session, started by `hello`;
* one command in flight: `request` holds a lock for the whole exchange (for a motion: until
  `done`); `stop` alone bypasses it, so an emergency stop never waits behind a move;
* timeouts and retransmission: no reply within `timeout_s` → the same frame again, with the
  same sequence number (the firmware answers a repeat from its reply cache, never executing a
  request twice), at most `retries` times in a row; while an accepted motion runs the host
  re-asks every `timeout_s`, which also recovers a lost `done`;
* resynchronisation: frames are found by their 0x00 delimiter, so garbage costs only the frames
  it touches; replies are matched by sequence number, so a late reply to an abandoned request
  is dropped instead of answering the next one; a motion whose caller is cancelled is stopped;
* heartbeat supervision: no valid frame within `heartbeat_timeout_s` is a communication loss;
  the in-flight request fails with CommunicationLost and the link is done (reopen a new one).
  Every valid frame moves the deadline to its arrival + `heartbeat_timeout_s`, and the
  supervisor sleeps until exactly that deadline (on an injectable `LinkClock`), so the loss is
  declared when the timeout has passed, not up to a polling period later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import termios
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import serial
import structlog

from drivers import ConnectFailed, cancel_and_wait
from drivers.serial_line import open_serial_port
from firmware_bridge._clock import LinkClock, MonotonicClock
from firmware_bridge._config import FirmwareSerialConfig
from firmware_bridge._errors import (
    CommandRejected,
    CommunicationLost,
    FirmwareError,
    FirmwareTimeout,
    IncompatibleFirmware,
    MessageError,
    MotionFault,
)
from firmware_bridge._framing import Frame, FrameReader, encode_frame
from firmware_bridge._messages import (
    EVENT_SEQ,
    MOTIONS,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    CodeArgs,
    HelloArgs,
    HelloReply,
    Message,
    StatusArgs,
    code_name,
    decode_message,
    encode_message,
    parse_ack,
)

_log = structlog.get_logger("firmware_bridge.link")

#: What opening a serial port raises (termios.error is not an OSError).
_PORT_ERRORS = (OSError, serial.SerialException, termios.error, ValueError)
#: How long closing waits for the transport to report the port closed.
_CLOSE_WAIT_S = 2.0

_Reply = Message | FirmwareError


class _SerialProtocol(asyncio.Protocol):
    """Hands the transport's callbacks to the link (which owns all state)."""

    def __init__(self, link: FirmwareLink) -> None:
        self._link = link

    def data_received(self, data: bytes) -> None:
        self._link._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._on_connection_lost(exc)


class FirmwareLink:
    """One open link and firmware session; see the module docstring.

    `request(op, args)` returns the final reply (`ack` for instant requests, `done` for
    motions) and raises CommandRejected (`nak`), MotionFault (`fault`), FirmwareTimeout or
    CommunicationLost. `status` is the latest heartbeat, `hello` the firmware's `hello` answer.
    `clock` times the heartbeat supervision (default: the monotonic clock).
    """

    def __init__(
        self,
        *,
        config: FirmwareSerialConfig,
        device: str,
        host: str = "controllerd",
        clock: LinkClock | None = None,
    ) -> None:
        self.config = config
        self._clock: LinkClock = clock or MonotonicClock()
        self.device = device
        self._host = host
        self._log = _log.bind(device=device, port=config.port)
        self._lock = asyncio.Lock()
        # A random first sequence number: a new session's requests should not look like
        # the previous session's (the firmware's reply cache is also cleared by hello).
        first = random.randrange(1, 0x10000)
        self._seqs = itertools.chain(range(first, 0x10000), itertools.cycle(range(1, 0x10000)))
        self._pending: dict[int, asyncio.Queue[_Reply]] = {}
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._last_rx = self._clock.now()
        self._lost: CommunicationLost | None = None
        self._version = PROTOCOL_VERSION
        self._motion_seq: int | None = None
        self.hello: HelloReply | None = None
        #: Latest heartbeat (or `status` answer); None until the first one.
        self.status: StatusArgs | None = None
        #: Latest unsolicited `fault` event (one that ended no command).
        self.last_fault: CodeArgs | None = None
        self.stale_replies = 0
        self.bad_messages = 0
        #: Valid frames received (replies, events and heartbeats alike).
        self.frames_in = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        cfg = self.config
        self._closed = loop.create_future()
        try:
            async with asyncio.timeout(cfg.timeout_s + 2.0):
                transport, _ = await open_serial_port(
                    lambda: _SerialProtocol(self),
                    cfg.port,
                    baudrate=cfg.baudrate,
                    parity=cfg.parity,
                    stopbits=cfg.stopbits,
                )
        except (*_PORT_ERRORS, TimeoutError) as exc:
            raise ConnectFailed(
                f"cannot open {cfg.port}: {exc}", device=self.device, operation="connect"
            ) from exc
        self._transport = transport
        self._last_rx = self._clock.now()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._supervisor = self._tasks.create_task(
            self._supervise(), name=f"firmware-heartbeat-{self.device}"
        )
        try:
            self.hello = await self._handshake()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._motion_seq is not None:
            self._send_stop("link closing")
        if self._supervisor is not None:
            await cancel_and_wait(self._supervisor)
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            await tasks.__aexit__(None, None, None)
        self._fail_pending(CommunicationLost("link closed", retry_in_s=0.0, device=self.device))
        transport, self._transport = self._transport, None
        if transport is not None:
            # abort: a pty nobody reads would make a flushing close wait for ever.
            transport.abort()
            if self._closed is not None and not self._closed.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._closed), _CLOSE_WAIT_S)

    async def _handshake(self) -> HelloReply:
        args = HelloArgs(versions=list(SUPPORTED_VERSIONS), host=self._host[:64])
        reply = await self.request("hello", args.model_dump())
        hello = parse_ack("hello", reply)
        assert isinstance(hello, HelloReply)
        if hello.version not in SUPPORTED_VERSIONS:
            theirs = ", ".join(str(v) for v in hello.versions)
            ours = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
            raise IncompatibleFirmware(
                f"incompatible firmware {hello.firmware!r}: it speaks protocol version "
                f"{theirs}, this host speaks version {ours}",
                firmware_versions=tuple(hello.versions),
                host_versions=SUPPORTED_VERSIONS,
            )
        self._version = hello.version
        self._log.info(
            "firmware link up",
            firmware=hello.firmware,
            protocol=hello.version,
            heartbeat_ms=hello.heartbeat_ms,
        )
        return hello

    # ------------------------------------------------------------------ state

    @property
    def lost(self) -> CommunicationLost | None:
        """Why the link is unusable (silence, port closed), or None while it works."""
        return self._lost

    @property
    def last_heard(self) -> float:
        """When (on the link's clock) the last valid frame arrived."""
        return self._last_rx

    @property
    def silent_s(self) -> float:
        """Seconds since the last valid frame from the firmware."""
        return self._clock.now() - self._last_rx

    @property
    def frame_errors(self) -> int:
        """Received frames dropped for a bad CRC, COBS or size."""
        return self._reader.errors

    # ------------------------------------------------------------------ requests

    async def request(self, op: str, args: Mapping[str, Any] | None = None) -> Message:
        """Send one request and return its final reply; one request in flight at a time."""
        if op == "stop":
            return await self._exchange(op, args or {})
        async with self._lock:
            return await self._exchange(op, args or {})

    async def stop(self) -> Message:
        """Emergency stop: sent at once, even while a motion holds the link."""
        return await self.request("stop")

    async def _exchange(self, op: str, args: Mapping[str, Any]) -> Message:
        if self._lost is not None:
            raise self._lost
        motion = op in MOTIONS
        seq = next(self._seqs)
        try:
            payload = encode_message(Message(op=op, args=args))
        except MessageError as exc:
            raise FirmwareError(str(exc), device=self.device, operation=op) from exc
        frame = encode_frame(Frame(version=self._version, seq=seq, payload=payload))
        queue: asyncio.Queue[_Reply] = asyncio.Queue()
        self._pending[seq] = queue
        if motion:
            self._motion_seq = seq
        finished = False
        try:
            reply = await self._await_reply(op, seq, frame, queue, motion)
            finished = True
            return reply
        except FirmwareTimeout:
            finished = not motion
            raise
        except (CommandRejected, MotionFault, CommunicationLost):
            finished = True
            raise
        finally:
            del self._pending[seq]
            if motion:
                self._motion_seq = None
                if not finished:
                    # Cancelled or timed out: a gantry nobody waits for must not keep moving.
                    self._send_stop(f"{op} abandoned")

    async def _await_reply(
        self, op: str, seq: int, frame: bytes, queue: asyncio.Queue[_Reply], motion: bool
    ) -> Message:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._write(frame)
        unanswered = 0
        deadline: float | None = None
        while True:
            try:
                async with asyncio.timeout(cfg.timeout_s):
                    reply = await queue.get()
            except TimeoutError:
                if self._lost is not None:
                    raise self._lost from None
                unanswered += 1
                if unanswered > cfg.retries:
                    raise FirmwareTimeout(
                        f"no reply to seq {seq} after {unanswered} attempts of {cfg.timeout_s} s",
                        device=self.device,
                        operation=op,
                    ) from None
                if deadline is not None and loop.time() > deadline:
                    raise FirmwareTimeout(
                        f"motion did not finish within {cfg.motion_timeout_s} s",
                        device=self.device,
                        operation=op,
                    ) from None
                self._write(frame)  # a retransmission: same frame, same sequence number
                continue
            if isinstance(reply, FirmwareError):
                raise reply
            unanswered = 0
            if reply.op == "nak":
                code = CodeArgs.model_validate(reply.args)
                raise CommandRejected(
                    f"refused: {code_name(code.code)} ({code.message})",
                    code=code.code,
                    code_name=code_name(code.code),
                    operation=op,
                )
            if reply.op == "fault":
                code = CodeArgs.model_validate(reply.args)
                raise MotionFault(
                    f"ended in fault: {code_name(code.code)} ({code.message})",
                    code=code.code,
                    code_name=code_name(code.code),
                    operation=op,
                )
            if reply.op == "ack" and motion:
                if deadline is None:
                    deadline = loop.time() + cfg.motion_timeout_s
                elif loop.time() > deadline:
                    raise FirmwareTimeout(
                        f"motion did not finish within {cfg.motion_timeout_s} s",
                        device=self.device,
                        operation=op,
                    )
                continue  # accepted (or still running): wait for done
            if reply.op == ("done" if motion else "ack"):
                if op == "status":
                    self.status = StatusArgs.model_validate(reply.args)
                return reply
            self.bad_messages += 1
            self._log.debug("unexpected reply dropped", op=op, seq=seq, reply=reply.op)

    def _send_stop(self, reason: str) -> None:
        """Write a stop without waiting for its answer (usable from cleanup paths)."""
        if self._transport is None or self._transport.is_closing():
            return
        payload = encode_message(Message(op="stop", args={}))
        frame = Frame(version=self._version, seq=next(self._seqs), payload=payload)
        self._write(encode_frame(frame))
        self._log.warning("motion stopped", reason=reason)

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise CommunicationLost(
                "port is closed", retry_in_s=0.0, device=self.device, operation="write"
            )
        self._transport.write(data)

    # ------------------------------------------------------------------ receiving

    def _on_data(self, data: bytes) -> None:
        errors = self._reader.errors
        frames = self._reader.feed(data)
        if self._reader.errors != errors:
            self._log.debug(
                "bad frames dropped", total=self._reader.errors, error=str(self._reader.last_error)
            )
        for frame in frames:
            self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        try:
            message = decode_message(frame.payload)
        except MessageError as exc:
            self.bad_messages += 1
            self._log.debug("bad message dropped", seq=frame.seq, error=str(exc))
            return
        if frame.version != self._version and not (self.hello is None and message.op == "ack"):
            # Only the hello answer may come in another version (so it can name that version).
            self.bad_messages += 1
            self._log.debug("frame of another protocol version dropped", version=frame.version)
            return
        self._last_rx = self._clock.now()
        self.frames_in += 1
        if message.op == "heartbeat":
            self.status = StatusArgs.model_validate(message.args)
            return
        if frame.seq == EVENT_SEQ:
            if message.op == "fault":
                self.last_fault = CodeArgs.model_validate(message.args)
                self._log.warning(
                    "controller fault",
                    code=code_name(self.last_fault.code),
                    message=self.last_fault.message,
                )
            return
        queue = self._pending.get(frame.seq)
        if queue is None:
            self.stale_replies += 1
            self._log.debug("stale reply dropped", seq=frame.seq, op=message.op)
            return
        queue.put_nowait(message)

    def _on_connection_lost(self, exc: Exception | None) -> None:
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._transport is not None:  # not closing on purpose
            self._lose(f"port closed: {exc}" if exc else "port closed")

    def _lose(self, reason: str, *, silent_s: float | None = None) -> None:
        if self._lost is not None:
            return
        self._lost = CommunicationLost(
            f"communication lost: {reason}",
            retry_in_s=self.config.reconnect_initial_s,
            device=self.device,
            operation="heartbeat",
            silent_s=silent_s,
        )
        self._log.warning("firmware link lost", reason=reason, silent_s=silent_s)
        self._fail_pending(self._lost)

    def _fail_pending(self, error: FirmwareError) -> None:
        for queue in self._pending.values():
            queue.put_nowait(error)

    async def _supervise(self) -> None:
        """Sleep until the last frame's deadline; lost if nothing arrived meanwhile."""
        timeout = self.config.heartbeat_timeout_s
        while self._lost is None:
            await self._clock.sleep_until(self._last_rx + timeout)
            now = self._clock.now()
            # The same sum as the deadline slept on (a difference could round below it).
            if now >= self._last_rx + timeout:
                silent = now - self._last_rx
                self._lose(
                    f"controller silent for {silent:.2f} s (heartbeat timeout {timeout} s)",
                    silent_s=silent,
                )
