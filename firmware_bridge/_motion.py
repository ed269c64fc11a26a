"""The picker's motion API for the daemon: home, move_to, pick, place, scan, stop, status.

Millimetres and seconds here, µm and ms on the wire. Each call is one request on the link
(`stop` bypasses the one-command lock, so it interrupts a running move); a motion returns once
the firmware reports `done`, and raises MotionFault when it ends in `fault` (jam, stopped,
e-stop), CommandRejected for a `nak` (not homed, gripper full, …), FirmwareTimeout or
CommunicationLost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from firmware_bridge._config import MotionConfig
from firmware_bridge._errors import FirmwareError
from firmware_bridge._link import FirmwareLink
from firmware_bridge._messages import (
    DoneArgs,
    MoveArgs,
    PositionArgs,
    StatusArgs,
    code_name,
    parse_ack,
)

#: The largest coordinate a move may ask for, in mm (the wire's int32 µm).
_LIMIT_MM = 2_000_000.0


@dataclass(frozen=True, slots=True)
class Position:
    """Where the gantry is, in mm."""

    x_mm: float
    y_mm: float
    z_mm: float

    @classmethod
    def from_args(cls, args: PositionArgs) -> Position:
        return cls(x_mm=args.x_um / 1000, y_mm=args.y_um / 1000, z_mm=args.z_um / 1000)


@dataclass(frozen=True, slots=True)
class PickerStatus:
    """The controller's state, from a heartbeat or a `status` answer."""

    position: Position
    homed: bool
    holding: bool
    moving: bool
    estop: bool
    #: Names of the active faults (`jam`, `estop`, …), from the error-code table.
    faults: tuple[str, ...]

    @classmethod
    def from_args(cls, args: StatusArgs) -> PickerStatus:
        return cls(
            position=Position.from_args(args),
            homed=args.homed,
            holding=args.holding,
            moving=args.moving,
            estop=args.estop,
            faults=tuple(code_name(code) for code in args.faults),
        )


class LinkSource(Protocol):
    """Whatever hands out the current open link (the PickerDriver, reconnecting as needed)."""

    async def link(self) -> FirmwareLink: ...


class PickerMotion:
    """Motion commands on a picker; every method raises a FirmwareError naming the cause."""

    def __init__(self, *, source: LinkSource) -> None:
        self._source = source

    async def _motion(self, op: str, args: dict[str, int] | None = None) -> DoneArgs:
        link = await self._source.link()
        reply = await link.request(op, args)
        return DoneArgs.model_validate(reply.args)

    async def home(self) -> Position:
        """Find the axes' reference positions; returns where the gantry ended (0, 0)."""
        return Position.from_args(await self._motion("home"))

    async def move_to(self, *, x_mm: float, y_mm: float) -> Position:
        """Move the gantry to (x, y); returns the position reached."""
        for name, value in (("x_mm", x_mm), ("y_mm", y_mm)):
            if not -_LIMIT_MM < value < _LIMIT_MM:
                raise FirmwareError(f"{name}={value} is not a coordinate", operation="move")
        args = MoveArgs(x_um=round(x_mm * 1000), y_um=round(y_mm * 1000))
        return Position.from_args(await self._motion("move", args.model_dump()))

    async def pick(self) -> Position:
        """Take the tube under the gantry into the gripper."""
        return Position.from_args(await self._motion("pick"))

    async def place(self) -> Position:
        """Put the held tube into the empty position under the gantry."""
        return Position.from_args(await self._motion("place"))

    async def scan(self) -> str | None:
        """Read the barcode of the tube under the gantry (None: no tube or unreadable)."""
        return (await self._motion("scan")).barcode

    async def stop(self) -> Position:
        """Emergency stop, accepted at any time: a running motion ends in MotionFault(stopped)."""
        link = await self._source.link()
        reply = await link.stop()
        args = parse_ack("stop", reply)
        assert isinstance(args, PositionArgs)
        return Position.from_args(args)

    async def status(self) -> PickerStatus:
        """Ask the controller for its state now (not waiting for the next heartbeat)."""
        link = await self._source.link()
        args = parse_ack("status", await link.request("status"))
        assert isinstance(args, StatusArgs)
        return PickerStatus.from_args(args)

    async def set_motion(self, motion: MotionConfig) -> None:
        """Set speeds, accelerations and the fixed pick, place and scan times."""
        link = await self._source.link()
        await link.request("set_motion", motion.to_args().model_dump())
