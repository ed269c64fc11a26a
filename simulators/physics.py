"""Thermal physics of the simulated room: ULT freezer cabinets and the probes that read them.

Pure and deterministic: models advance only when `step(dt_s)` is called with simulated seconds,
and every random draw comes from a `random.Random` the caller seeds.

Modelled
  * Freezer cabinet: one lumped temperature relaxing exponentially toward ambient with time
    constant `leak_tau_min`, or `door_tau_min` while the door is open.
  * Compressor: a thermostat with hysteresis; it switches on when the cabinet reaches
    `setpoint + hysteresis/2` and off at `setpoint - hysteresis/2`. While running it pulls the
    cabinet down at `cooling_c_per_min`. A failed compressor or a power failure stops it.
  * The cabinet sensor: the cabinet plus gaussian noise `noise_c`, sampled once per step.
  * Alarm bits a freezer controller reports (see `FreezerModel.alarm_bits`).
  * Probe: reads its freezer's cabinet (or the room's ambient) plus `offset_c` plus gaussian
    noise of standard deviation `noise_c`, sampled once per step.

Not modelled: the thermal mass of the load, the compressor's start delay or minimum off time,
defrost, humidity, ice on the door seal, probe lag, ambient drift, or heat the room gains from
the freezers.
"""

from __future__ import annotations

import math
import random

from controllerd.sim_config import FreezerSimulation, ProbeSimulation

#: `alarm_bits` bit 0: the cabinet is more than this above the setpoint.
HIGH_TEMPERATURE_MARGIN_C = 10.0
ALARM_HIGH_TEMPERATURE = 1 << 0
ALARM_DOOR_OPEN = 1 << 1
ALARM_COMPRESSOR_FAULT = 1 << 2
ALARM_POWER_FAIL = 1 << 3


class FreezerModel:
    """A ULT freezer cabinet, its thermostat and compressor.

    Inputs the fault layer sets: `door_open`, `compressor_failed`, `power_failed`.
    `cabinet_c` is the true temperature; `reading_c` what its sensor reports.
    """

    def __init__(self, *, params: FreezerSimulation, ambient_c: float, rng: random.Random) -> None:
        self.params = params
        self._rng = rng
        self.ambient_c = ambient_c
        self.setpoint_c = params.setpoint_c
        self.cabinet_c = params.initial_c if params.initial_c is not None else params.setpoint_c
        self.door_open = False
        self.compressor_failed = False
        self.power_failed = False
        # The thermostat's demand survives a compressor failure: it is what the controller asks.
        self._demand = self.cabinet_c > self.setpoint_c
        self.reading_c = self._sample()

    def _sample(self) -> float:
        noise = self._rng.gauss(0.0, self.params.noise_c) if self.params.noise_c > 0 else 0.0
        return self.cabinet_c + noise

    @property
    def compressor_on(self) -> bool:
        """The compressor is running (the thermostat asks and nothing stops it)."""
        return self._demand and not self.compressor_failed and not self.power_failed

    @property
    def alarm_bits(self) -> int:
        """Bit 0 high temperature (cabinet > setpoint + 10 °C), bit 1 door open, bit 2
        compressor fault, bit 3 power fail."""
        bits = 0
        if self.cabinet_c > self.setpoint_c + HIGH_TEMPERATURE_MARGIN_C:
            bits |= ALARM_HIGH_TEMPERATURE
        if self.door_open:
            bits |= ALARM_DOOR_OPEN
        if self.compressor_failed:
            bits |= ALARM_COMPRESSOR_FAULT
        if self.power_failed:
            bits |= ALARM_POWER_FAIL
        return bits

    def set_setpoint(self, setpoint_c: float) -> None:
        """Change the setpoint (ValueError outside what the config allows: -150..0 °C)."""
        if not (math.isfinite(setpoint_c) and -150.0 <= setpoint_c <= 0.0):
            raise ValueError(f"setpoint {setpoint_c} °C is outside -150..0 °C")
        self.setpoint_c = setpoint_c

    def step(self, dt_s: float) -> None:
        """Advance the cabinet by `dt_s` simulated seconds."""
        half_band = self.params.hysteresis_c / 2
        if self.cabinet_c >= self.setpoint_c + half_band:
            self._demand = True
        elif self.cabinet_c <= self.setpoint_c - half_band:
            self._demand = False
        tau_min = self.params.door_tau_min if self.door_open else self.params.leak_tau_min
        decay = math.exp(-dt_s / (tau_min * 60.0))
        self.cabinet_c = self.ambient_c + (self.cabinet_c - self.ambient_c) * decay
        if self.compressor_on:
            self.cabinet_c -= self.params.cooling_c_per_min * dt_s / 60.0
        self.reading_c = self._sample()


class ProbeModel:
    """A temperature probe in a freezer's cabinet (`source`) or in the room (`source` None)."""

    def __init__(
        self,
        *,
        params: ProbeSimulation,
        ambient_c: float,
        source: FreezerModel | None,
        rng: random.Random,
    ) -> None:
        self.params = params
        self.ambient_c = ambient_c
        self.source = source
        self._rng = rng
        self.reading_c = self._sample()

    @property
    def true_c(self) -> float:
        """The temperature where the probe sits, without calibration error or noise."""
        return self.source.cabinet_c if self.source is not None else self.ambient_c

    def _sample(self) -> float:
        noise = self._rng.gauss(0.0, self.params.noise_c) if self.params.noise_c > 0 else 0.0
        return self.true_c + self.params.offset_c + noise

    def step(self, dt_s: float) -> None:
        """Take a new reading (the probe has no thermal lag, so `dt_s` only marks the step)."""
        del dt_s
        self.reading_c = self._sample()
