"""The picker's microcontroller on a pseudo-terminal, speaking docs/firmware-protocol.md.

`PickerSimulator` opens a pty, links the configured port path to its slave side (the daemon
opens the path as if it were /dev/ttyACM0) and answers from the firmware bridge's own codecs:
a reply cache makes a retransmitted request (same sequence number, same payload) get the last
reply again instead of running twice; motions run on the simulated clock; a heartbeat goes
out every `heartbeat_ms` of real time. Faults (see FAULTS) are injected with `inject`.

Not modelled: baud rate and character timing (a pty carries bytes instantly), flow control,
a firmware reset (the session only restarts with `hello`), several hosts on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import sys
import termios
import tty
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from controllerd.sim_config import PickerSimulation
from firmware_bridge.protocol import (
    DELIMITER,
    EVENT_SEQ,
    MAX_ENCODED,
    MOTIONS,
    REQUESTS,
    CodeArgs,
    DoneArgs,
    ErrorCode,
    Frame,
    FrameReader,
    HelloArgs,
    HelloReply,
    Message,
    MessageError,
    MotionConfig,
    MoveArgs,
    PositionArgs,
    SetMotionArgs,
    StatusArgs,
    decode_message,
    encode_frame,
    encode_message,
)
from simulators._clock import SimClock
from simulators._errors import FaultError
from simulators._station import PickStation
from simulators.picker._model import PickerModel

_log = structlog.get_logger("simulators.picker")

FAULTS: Mapping[str, str] = {
    "jam": "every move or home stops halfway and ends in fault `jam`",
    "misread": "scan returns no barcode or a wrong one",
    "drop": "frames lost both ways (share: simulation.fault_rate)",
    "corrupt": "one bit flipped in frames both ways (share: simulation.fault_rate)",
    "nak": "every request but hello, status and stop is refused (nak `refused`)",
    "estop": "the e-stop is pressed: motion ends in fault `estop`; refused until cleared, "
    "after which the axes need `home`",
    "silent": "the controller stops talking (no replies, no heartbeats)",
}
#: Replies the firmware remembers for retransmitted requests.
REPLY_CACHE = 16
FIRMWARE = "picker-sim 1.0"


@dataclass(slots=True)
class _Cached:
    payload: bytes
    reply: Message


class PickerSimulator:
    """One simulated picker controller on a pty at `path` (async context manager)."""

    def __init__(
        self,
        *,
        device_id: str,
        path: Path,
        station: PickStation,
        clock: SimClock | Callable[[], SimClock],
        params: PickerSimulation,
        motion: MotionConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.id = device_id
        self.path = path
        self.params = params
        # The room replaces its clock when it starts serving, hence a callable too.
        self._clock = clock
        self.model = PickerModel(
            station=station,
            motion=motion or MotionConfig(),
            travel_mm=(params.travel_x_mm, params.travel_y_mm),
        )
        self.version = params.protocol_version
        self.faults: set[str] = set()
        self._rng = rng or random.Random(device_id)
        self._reader = FrameReader()
        #: Received bytes of a frame whose delimiter has not arrived yet (drop / corrupt on).
        self._inbound = bytearray()
        self._cache: OrderedDict[int, _Cached] = OrderedDict()
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._running: list[asyncio.Task[None]] = []
        self._motion_task: asyncio.Task[None] | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self._log = _log.bind(device=device_id)

    @property
    def clock(self) -> SimClock:
        """The simulated clock that times the motions."""
        return self._clock if isinstance(self._clock, SimClock) else self._clock()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.path.is_symlink():
            self.path.unlink()  # left by a simulator that did not exit cleanly
        elif self.path.exists():
            raise FileExistsError(f"{self.path} exists and is not a symlink: not replacing it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = os.openpty()
        try:
            tty.setraw(self._master)
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.slave_name = os.ttyname(self._slave)
            self.path.symlink_to(self.slave_name)
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._master, self._on_readable)
            self._tasks = asyncio.TaskGroup()
            await self._tasks.__aenter__()
            self._running.append(
                self._tasks.create_task(self._heartbeats(), name=f"picker-heartbeat-{self.id}")
            )
        except BaseException:
            await self._close()
            raise
        self._log.debug("picker pty open", path=str(self.path), pty=self.slave_name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        for task in [*self._running, self._motion_task]:
            if task is not None:
                task.cancel()
        self._running.clear()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            await tasks.__aexit__(None, None, None)
        if self._loop is not None and self._master is not None:
            self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        with contextlib.suppress(OSError):
            if self.path.is_symlink() and str(self.path.readlink()) == self.slave_name:
                self.path.unlink()

    # ------------------------------------------------------------------ faults and state

    def check_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise FaultError(
                f"a tube_picker has no '{fault}' fault (it has: {', '.join(sorted(FAULTS))})",
                device=self.id,
                fault=fault,
            )

    def inject(self, fault: str, *, clear: bool = False) -> bool:
        """Inject (or clear) a fault; True when that changed anything."""
        self.check_fault(fault)
        if clear == (fault not in self.faults):
            return False
        if clear:
            self.faults.discard(fault)
        else:
            self.faults.add(fault)
        self.model.jam = "jam" in self.faults
        if fault == "estop":
            self.model.estop = not clear
            if clear:
                self.model.homed = False
            else:
                self._abort_motion(ErrorCode.ESTOP, "e-stop pressed", event=True)
        return True

    def state(self) -> dict[str, Any]:
        """What the control endpoint's `status` reports for this device."""
        x, y, z = self.model.position(self.clock.now())
        return {
            "kind": "tube_picker",
            "transport": "firmware_serial",
            "path": str(self.path),
            "answering": "silent" not in self.faults,
            "faults": sorted(self.faults),
            "x_mm": round(x, 3),
            "y_mm": round(y, 3),
            "z_mm": round(z, 3),
            "homed": self.model.homed,
            "holding": self.model.holding,
            "moving": self.model.current is not None,
            "executions": dict(self.model.executions),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_dropped": self.frames_dropped,
            "bad_frames": self.bad_frames,
        }

    def _status_args(self) -> StatusArgs:
        x, y, z = self.model.position(self.clock.now())
        active = [ErrorCode.JAM] if self.model.jam else []
        if self.model.estop:
            active.append(ErrorCode.ESTOP)
        return StatusArgs(
            x_um=round(x * 1000),
            y_um=round(y * 1000),
            z_um=round(z * 1000),
            homed=self.model.homed,
            holding=self.model.holding is not None,
            moving=self.model.current is not None,
            estop=self.model.estop,
            faults=[int(code) for code in active],
        )

    # ------------------------------------------------------------------ the wire

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._log.debug("pty read failed", error=str(exc))
            return
        if "silent" in self.faults:
            return
        for frame in self._reader.feed(self._line_in(data)):
            self.frames_in += 1
            self._on_frame(frame)

    def _line_in(self, data: bytes) -> bytes:
        """What the firmware's UART makes of `data`: with `drop` / `corrupt` on, each whole
        frame is lost or bit-flipped on its way in (so a flipped frame reaches the reader and
        fails its CRC there, counted in `bad_frames`)."""
        if not self.faults & {"drop", "corrupt"}:
            data, self._inbound = bytes(self._inbound) + data, bytearray()
            return data
        self._inbound += data
        out = bytearray()
        while (end := self._inbound.find(DELIMITER)) >= 0:
            wire = bytes(self._inbound[: end + 1])
            del self._inbound[: end + 1]
            out += self._mangle(wire) or b""
        if len(self._inbound) >= MAX_ENCODED:
            # No delimiter in sight: line noise, which the reader discards and counts.
            out += self._inbound
            self._inbound.clear()
        return bytes(out)

    def write_line_noise(self, data: bytes) -> None:
        """Put raw bytes on the line towards the host, as electrical noise would."""
        assert self._master is not None
        os.write(self._master, data)

    @property
    def unread_by_host(self) -> int:
        """Bytes written towards the host that the host has not read from the port yet."""
        if self._slave is None:
            return 0
        buf = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, sys.byteorder)

    @property
    def bad_frames(self) -> int:
        """Received frames that failed COBS, size or CRC (bit flips, line noise)."""
        return self._reader.errors

    def _mangle(self, wire: bytes) -> bytes | None:
        rate = self.params.fault_rate
        if "drop" in self.faults and self._rng.random() < rate:
            self.frames_dropped += 1
            return None
        if "corrupt" in self.faults and self._rng.random() < rate and len(wire) > 1:
            index = self._rng.randrange(len(wire) - 1)  # never the delimiter itself
            flipped = wire[index] ^ (1 << self._rng.randrange(8))
            return wire[:index] + bytes([flipped]) + wire[index + 1 :]
        return wire

    def _send(self, seq: int, message: Message) -> None:
        if "silent" in self.faults or self._master is None:
            return
        wire = self._mangle(
            encode_frame(Frame(version=self.version, seq=seq, payload=encode_message(message)))
        )
        if wire is None:
            return
        try:
            os.write(self._master, wire)
            self.frames_out += 1
        except OSError as exc:
            # A full pty buffer (nobody reading the port) loses the frame, as a line would.
            self._log.debug("pty write failed", error=str(exc))

    def _reply(self, seq: int, payload: bytes, message: Message) -> None:
        self._cache[seq] = _Cached(payload=payload, reply=message)
        self._cache.move_to_end(seq)
        while len(self._cache) > REPLY_CACHE:
            self._cache.popitem(last=False)
        self._send(seq, message)

    def _nak(self, seq: int, payload: bytes, code: ErrorCode, message: str) -> None:
        self._reply(seq, payload, Message.of("nak", CodeArgs(code=code, message=message)))

    # ------------------------------------------------------------------ requests

    def _on_frame(self, frame: Frame) -> None:
        seq, payload = frame.seq, frame.payload
        if seq == EVENT_SEQ:
            return  # not a request: the host never sends seq 0
        try:
            message = decode_message(payload)
        except MessageError as exc:
            self._nak(seq, payload, ErrorCode.BAD_ARGS, str(exc)[:96])
            return
        cached = self._cache.get(seq)
        if cached is not None and cached.payload == payload and message.op != "hello":
            # A retransmission: answered, never executed again. `hello` always runs: it
            # starts a new session, whose sequence numbers may repeat the old session's.
            self._send(seq, cached.reply)
            return
        if message.op not in REQUESTS:
            self._nak(seq, payload, ErrorCode.UNKNOWN_OP, f"{message.op[:32]} is not a request")
            return
        if message.op == "hello":
            self._hello(seq, payload, HelloArgs.model_validate(message.args))
            return
        if frame.version != self.version:
            self._nak(
                seq, payload, ErrorCode.UNSUPPORTED_VERSION, f"this firmware speaks {self.version}"
            )
            return
        if message.op == "stop":
            self._abort_motion(ErrorCode.STOPPED, "stopped by the host")
            self.model.record(seq, "stop")
            position = self._status_args()
            reply = PositionArgs(x_um=position.x_um, y_um=position.y_um, z_um=position.z_um)
            self._reply(seq, payload, Message.of("ack", reply))
            return
        if message.op == "status":
            self._reply(seq, payload, Message.of("ack", self._status_args()))
            return
        if "nak" in self.faults:
            self._nak(seq, payload, ErrorCode.REFUSED, "refused (injected nak fault)")
            return
        if message.op == "set_motion":
            if self.model.current is not None:
                self._nak(seq, payload, ErrorCode.BUSY, "a motion is running")
                return
            self.model.set_motion(SetMotionArgs.model_validate(message.args))
            self.model.record(seq, "set_motion")
            self._reply(seq, payload, Message.of("ack"))
            return
        self._begin(seq, payload, message)

    def _hello(self, seq: int, payload: bytes, args: HelloArgs) -> None:
        common = set(args.versions) & {self.version}
        self._cache.clear()  # a new session: sequence numbers start over
        self.model.session += 1
        reply = HelloReply(
            version=max(common) if common else 0,
            versions=[self.version],
            firmware=FIRMWARE,
            capabilities=sorted(REQUESTS),
            heartbeat_ms=self.params.heartbeat_ms,
        )
        self._reply(seq, payload, Message.of("ack", reply))

    def _begin(self, seq: int, payload: bytes, message: Message) -> None:
        op = message.op
        target = (0.0, 0.0)
        if op == "move":
            move = MoveArgs.model_validate(message.args)
            target = (move.x_um / 1000, move.y_um / 1000)
        refused = self.model.begin(
            op=op, seq=seq, now_s=self.clock.now(), x_mm=target[0], y_mm=target[1]
        )
        if refused is not None:
            self._nak(seq, payload, refused, f"{op} refused")
            return
        assert op in MOTIONS and self._tasks is not None
        self._reply(seq, payload, Message.of("ack"))
        self._motion_task = self._tasks.create_task(
            self._run_motion(seq, payload), name=f"picker-{self.id}-{op}-{seq}"
        )

    async def _run_motion(self, seq: int, payload: bytes) -> None:
        motion = self.model.current
        assert motion is not None
        await self.clock.sleep_until(motion.jam_s if motion.jam_s is not None else motion.end_s)
        self._motion_task = None
        fault, barcode = self.model.finish(self.clock.now())
        if fault is not None:
            text = "axis jammed" if fault == ErrorCode.JAM else f"{motion.op} failed"
            self._reply(seq, payload, Message.of("fault", CodeArgs(code=fault, message=text)))
            return
        if motion.op == "scan" and "misread" in self.faults:
            barcode = self._misread(barcode)
        status = self._status_args()
        done = DoneArgs(
            x_um=status.x_um,
            y_um=status.y_um,
            z_um=status.z_um,
            holding=status.holding,
            barcode=barcode,
        )
        self._reply(seq, payload, Message.of("done", done))

    def _misread(self, barcode: str | None) -> str | None:
        if barcode is None or self._rng.random() < 0.5:
            return None
        wrong = "0" if barcode[-1:] != "0" else "1"
        return barcode[:-1] + wrong

    def _abort_motion(self, code: ErrorCode, text: str, *, event: bool = False) -> None:
        """End the running motion in `fault` (its own seq); an event when none runs."""
        task, self._motion_task = self._motion_task, None
        if task is not None:
            task.cancel()
        motion = self.model.halt(self.clock.now())
        fault = Message.of("fault", CodeArgs(code=code, message=text))
        if motion is not None:
            cached = self._cache.get(motion.seq)
            self._reply(motion.seq, cached.payload if cached else b"", fault)
        elif event:
            self._send(EVENT_SEQ, fault)

    async def _heartbeats(self) -> None:
        period_s = self.params.heartbeat_ms / 1000
        while True:
            self._send(EVENT_SEQ, Message.of("heartbeat", self._status_args()))
            await asyncio.sleep(period_s)
