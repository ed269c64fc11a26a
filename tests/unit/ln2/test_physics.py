"""The simulated tank: boil-off, fills, and its faults."""

from __future__ import annotations

import random

import pytest

from controllerd.sim_config import Ln2Simulation
from simulators.ln2 import TankModel


def _tank(**params: float) -> TankModel:
    return TankModel(
        params=Ln2Simulation.model_validate(params),
        ambient_c=22.0,
        rng=random.Random(1),
        start_pct=40.0,
        stop_pct=80.0,
    )


def _run(model: TankModel, seconds: int) -> None:
    for _ in range(seconds):
        model.step(1.0)


def test_static_boil_off_and_the_lid() -> None:
    model = _tank(initial_level_pct=70, boil_off_pct_per_day=4, lid_open_factor=10)
    _run(model, 86400)
    assert model.level_pct == pytest.approx(66.0, abs=1e-6)
    assert model.hours_to_low(30.0) == pytest.approx(36.0 / 4 * 24)
    model.lid_open = True
    _run(model, 8640)
    assert model.level_pct == pytest.approx(62.0, abs=1e-6)


def test_fill_vents_then_rises_and_stops_at_the_stop_level() -> None:
    model = _tank(initial_level_pct=70, bypass_s=30, fill_rate_pct_per_min=1)
    model.start_fill()
    _run(model, 29)
    assert model.bypass_open and model.level_pct < 70.0
    _run(model, 11 * 60)
    assert not model.filling
    assert 80.0 <= model.level_pct < 80.1


def test_auto_fill_at_the_start_level() -> None:
    model = _tank(initial_level_pct=40.01)
    _run(model, 600)
    assert model.fills == 1


def test_supply_empty_and_stuck_valve() -> None:
    model = _tank(initial_level_pct=70)
    model.supply_empty = True
    model.start_fill()
    _run(model, 600)
    assert model.filling and model.level_pct < 70.0
    model.supply_empty = False
    model.valve_stuck = True
    _run(model, 2400)
    model.stop_fill()
    assert model.filling and model.level_pct == pytest.approx(100.0, abs=0.01)


def test_vapour_temperature_follows_the_level_and_the_lid() -> None:
    full, low = _tank(initial_level_pct=90), _tank(initial_level_pct=20)
    _run(full, 60)
    _run(low, 60)
    assert full.temperature_a_c < low.temperature_a_c < -100
    low.lid_open = True
    _run(low, 1800)
    assert low.alarm_bits() & 0b1100 == 0b1100  # temperature A high, lid open
