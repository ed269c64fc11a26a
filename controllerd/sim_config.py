"""Simulation hints in a room's config file: read by `simulators run`, ignored by the daemon.

They live beside the daemon's models so that one file describes a simulated room and
`controllerd check-config` validates every part of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatorSection(_Strict):
    """`[simulator]`: how `simulators run` serves the room."""

    control_socket: Path = Field(
        description="Unix socket of the running simulator's control endpoint "
        "(`simulators inject` talks to it)."
    )
    speed: float = Field(default=1.0, gt=0, le=1000, description="Simulated seconds per second.")
    ambient_c: float = Field(default=22.0, ge=-40, le=60, description="Room temperature.")
    seed: int = Field(default=1, description="Seed of every random process (noise, faults).")
    scenario: Path | None = Field(
        default=None,
        description="Fault scenario file (relative to the config file): faults on a schedule.",
    )


class FreezerSimulation(_Strict):
    """Thermal model of a ULT freezer cabinet (see simulators/physics docstring)."""

    setpoint_c: float = Field(default=-80.0, ge=-150, le=0, description="Initial setpoint.")
    initial_c: float | None = Field(
        default=None,
        ge=-150,
        le=60,
        description="Cabinet temperature at start; the setpoint when unset.",
    )
    hysteresis_c: float = Field(default=3.0, gt=0, le=20, description="Compressor on/off band.")
    cooling_c_per_min: float = Field(
        default=0.8, gt=0, description="Pull-down of the running compressor."
    )
    leak_tau_min: float = Field(
        default=900.0, gt=0, description="Time constant of the cabinet warming toward ambient."
    )
    door_tau_min: float = Field(
        default=15.0, gt=0, description="Time constant toward ambient while the door is open."
    )
    noise_c: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description="Standard deviation of the cabinet sensor's noise "
        "(a real reading is never bit-for-bit constant; the thermostat sees the true cabinet).",
    )


class ProbeSimulation(_Strict):
    """A temperature probe: reads a freezer's cabinet (or the room) with noise."""

    follows: str | None = Field(
        default=None,
        description="Id of the simulated freezer whose cabinet the probe sits in; "
        "the room when unset.",
    )
    offset_c: float = Field(default=0.0, ge=-20, le=20, description="Probe's calibration error.")
    noise_c: float = Field(default=0.05, ge=0, le=5, description="Standard deviation of noise.")


class PickerSimulation(_Strict):
    """The tube picker's motion controller (see simulators/picker docstring)."""

    protocol_version: int = Field(
        default=1,
        ge=1,
        le=255,
        description="Protocol version the simulated firmware speaks (another one shows the "
        "host refusing an incompatible firmware at hello).",
    )
    heartbeat_ms: int = Field(
        default=200, ge=10, le=250, description="Heartbeat period, real milliseconds."
    )
    fault_rate: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="With the `drop` / `corrupt` faults: the share of frames lost or bit-flipped.",
    )
    travel_x_mm: float = Field(default=700.0, gt=0, le=5000, description="X travel.")
    travel_y_mm: float = Field(default=200.0, gt=0, le=5000, description="Y travel.")


class Ln2Simulation(_Strict):
    """An LN2 tank and its controller (see simulators/ln2 docstring)."""

    capacity_mm: float = Field(default=600.0, gt=0, le=5000, description="Level at 100 %.")
    initial_level_pct: float = Field(default=70.0, ge=0, le=100, description="Level at start.")
    boil_off_pct_per_day: float = Field(
        default=4.0, gt=0, le=100, description="Static boil-off with the lid closed."
    )
    lid_open_factor: float = Field(
        default=10.0, ge=1, le=1000, description="Boil-off multiplier while the lid is open."
    )
    fill_rate_pct_per_min: float = Field(
        default=1.0, gt=0, le=100, description="Level rise while liquid flows in a fill."
    )
    bypass_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Hot-gas bypass at the start of a fill, before liquid flows.",
    )
    level_noise_pct: float = Field(
        default=0.03, ge=0, le=5, description="Standard deviation of the level sensor's noise."
    )
    line_noise_rate: float = Field(
        default=0.01,
        ge=0,
        le=0.5,
        description="With the `noise` fault: fraction of the bytes heard and sent that are "
        "dropped, replaced or preceded by a random byte.",
    )
    firmware: str = Field(
        default="TEC3K-SIM 1.0", pattern=r"^[\x21-\x7e][\x20-\x7e]{0,31}$", description="VER?"
    )


class StoreSecuritySimulation(_Strict):
    """The simulated store's OPC UA security: only these certificates (and users) get in."""

    certificate: Path = Field(description="The server's certificate (PEM or DER).")
    private_key: Path = Field(description="The server's private key (PEM).")
    trusted_certificates: tuple[Path, ...] = Field(
        min_length=1, description="Client certificates the server accepts; any other is refused."
    )
    modes: tuple[Literal["Sign", "SignAndEncrypt"], ...] = Field(
        default=("Sign", "SignAndEncrypt"),
        min_length=1,
        description="Basic256Sha256 modes offered (no unsecured endpoint once security is on).",
    )
    username: str | None = Field(default=None, description="Required user, if any.")
    password_file: Path | None = Field(default=None, description="That user's password file.")


class StoreSimulation(_Strict):
    """A robotic -80 °C tube store (see simulators/store): rack hotel, robot, chambers."""

    towers: int = Field(default=4, ge=1, le=24, description="Towers on the carousel.")
    shelves: int = Field(default=10, ge=1, le=60, description="Shelves per tower.")
    racks: int = Field(default=30, ge=1, description="Racks in the hotel at start (seeded).")
    tube_fill: float = Field(
        default=0.75, ge=0, le=1, description="Share of rack positions holding a tube."
    )
    rotation_deg_per_s: float = Field(
        default=30.0, gt=0, description="Carousel rotation speed (towers are evenly spaced)."
    )
    shelf_pitch_mm: float = Field(default=75.0, gt=0, description="Height between shelves.")
    lift_mm_per_s: float = Field(default=150.0, gt=0, description="Lift travel speed.")
    handling_s: float = Field(
        default=6.0, ge=0, description="Grip, transfer and release time of one rack move."
    )
    scan_s: float = Field(default=8.0, ge=0, description="Reading a rack's tube barcodes.")
    chamber_setpoint_c: float = Field(default=-80.0, ge=-100, le=0)
    pick_chamber_setpoint_c: float = Field(default=-20.0, ge=-60, le=10)
    cool_tau_min: float = Field(
        default=5.0, gt=0, description="Time constant toward a setpoint while cooling works."
    )
    door_tau_min: float = Field(
        default=10.0,
        gt=0,
        description="Time constant of the pick chamber toward the room "
        "while the door is open (the -80 chamber: ten times slower).",
    )
    warm_tau_min: float = Field(
        default=60.0, gt=0, description="Time constant toward the room with failed refrigeration."
    )
    noise_c: float = Field(default=0.05, ge=0, le=5, description="Sensor noise (std. dev.).")
    security: StoreSecuritySimulation | None = Field(
        default=None, description="Secure endpoints only, with these certificates."
    )

    @model_validator(mode="after")
    def _check_racks(self) -> StoreSimulation:
        if self.racks > self.towers * self.shelves:
            raise ValueError(
                f"racks: {self.racks} racks do not fit {self.towers} towers x "
                f"{self.shelves} shelves"
            )
        return self
