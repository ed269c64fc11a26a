"""The cold store's timing: how long fetching a rack to the pick station, or returning it, takes.

Geometry (the `store` object of a `rack_batches` problem, see `docs/planner.md`): racks sit in a
carousel (tower) that rotates the shortest way to bring a rack's column to the lift, and at a
height (`level_mm`) the lift travels to. The lift hands racks to the pick station through the
store's port at `port_level_mm`. Rotation and lift travel each follow the same trapezoidal profile
as the gantry's axes (top speed, acceleration), and they run at once, so positioning takes the
larger of the two.

- fetch rack r: position the carousel and the lift at r (at once), extract it (`handle_s`), lift
  it to the port, hand it to the station (`transfer_s`); the lift waits at the port;
- return rack r: take it from the station (`transfer_s`, the lift first rises to the port) and
  lower it to r's level, while the carousel turns to r; insert it (`handle_s`); the lift waits at
  r's level, which is where the next operation starts.

Only rotation and lift travel depend on the order of operations; handling and transfers do not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controllerd.planner._motion import AxisLimits


def profile_time_s(distance: float, axis: AxisLimits) -> float:
    """Time to travel `distance` (sign ignored) on a trapezoidal profile (mm or degrees)."""
    d = abs(distance)
    v, a = axis.v_mm_s, axis.a_mm_s2
    if d >= v * v / a:
        return d / v + v / a
    return 2.0 * math.sqrt(d / a)


def angle_between_deg(a_deg: float, b_deg: float) -> float:
    """Shortest rotation between two carousel angles, in [0, 180]."""
    d = (b_deg - a_deg) % 360.0
    return min(d, 360.0 - d)


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreState:
    """Where the carousel and the lift are between operations."""

    angle_deg: float
    level_mm: float


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreTiming:
    """The store's kinematics and fixed times; every method returns seconds."""

    rotation: AxisLimits
    """Carousel top speed (deg/s, in the `v_mm_s` field) and acceleration (deg/s²)."""
    lift: AxisLimits
    port_level_mm: float
    handle_s: float
    transfer_s: float

    def rotate_s(self, a_deg: float, b_deg: float) -> float:
        """Carousel rotation between two angles, the shortest way."""
        return profile_time_s(angle_between_deg(a_deg, b_deg), self.rotation)

    def lift_s(self, a_mm: float, b_mm: float) -> float:
        """Lift travel between two heights."""
        return profile_time_s(b_mm - a_mm, self.lift)

    def fetch_s(self, state: StoreState, rack: StoreState) -> float:
        """Bring the rack at `rack` from the store, as the store is at `state`, to the station."""
        position = max(
            self.rotate_s(state.angle_deg, rack.angle_deg),
            self.lift_s(state.level_mm, rack.level_mm),
        )
        return (
            position
            + self.handle_s
            + self.lift_s(rack.level_mm, self.port_level_mm)
            + (self.transfer_s)
        )

    def after_fetch(self, rack: StoreState) -> StoreState:
        """Where the store is once a fetch ends: carousel at the rack, lift at the port."""
        return StoreState(angle_deg=rack.angle_deg, level_mm=self.port_level_mm)

    def return_s(self, state: StoreState, rack: StoreState) -> float:
        """Put the rack back at `rack` from the station, as the store is at `state`."""
        lift = (
            self.lift_s(state.level_mm, self.port_level_mm)
            + self.transfer_s
            + self.lift_s(self.port_level_mm, rack.level_mm)
        )
        return max(self.rotate_s(state.angle_deg, rack.angle_deg), lift) + self.handle_s
