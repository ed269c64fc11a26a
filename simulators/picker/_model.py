"""The picker's mechanics: gantry position over simulated time, gripper, barcode reader.

Pure state on simulated seconds (no I/O): `begin` checks a request against the machine's state
and starts the motion (or says which error code refuses it), `finish` completes it,
`halt` stops it where the profile has got to. Every executed request is recorded in
`executed`, so a test can prove that no request ran twice.

Modelled: XY moves on the trapezoidal profile (PRODUCT.md), `home` as a move to (0, 0), fixed
pick/place/scan times with Z down for the middle half of pick and place, a gripper holding at
most one tube, a reader that reads the tube under the gantry in the shared `PickStation`, a jam
(a move stops halfway), an e-stop (motion refused until released; the axes then need `home`).
Not modelled: Z speeds, gripper force, collisions, rack heights, axis following errors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from firmware_bridge.protocol import ErrorCode, MotionConfig, SetMotionArgs
from simulators._station import PickStation
from simulators.picker._profile import axis_time_s, axis_travelled_mm

#: How deep Z goes to grip or release a tube.
PICK_DEPTH_MM = 40.0


@dataclass(slots=True)
class Motion:
    """One running motion."""

    op: str
    seq: int
    start_s: float
    end_s: float
    x0_mm: float
    y0_mm: float
    x1_mm: float
    y1_mm: float
    #: A jammed move stops here (simulated time) with a `jam` fault.
    jam_s: float | None = None


class PickerModel:
    """Gantry, gripper and reader of one picker."""

    def __init__(
        self, *, station: PickStation, motion: MotionConfig, travel_mm: tuple[float, float]
    ) -> None:
        self.station = station
        self.travel_mm = travel_mm
        self.x_mm = self.y_mm = 0.0
        self.homed = False
        self.holding: str | None = None
        self.estop = False
        self.jam = False
        self.current: Motion | None = None
        self.set_motion(motion.to_args())
        #: Every executed request: (session, seq, op).
        self.executed: list[tuple[int, int, str]] = []
        self.session = 0

    def set_motion(self, args: SetMotionArgs) -> None:
        self.vx, self.ax = args.x.v_um_s / 1000, args.x.a_um_s2 / 1000
        self.vy, self.ay = args.y.v_um_s / 1000, args.y.a_um_s2 / 1000
        self.pick_s = args.pick_ms / 1000
        self.place_s = args.place_ms / 1000
        self.scan_s = args.scan_ms / 1000

    @property
    def executions(self) -> Counter[str]:
        """How many times each op was executed."""
        return Counter(op for _, _, op in self.executed)

    def duplicate_executions(self) -> list[tuple[int, int]]:
        """(session, seq) pairs executed more than once: must stay empty."""
        counts = Counter((session, seq) for session, seq, _ in self.executed)
        return [key for key, count in counts.items() if count > 1]

    def record(self, seq: int, op: str) -> None:
        self.executed.append((self.session, seq, op))

    def position(self, now_s: float) -> tuple[float, float, float]:
        """(x, y, z) in mm at simulated time `now_s`."""
        motion = self.current
        if motion is None:
            return self.x_mm, self.y_mm, 0.0
        t = now_s - motion.start_s
        if motion.jam_s is not None:
            t = min(t, motion.jam_s - motion.start_s)
        x = motion.x0_mm + axis_travelled_mm(motion.x1_mm - motion.x0_mm, self.vx, self.ax, t)
        y = motion.y0_mm + axis_travelled_mm(motion.y1_mm - motion.y0_mm, self.vy, self.ay, t)
        z = 0.0
        if motion.op in ("pick", "place"):
            span = motion.end_s - motion.start_s
            if span > 0 and 0.25 <= t / span < 0.75:
                z = -PICK_DEPTH_MM
        return x, y, z

    def begin(
        self, *, op: str, seq: int, now_s: float, x_mm: float = 0.0, y_mm: float = 0.0
    ) -> ErrorCode | None:
        """Start a motion; the code that refuses it (and nothing changes), or None."""
        if self.current is not None:
            return ErrorCode.BUSY
        if self.estop:
            return ErrorCode.ESTOP_ACTIVE
        if op != "home" and not self.homed:
            return ErrorCode.NOT_HOMED
        target = (self.x_mm, self.y_mm)
        duration = 0.0
        if op in ("home", "move"):
            if op == "home":
                x_mm, y_mm = 0.0, 0.0
            if not (0 <= x_mm <= self.travel_mm[0] and 0 <= y_mm <= self.travel_mm[1]):
                return ErrorCode.OUT_OF_RANGE
            target = (x_mm, y_mm)
            duration = max(
                axis_time_s(x_mm - self.x_mm, self.vx, self.ax),
                axis_time_s(y_mm - self.y_mm, self.vy, self.ay),
            )
        elif op == "pick":
            if self.holding is not None:
                return ErrorCode.GRIPPER_FULL
            if self.station.tube_at(self.x_mm, self.y_mm) is None:
                return ErrorCode.NO_TUBE
            duration = self.pick_s
        elif op == "place":
            if self.holding is None:
                return ErrorCode.GRIPPER_EMPTY
            where = self.station.locate(self.x_mm, self.y_mm)
            if where is None or self.station.racks[where[0]] is None:
                return ErrorCode.NO_POSITION
            if self.station.tube_at(self.x_mm, self.y_mm) is not None:
                return ErrorCode.POSITION_OCCUPIED
            duration = self.place_s
        elif op == "scan":
            duration = self.scan_s
        else:
            return ErrorCode.UNKNOWN_OP
        motion = Motion(
            op=op,
            seq=seq,
            start_s=now_s,
            end_s=now_s + duration,
            x0_mm=self.x_mm,
            y0_mm=self.y_mm,
            x1_mm=target[0],
            y1_mm=target[1],
        )
        if self.jam and op in ("home", "move") and duration > 0:
            motion.jam_s = now_s + duration / 2
        self.current = motion
        self.record(seq, op)
        return None

    def finish(self, now_s: float) -> tuple[ErrorCode | None, str | None]:
        """Complete the running motion: (fault code or None, barcode read by a scan)."""
        motion = self.current
        assert motion is not None
        if motion.jam_s is not None:
            self.halt(motion.jam_s)
            return ErrorCode.JAM, None
        self.current = None
        self.x_mm, self.y_mm = motion.x1_mm, motion.y1_mm
        if motion.op == "home":
            self.homed = True
        elif motion.op in ("pick", "place"):
            return self._transfer(motion.op), None
        elif motion.op == "scan":
            return None, self.station.tube_at(self.x_mm, self.y_mm)
        return None, None

    def halt(self, now_s: float) -> Motion | None:
        """Stop the running motion where it has got to (a pick or place does nothing)."""
        motion = self.current
        if motion is None:
            return None
        self.x_mm, self.y_mm, _ = self.position(now_s)
        self.current = None
        return motion

    def _transfer(self, op: str) -> ErrorCode | None:
        """Move the tube between the rack under the gantry and the gripper."""
        where = self.station.locate(self.x_mm, self.y_mm)
        rack = None if where is None else self.station.racks[where[0]]
        if where is None or rack is None:  # the rack left while the gripper was down
            return ErrorCode.NO_TUBE if op == "pick" else ErrorCode.NO_POSITION
        position = where[1]
        if op == "pick":
            if rack.tubes.get(position) is None:
                return ErrorCode.NO_TUBE
            self.holding, rack.tubes[position] = rack.tubes[position], None
        else:
            if rack.tubes.get(position) is not None:
                return ErrorCode.POSITION_OCCUPIED
            rack.tubes[position], self.holding = self.holding, None
        return None
