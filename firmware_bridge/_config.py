"""Configuration of a picker's firmware link and of its motion, as a room config writes them.

`FirmwareSerialConfig` is a device's `driver = { type = "firmware_serial", … }` block;
`MotionConfig` its optional `motion` block. Both are pure data (no I/O), shared by the daemon
and the simulator.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_bridge._messages import AxisArgs, SetMotionArgs


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FirmwareSerialConfig(_Strict):
    """The framed serial link to the picker's motion controller (docs/firmware-protocol.md)."""

    type: Literal["firmware_serial"]
    port: str = Field(
        min_length=1, description="Serial device path (/dev/ttyACM0, a pseudo-terminal)."
    )
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = 115200
    parity: Literal["N", "E", "O"] = Field(
        default="N", description="The protocol has its own CRC; N unless the firmware says."
    )
    stopbits: Literal[1, 2] = 1
    timeout_s: float = Field(
        default=0.5,
        gt=0,
        le=30,
        description="How long to wait for a reply before retransmitting the request; while a "
        "motion runs, how often the host asks again whether it has finished.",
    )
    retries: int = Field(
        default=3, ge=0, le=10, description="Retransmissions of a request that got no reply."
    )
    heartbeat_timeout_s: float = Field(
        default=1.5,
        gt=0,
        le=60,
        description="Silence (no valid frame, heartbeats included) after which the controller "
        "counts as lost; the firmware sends a heartbeat at least every 250 ms.",
    )
    motion_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Longest one motion may run; past it the host stops it and reports a timeout.",
    )
    reconnect_initial_s: float = Field(
        default=0.5, gt=0, description="First reconnect delay; doubles per failure."
    )
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Cap of the reconnect delay.")

    @model_validator(mode="after")
    def _check(self) -> FirmwareSerialConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        if self.heartbeat_timeout_s <= 0.25:
            raise ValueError("heartbeat_timeout_s must exceed the 250 ms heartbeat period")
        return self


class AxisMotion(_Strict):
    """One gantry axis: trapezoidal velocity profile (PRODUCT.md motion model)."""

    v_mm_s: float = Field(gt=0, le=5000, description="Top speed, mm/s.")
    a_mm_s2: float = Field(gt=0, le=100_000, description="Acceleration, mm/s².")

    def to_args(self) -> AxisArgs:
        return AxisArgs(
            v_um_s=max(1, round(self.v_mm_s * 1000)), a_um_s2=max(1, round(self.a_mm_s2 * 1000))
        )


class MotionConfig(_Strict):
    """`motion`: the gantry's speeds and accelerations and the fixed per-tube times.

    Sent to the firmware with `set_motion` after every `hello`; the planner's motion model
    uses the same numbers.
    """

    x: AxisMotion = AxisMotion(v_mm_s=400.0, a_mm_s2=2000.0)
    y: AxisMotion = AxisMotion(v_mm_s=300.0, a_mm_s2=1500.0)
    pick_s: float = Field(default=1.2, ge=0, le=60, description="Lowering, gripping, raising.")
    place_s: float = Field(default=1.0, ge=0, le=60, description="Lowering, releasing, raising.")
    scan_s: float = Field(default=0.3, ge=0, le=60, description="Reading a barcode.")

    def to_args(self) -> SetMotionArgs:
        """The `set_motion` request's args (µm, ms)."""
        return SetMotionArgs(
            x=self.x.to_args(),
            y=self.y.to_args(),
            pick_ms=round(self.pick_s * 1000),
            place_ms=round(self.place_s * 1000),
            scan_ms=round(self.scan_s * 1000),
        )
