"""The gantry's trapezoidal velocity profile (PRODUCT.md motion model), per axis.

An axis with top speed `v` and acceleration `a` covers a distance `d` in `d/v + v/a` when
`d ≥ v²/a` (it reaches top speed), else in `2·sqrt(d/a)` (a triangular profile); both axes
start together, so a move takes the longer of the two. `axis_travelled_mm` gives the distance
covered after `t` seconds, which is where a stopped or jammed move leaves the gantry.
"""

from __future__ import annotations

import math


def axis_time_s(d_mm: float, v_mm_s: float, a_mm_s2: float) -> float:
    """Seconds one axis needs to travel `d_mm` (sign ignored)."""
    d = abs(d_mm)
    if d >= v_mm_s * v_mm_s / a_mm_s2:
        return d / v_mm_s + v_mm_s / a_mm_s2
    return 2.0 * math.sqrt(d / a_mm_s2)


def axis_travelled_mm(d_mm: float, v_mm_s: float, a_mm_s2: float, t_s: float) -> float:
    """Signed distance covered `t_s` seconds into a move of `d_mm`."""
    d = abs(d_mm)
    total = axis_time_s(d, v_mm_s, a_mm_s2)
    if t_s >= total:
        return d_mm
    if t_s <= 0:
        return 0.0
    peak_v = min(v_mm_s, math.sqrt(d * a_mm_s2))
    t_acc = peak_v / a_mm_s2
    if t_s < t_acc:
        covered = 0.5 * a_mm_s2 * t_s * t_s
    elif t_s <= total - t_acc:
        covered = 0.5 * a_mm_s2 * t_acc * t_acc + peak_v * (t_s - t_acc)
    else:
        left = total - t_s
        covered = d - 0.5 * a_mm_s2 * left * left
    return math.copysign(min(covered, d), d_mm)
