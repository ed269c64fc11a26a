"""Configuration of a Modbus link as it appears in a device's `[devices.driver]` block."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _LinkBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: int = Field(default=1, ge=0, le=247, description="Modbus unit (slave) id.")
    timeout_s: float = Field(
        default=1.0, gt=0, le=60, description="Each request's own timeout, in seconds."
    )
    retries: int = Field(
        default=1, ge=0, le=5, description="Extra attempts for a request that timed out."
    )
    reconnect_initial_s: float = Field(
        default=0.5, gt=0, description="First reconnect delay; doubles per failure."
    )
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Cap of the reconnect delay.")

    @model_validator(mode="after")
    def _check_backoff(self) -> _LinkBase:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        return self


class ModbusTcpConfig(_LinkBase):
    """Modbus TCP: one device (or gateway) per host and port."""

    type: Literal["modbus_tcp"]
    host: str = Field(min_length=1, description="Host name or IP address.")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port.")

    @property
    def link_key(self) -> str:
        """Devices with the same key share one connection (a gateway with several units)."""
        return f"tcp://{self.host}:{self.port}"


class ModbusRtuConfig(_LinkBase):
    """Modbus RTU on a serial line (RS-485): several unit ids may share one port."""

    type: Literal["modbus_rtu"]
    port: str = Field(
        min_length=1, description="Serial device path (/dev/ttyUSB0, a pseudo-terminal)."
    )
    unit_id: int = Field(default=1, ge=1, le=247, description="Modbus unit id on the line.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = Field(default="E", description="Modbus RTU default: even.")
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    inter_frame_gap_ms: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Silence kept between frames on the line; default 3.5 character times "
        "(at least 1.75 ms, as the Modbus serial spec asks above 19200 baud).",
    )

    @property
    def link_key(self) -> str:
        return f"serial://{self.port}"

    @property
    def line_settings(self) -> tuple[int, str, int, int]:
        """What every device on one port must agree on."""
        return (self.baudrate, self.parity, self.stopbits, self.bytesize)

    @property
    def gap_s(self) -> float:
        """The silence between frames, in seconds."""
        if self.inter_frame_gap_ms is not None:
            return self.inter_frame_gap_ms / 1000
        bits_per_char = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return max(3.5 * bits_per_char / self.baudrate, 0.00175)


ModbusLinkConfig = Annotated[ModbusTcpConfig | ModbusRtuConfig, Field(discriminator="type")]
