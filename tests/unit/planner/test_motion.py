"""The motion model against hand-computed values and its plain-Python twin."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controllerd.planner import (
    AxisLimits,
    GantryMotion,
    move_time_s,
    reference_move_time_s,
    time_matrix_ticks,
)

MOTION = GantryMotion(
    x=AxisLimits(v_mm_s=800.0, a_mm_s2=4000.0), y=AxisLimits(v_mm_s=400.0, a_mm_s2=4000.0)
)


@pytest.mark.parametrize(
    ("dx", "dy", "expected"),
    [
        (9.0, 0.0, 2 * math.sqrt(9 / 4000)),  # short: triangular profile
        (200.0, 0.0, 200 / 800 + 800 / 4000),  # x reaches top speed (v²/a = 160 mm)
        (0.0, 100.0, 100 / 400 + 400 / 4000),  # y is slower: v²/a = 40 mm
        (200.0, 100.0, max(0.45, 0.35)),  # both axes at once: the slower one counts
        (-160.0, 0.0, 160 / 800 + 800 / 4000),  # exactly at the switch point, sign ignored
    ],
)
def test_move_time_matches_hand_computation(dx: float, dy: float, expected: float) -> None:
    src = np.array([[10.0, 20.0]])
    dst = src + np.array([[dx, dy]])
    assert move_time_s(src, dst, MOTION)[0] == pytest.approx(expected, rel=1e-12)
    assert reference_move_time_s((10.0, 20.0), (10.0 + dx, 20.0 + dy), MOTION) == pytest.approx(
        expected, rel=1e-12
    )


def test_profile_is_continuous_at_the_switch_point() -> None:
    v, a = 800.0, 4000.0
    d = v * v / a
    assert 2 * math.sqrt(d / a) == pytest.approx(d / v + v / a)


def test_tick_matrix_rounds_to_tenths_of_milliseconds() -> None:
    rng = np.random.default_rng(3)
    pts = rng.random((40, 2)) * 500
    ticks = time_matrix_ticks(pts, pts, MOTION)
    assert ticks.dtype == np.int32
    for i, j in [(0, 1), (5, 30), (39, 2)]:
        exact = reference_move_time_s(tuple(pts[i]), tuple(pts[j]), MOTION)
        assert abs(ticks[i, j] - exact * 1e4) <= 0.5
    assert (ticks == ticks.T).all()
