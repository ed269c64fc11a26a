"""Physics of an LN2 tank and its controller's fill logic, on simulated time.

The level falls at a static boil-off rate (`lid_open_factor` times faster with the lid open);
the controller starts a fill at its start level (or on `FILLSTART`), vents hot gas through the
bypass for `bypass_s`, then liquid raises the level at the supply's rate until the stop level
(or `FILLSTOP`). Vapour temperature A (top) follows the level (colder when fuller) and warms
toward the room with the lid open; temperature B (bottom) sits near the liquid.

Faults it models: `supply_empty` (a fill raises nothing), `valve_stuck` (the valve stays open:
the fill never stops, FILLSTOP is acknowledged and changes nothing; the level rises to 100 %,
the excess vents), `lid_open`. Not modelled: pressure, liquid-phase temperature, the sensor's
lag, ambient drift, two-phase flow at the start of a fill.
"""

from __future__ import annotations

import random

from controllerd.sim_config import Ln2Simulation

LN2_BOILING_C = -195.8
#: Temperature A with the tank full and empty (lid closed), °C.
_TEMP_A_FULL_C, _TEMP_A_EMPTY_C = -190.0, -140.0
_TEMP_TAU_S = 300.0
_LID_TAU_S = 900.0
#: Alarm bits (drivers.ln2.ALARM_BITS).
_LOW, _HIGH, _TEMP_HIGH, _LID, _TC_OPEN = 1, 2, 4, 8, 16
#: The controller's own alarm levels, relative to its fill levels.
_LOW_BELOW_START_PCT, _HIGH_ABOVE_STOP_PCT = 10.0, 5.0
_TEMP_A_HIGH_C = -150.0


class TankModel:
    """One tank; `step(dt_s)` advances it. Attributes are the inspectable state."""

    def __init__(
        self,
        *,
        params: Ln2Simulation,
        ambient_c: float,
        rng: random.Random,
        start_pct: float = 40.0,
        stop_pct: float = 80.0,
    ) -> None:
        self.params = params
        self.ambient_c = ambient_c
        self._rng = rng
        self.level_pct = params.initial_level_pct
        self.start_pct = start_pct
        self.stop_pct = stop_pct
        self.filling = False
        self.fill_elapsed_s = 0.0
        self.lid_open = False
        self.supply_empty = False
        self.valve_stuck = False
        self.thermocouple_open = False
        self.temperature_a_c = self._temp_a_target()
        self.temperature_b_c = LN2_BOILING_C + 0.5
        #: Simulated seconds since start and how many fills ran (for tests and status).
        self.time_s = 0.0
        self.fills = 0

    @property
    def boil_off_pct_per_s(self) -> float:
        factor = self.params.lid_open_factor if self.lid_open else 1.0
        return self.params.boil_off_pct_per_day / 86400.0 * factor

    @property
    def bypass_open(self) -> bool:
        return self.filling and self.fill_elapsed_s < self.params.bypass_s

    @property
    def level_mm(self) -> float:
        return self.level_pct / 100.0 * self.params.capacity_mm

    def level_reading_pct(self) -> float:
        """What the level sensor reads: the level plus noise, within 0..100."""
        noisy = self.level_pct + self._rng.gauss(0.0, self.params.level_noise_pct)
        return min(max(noisy, 0.0), 100.0)

    def hours_to_low(self, low_pct: float) -> float:
        """The true time until the level falls to `low_pct` at the present boil-off rate."""
        return max(self.level_pct - low_pct, 0.0) / self.boil_off_pct_per_s / 3600.0

    def start_fill(self) -> None:
        if not self.filling:
            self.filling = True
            self.fill_elapsed_s = 0.0
            self.fills += 1

    def stop_fill(self) -> None:
        """Close the valve, unless it is stuck open."""
        if not self.valve_stuck:
            self.filling = False
            self.fill_elapsed_s = 0.0

    def set_fill_levels(self, start_pct: float, stop_pct: float) -> None:
        if not 0 <= start_pct < stop_pct <= 100:
            raise ValueError(f"need 0 <= start < stop <= 100, got {start_pct}, {stop_pct}")
        self.start_pct, self.stop_pct = start_pct, stop_pct

    def alarm_bits(self) -> int:
        bits = 0
        if self.level_pct < self.start_pct - _LOW_BELOW_START_PCT:
            bits |= _LOW
        if self.level_pct > self.stop_pct + _HIGH_ABOVE_STOP_PCT:
            bits |= _HIGH
        if self.temperature_a_c > _TEMP_A_HIGH_C and not self.thermocouple_open:
            bits |= _TEMP_HIGH
        if self.lid_open:
            bits |= _LID
        if self.thermocouple_open:
            bits |= _TC_OPEN
        return bits

    def _temp_a_target(self) -> float:
        return _TEMP_A_EMPTY_C + (_TEMP_A_FULL_C - _TEMP_A_EMPTY_C) * self.level_pct / 100.0

    def step(self, dt_s: float) -> None:
        """Advance `dt_s` simulated seconds."""
        self.time_s += dt_s
        if not self.filling and self.level_pct <= self.start_pct:
            self.start_fill()
        if self.filling:
            self.fill_elapsed_s += dt_s
            if not self.bypass_open and not self.supply_empty:
                rate = self.params.fill_rate_pct_per_min / 60.0
                self.level_pct = min(self.level_pct + rate * dt_s, 100.0)
            if self.level_pct >= self.stop_pct:
                self.stop_fill()
        self.level_pct = max(self.level_pct - self.boil_off_pct_per_s * dt_s, 0.0)
        target = self._temp_a_target()
        self.temperature_a_c += (target - self.temperature_a_c) * min(dt_s / _TEMP_TAU_S, 1.0)
        if self.lid_open:
            pull = min(dt_s / _LID_TAU_S, 1.0)
            self.temperature_a_c += (self.ambient_c - self.temperature_a_c) * pull
