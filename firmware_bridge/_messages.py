"""Messages: the msgpack payload `{"op": str, "args": map}` of a frame, validated per op.

Pure (no I/O). Requests go host → firmware; replies (`ack`, `done`, `nak`) and events (`fault`,
`heartbeat`) go firmware → host. Lengths are in µm, speeds in µm/s, accelerations in µm/s²,
times in ms, all integers. docs/firmware-protocol.md is the full description.

`decode_message` accepts exactly the messages `encode_message` produces and raises
MessageError for anything else; the args of `ack` depend on the request it answers and are
checked by `parse_ack`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware_bridge._errors import MessageError

#: Protocol versions this code speaks (the frame header's first byte).
PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (PROTOCOL_VERSION,)
#: Sequence number of unsolicited events (`heartbeat`, a `fault` that ends no command).
EVENT_SEQ = 0

Um = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
PositiveInt = Annotated[int, Field(gt=0, le=2**31 - 1)]
Ms = Annotated[int, Field(ge=0, le=2**31 - 1)]
ShortText = Annotated[str, Field(max_length=64)]


class ErrorCode(IntEnum):
    """Codes of `nak` and `fault` (the table in docs/firmware-protocol.md)."""

    UNKNOWN_OP = 1
    BAD_ARGS = 2
    BUSY = 3
    NOT_HOMED = 4
    OUT_OF_RANGE = 5
    GRIPPER_FULL = 6
    GRIPPER_EMPTY = 7
    NO_TUBE = 8
    POSITION_OCCUPIED = 9
    NO_POSITION = 10
    ESTOP_ACTIVE = 11
    UNSUPPORTED_VERSION = 12
    REFUSED = 13
    JAM = 20
    STOPPED = 21
    ESTOP = 22


def code_name(code: int) -> str:
    """`jam` for 20; `code 99` for a code that is not in the table."""
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return f"code {code}"


class _Args(BaseModel):
    # strict: msgpack keeps bool and int apart, and so must the round trip.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Empty(_Args):
    """No arguments."""


class HelloArgs(_Args):
    """`hello`: the protocol versions the host speaks, and who it is."""

    versions: list[Annotated[int, Field(ge=1, le=255)]] = Field(min_length=1, max_length=8)
    host: ShortText = ""


class MoveArgs(_Args):
    """`move`: the XY target of the gantry."""

    x_um: Um
    y_um: Um


class AxisArgs(_Args):
    """One axis's top speed and acceleration."""

    v_um_s: PositiveInt
    a_um_s2: PositiveInt


class SetMotionArgs(_Args):
    """`set_motion`: speeds, accelerations and the fixed times of pick, place and scan."""

    x: AxisArgs
    y: AxisArgs
    pick_ms: Ms
    place_ms: Ms
    scan_ms: Ms


class PositionArgs(_Args):
    """Where the gantry is."""

    x_um: Um
    y_um: Um
    z_um: Um


class StatusArgs(PositionArgs):
    """`ack` of `status`, and every `heartbeat`: the controller's whole state."""

    homed: bool
    holding: bool
    moving: bool
    estop: bool
    #: Active fault codes (`jam`, `estop`, …); empty when healthy.
    faults: list[Annotated[int, Field(ge=0, le=255)]] = Field(default_factory=list, max_length=8)


class DoneArgs(PositionArgs):
    """`done`: the motion finished at this position; `scan` adds its barcode (nil: none)."""

    holding: bool
    barcode: Annotated[str, Field(max_length=64)] | None = None


class CodeArgs(_Args):
    """`nak` and `fault`: a code from the table and a human message."""

    code: Annotated[int, Field(ge=0, le=255)]
    message: Annotated[str, Field(max_length=96)] = ""


class HelloReply(_Args):
    """`ack` of `hello`: the version the firmware chose (0: none in common), every version it
    speaks, and what it can do. Frozen across protocol versions, so a host can always read it."""

    version: Annotated[int, Field(ge=0, le=255)]
    versions: list[Annotated[int, Field(ge=1, le=255)]] = Field(min_length=1, max_length=8)
    firmware: ShortText
    capabilities: list[Annotated[str, Field(max_length=16)]] = Field(max_length=16)
    heartbeat_ms: PositiveInt


#: Requests: op -> its args.
REQUESTS: Mapping[str, type[_Args]] = {
    "hello": HelloArgs,
    "home": Empty,
    "move": MoveArgs,
    "pick": Empty,
    "place": Empty,
    "scan": Empty,
    "status": Empty,
    "stop": Empty,
    "set_motion": SetMotionArgs,
}
#: Requests answered by `ack` and later `done` (or `fault`); the others by one `ack`.
MOTIONS = frozenset({"home", "move", "pick", "place", "scan"})
#: Replies and events, except `ack` (whose args depend on the request: see ACKS).
REPLIES: Mapping[str, type[_Args]] = {
    "done": DoneArgs,
    "nak": CodeArgs,
    "fault": CodeArgs,
    "heartbeat": StatusArgs,
}
#: The args of the `ack` that answers each request.
ACKS: Mapping[str, type[_Args]] = {
    "hello": HelloReply,
    "status": StatusArgs,
    "stop": PositionArgs,
    **{op: Empty for op in ("home", "move", "pick", "place", "scan", "set_motion")},
}
ALL_OPS = frozenset(REQUESTS) | frozenset(REPLIES) | {"ack"}


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded payload: `op` and its args as plain msgpack values."""

    op: str
    args: Mapping[str, Any]

    @classmethod
    def of(cls, op: str, args: _Args | None = None) -> Message:
        """A message from a typed args model (`Message.of("move", MoveArgs(x_um=1, y_um=2))`)."""
        return cls(op=op, args={} if args is None else args.model_dump())


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'args'}: {err['msg']}" for err in exc.errors()
    )


def check_args(op: str, args: Mapping[str, Any], model: type[_Args]) -> _Args:
    """Validate args against a model (MessageError naming the op and the field)."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise MessageError(f"{op}: {_validation_text(exc)}") from exc


def encode_message(message: Message) -> bytes:
    """The msgpack payload of a message; MessageError when it is not a valid message."""
    decode_message_args(message.op, message.args)
    packed: bytes = msgpack.packb({"op": message.op, "args": dict(message.args)}, use_bin_type=True)
    return packed


def decode_message_args(op: str, args: Mapping[str, Any]) -> None:
    """Check an op and its args (MessageError when either is wrong)."""
    model = REQUESTS.get(op) or REPLIES.get(op)
    if model is not None:
        check_args(op, args, model)
    elif op != "ack":
        raise MessageError(f"unknown op {op[:32]!r}")


def decode_message(payload: bytes) -> Message:
    """Decode and validate a payload; MessageError (and nothing else) for anything invalid."""
    try:
        data = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MessageError(f"payload is not msgpack: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"op", "args"}:
        raise MessageError("payload is not a map of exactly 'op' and 'args'")
    op, args = data["op"], data["args"]
    if not isinstance(op, str):
        raise MessageError("'op' is not a string")
    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        raise MessageError(f"{op[:32]}: 'args' is not a map with string keys")
    decode_message_args(op, args)
    return Message(op=op, args=args)


def parse_ack(request_op: str, message: Message) -> _Args:
    """The typed args of an `ack` answering `request_op` (MessageError when they do not fit)."""
    return check_args(f"ack of {request_op}", message.args, ACKS[request_op])
