"""Simulation hints in a room's config file: read by `simulators run`, ignored by the daemon.

They live beside the daemon's models so that one file describes a simulated room and
`controllerd check-config` validates every part of it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


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
