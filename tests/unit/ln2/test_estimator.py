"""BoilOffEstimator: the boil-off rate from level history, across fills."""

from __future__ import annotations

import random

import pytest

from controllerd.ln2 import BoilOffEstimator

HOUR = 3600.0


def test_no_rate_until_enough_history() -> None:
    est = BoilOffEstimator(window_s=6 * HOUR, min_span_s=HOUR)
    est.add(0.0, 70.0)
    est.add(0.5 * HOUR, 69.9)
    assert est.rate_pct_per_h() is None
    assert est.hours_to(69.9, 30.0) is None
    est.add(1.0 * HOUR, 69.8)
    assert est.rate_pct_per_h() == pytest.approx(0.2)


def test_noisy_linear_fall_gives_the_rate_and_hours_to_low() -> None:
    rng = random.Random(3)
    est = BoilOffEstimator(window_s=6 * HOUR)
    rate = 4.0 / 24  # % per hour
    for minute in range(0, 12 * 60, 2):
        t = minute * 60.0
        est.add(t, round(80.0 - rate * t / HOUR + rng.gauss(0, 0.03), 1))
    measured = est.rate_pct_per_h()
    assert measured is not None and measured == pytest.approx(rate, rel=0.05)
    level = 80.0 - rate * 12
    hours = est.hours_to(level, 30.0)
    assert hours is not None and hours == pytest.approx((level - 30.0) / rate, rel=0.05)


def test_fills_start_new_segments_and_do_not_bend_the_rate() -> None:
    est = BoilOffEstimator(window_s=24 * HOUR)
    level = 50.0
    for hour in range(24):
        if hour in (8, 16):
            level += 30.0  # a fill: a jump the estimator must not read as a rise
            est.interrupt()
        for quarter in range(4):
            t = (hour + quarter / 4) * HOUR
            est.add(t, level - 0.25 * quarter * 0.5)
        level -= 0.5
    assert est.rate_pct_per_h() == pytest.approx(0.5, rel=1e-6)


def test_old_samples_leave_the_window() -> None:
    est = BoilOffEstimator(window_s=2 * HOUR, min_span_s=HOUR)
    for minute in range(0, 240, 5):  # fast fall for 4 h ...
        est.add(minute * 60.0, 90.0 - minute / 60.0)
    for minute in range(240, 480, 5):  # ... then slow: only the last 2 h count
        est.add(minute * 60.0, 86.0 - (minute - 240) / 600.0)
    assert est.rate_pct_per_h() == pytest.approx(0.1, rel=1e-6)


def test_rising_level_and_low_level() -> None:
    est = BoilOffEstimator(window_s=6 * HOUR, min_span_s=HOUR)
    for minute in range(0, 180, 10):
        est.add(minute * 60.0, 50.0 + minute / 100)
    assert est.hours_to(52.0, 30.0) is None  # not falling: no estimate
    assert est.hours_to(29.0, 30.0) == 0.0
