"""The gantry motion model: how long a move takes.

Each axis follows a trapezoidal velocity profile with its own top speed `v` (mm/s) and
acceleration `a` (mm/s²): a distance `d` takes `d/v + v/a` when `d ≥ v²/a` (the axis reaches
top speed), else `2·sqrt(d/a)` (a triangular profile). Both axes move at once, so a move takes
the larger of the two axis times. This is the contract in PRODUCT.md ("Planner motion model").

The search kernels work on int32 time matrices in ticks of 0.1 ms (`TICKS_PER_S`); reported
costs are always recomputed in float64 seconds from the plan's order, never summed from ticks.
`reference_move_time_s` is a deliberately naive pure-Python version for tests to check against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TICKS_PER_S = 10_000
"""Time-matrix resolution: one tick is 0.1 ms."""

# Rows per block when filling a matrix: bounds the float64 temporaries to a few MB whatever n is.
_ROW_BLOCK = 256


@dataclass(frozen=True, kw_only=True, slots=True)
class AxisLimits:
    """Top speed and acceleration of one axis."""

    v_mm_s: float
    a_mm_s2: float


@dataclass(frozen=True, kw_only=True, slots=True)
class GantryMotion:
    """Both axes of the gantry."""

    x: AxisLimits
    y: AxisLimits


def axis_time_s(d_mm: NDArray[np.float64], axis: AxisLimits) -> NDArray[np.float64]:
    """Time for one axis to travel the distances `d_mm` (sign ignored), elementwise."""
    d = np.abs(d_mm)
    v, a = axis.v_mm_s, axis.a_mm_s2
    cruise = d / v + v / a
    triangle = 2.0 * np.sqrt(d / a)
    return np.where(d >= v * v / a, cruise, triangle)


def move_time_s(
    src: NDArray[np.float64], dst: NDArray[np.float64], motion: GantryMotion
) -> NDArray[np.float64]:
    """Move times between paired points `src[i] → dst[i]` (arrays of shape (m, 2))."""
    tx = axis_time_s(dst[..., 0] - src[..., 0], motion.x)
    ty = axis_time_s(dst[..., 1] - src[..., 1], motion.y)
    return np.maximum(tx, ty)


def time_matrix_ticks(
    src: NDArray[np.float64], dst: NDArray[np.float64], motion: GantryMotion
) -> NDArray[np.int32]:
    """Matrix `T[i, j]` = ticks to move from `src[i]` to `dst[j]`, rounded to the nearest tick."""
    m, k = src.shape[0], dst.shape[0]
    out = np.empty((m, k), dtype=np.int32)
    for lo in range(0, m, _ROW_BLOCK):
        hi = min(m, lo + _ROW_BLOCK)
        block = move_time_s(src[lo:hi, None, :], dst[None, :, :], motion)
        out[lo:hi] = np.rint(block * TICKS_PER_S).astype(np.int32)
    return out


def path_time_s(points: NDArray[np.float64], motion: GantryMotion) -> float:
    """Total move time along consecutive points (shape (m, 2)), in seconds."""
    if points.shape[0] < 2:
        return 0.0
    return float(move_time_s(points[:-1], points[1:], motion).sum())


def reference_move_time_s(
    p: tuple[float, float], q: tuple[float, float], motion: GantryMotion
) -> float:
    """One move, in plain Python: the independent check for tests (no numpy, no ticks)."""

    def one_axis(d: float, axis: AxisLimits) -> float:
        d = abs(d)
        if d >= axis.v_mm_s**2 / axis.a_mm_s2:
            return d / axis.v_mm_s + axis.v_mm_s / axis.a_mm_s2
        return 2.0 * math.sqrt(d / axis.a_mm_s2)

    return max(one_axis(q[0] - p[0], motion.x), one_axis(q[1] - p[1], motion.y))
