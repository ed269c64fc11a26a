"""Configuration of an LN2 controller's serial link and of its fill, as in `[devices.driver]`
and `[devices.fill]` of an `ln2_tank` device."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.ln2._codec import MAX_ADDRESS, MIN_ADDRESS

_SOCKET_URL = re.compile(r"^socket://(?P<host>[A-Za-z0-9_.\-\[\]:]+):(?P<port>\d{1,5})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ln2SerialConfig(_Strict):
    """An LN2 controller on a serial line (RS-485), or behind a serial-to-Ethernet adapter."""

    type: Literal["ln2_serial"]
    port: str = Field(
        min_length=1,
        description="Serial device path (/dev/ttyUSB0, a pseudo-terminal) or "
        "socket://host:port for a serial-over-TCP adapter.",
    )
    address: int = Field(
        ge=MIN_ADDRESS, le=MAX_ADDRESS, description="The controller's address on the line."
    )
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = Field(
        default="N", description="Parity (a pseudo-terminal only carries N)."
    )
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: float = Field(
        default=0.5, gt=0, le=30, description="Each exchange's own timeout, in seconds."
    )
    retries: int = Field(
        default=2, ge=0, le=5, description="Extra attempts for an exchange that failed."
    )
    gap_s: float = Field(
        default=0.01, ge=0, le=5, description="Silence kept on the line between two exchanges."
    )
    reconnect_initial_s: float = Field(
        default=0.5, gt=0, description="First reopen delay; doubles per failure."
    )
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Cap of the reopen delay.")

    @field_validator("port")
    @classmethod
    def _check_port(cls, value: str) -> str:
        if value.startswith("socket://"):
            match = _SOCKET_URL.match(value)
            if match is None or not 1 <= int(match["port"]) <= 65535:
                raise ValueError(f"'{value}' is not socket://host:port with a port 1..65535")
        elif "://" in value:
            raise ValueError(f"'{value}': only device paths and socket://host:port are supported")
        return value

    @model_validator(mode="after")
    def _check_backoff(self) -> Ln2SerialConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        return self

    @property
    def link_key(self) -> str:
        """Controllers with the same key share one line."""
        return self.port

    @property
    def line_settings(self) -> tuple[int, str, int, int, float]:
        """What every controller on one line must agree on."""
        return (self.baudrate, self.parity, self.stopbits, self.bytesize, self.gap_s)

    @property
    def exchange_budget_s(self) -> float:
        """Longest one exchange may take with its retries."""
        return (self.timeout_s + self.gap_s) * (self.retries + 1)


class FillSettings(_Strict):
    """`[devices.fill]`: the controller's automatic fill levels and the daemon's fill watch."""

    start_pct: float = Field(
        default=40.0, ge=0, lt=100, description="Level at which the controller starts a fill."
    )
    stop_pct: float = Field(
        default=80.0, gt=0, le=100, description="Level at which the controller stops a fill."
    )
    max_fill_s: float = Field(
        default=3600.0,
        gt=0,
        description="The daemon stops any fill that has run this long, whatever the "
        "controller does (and keeps stopping it).",
    )
    fill_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="A fill that has not raised the level by `min_rise_pct` within this time "
        "is a fill timeout (supply empty, valve stuck shut).",
    )
    min_rise_pct: float = Field(
        default=1.0, gt=0, le=50, description="Rise that shows a fill is working."
    )

    @model_validator(mode="after")
    def _check_levels(self) -> FillSettings:
        if self.stop_pct <= self.start_pct:
            raise ValueError(
                f"stop_pct ({self.stop_pct}) must be above start_pct ({self.start_pct})"
            )
        if self.fill_timeout_s >= self.max_fill_s:
            raise ValueError("fill_timeout_s must be below max_fill_s")
        return self
