"""Thermal physics of the simulated freezers and probes."""

from __future__ import annotations

import itertools
import random

import pytest

from controllerd.sim_config import FreezerSimulation, ProbeSimulation
from simulators.physics import (
    ALARM_COMPRESSOR_FAULT,
    ALARM_DOOR_OPEN,
    ALARM_HIGH_TEMPERATURE,
    FreezerModel,
    ProbeModel,
)

AMBIENT_C = 22.0


def _freezer(seed: int = 1, **params: float) -> FreezerModel:
    return FreezerModel(
        params=FreezerSimulation(**params), ambient_c=AMBIENT_C, rng=random.Random(seed)
    )


def _run(model: FreezerModel, minutes: float) -> list[tuple[float, bool]]:
    trace = []
    for _ in range(int(minutes * 60)):
        model.step(1.0)
        trace.append((model.cabinet_c, model.compressor_on))
    return trace


def test_compressor_cycles_within_hysteresis() -> None:
    model = _freezer(setpoint_c=-80.0, hysteresis_c=3.0)
    trace = _run(model, 24 * 60)[6 * 60 * 60 :]  # after settling
    temps = [t for t, _ in trace]
    overshoot = 0.8 / 60 + 0.01  # one step of pull-down or leak
    assert min(temps) >= -81.5 - overshoot
    assert max(temps) <= -78.5 + overshoot
    switches = sum(1 for a, b in itertools.pairwise(trace) if a[1] != b[1])
    assert switches >= 4, "the compressor must cycle, not run flat out or stay off"


def test_pull_down_from_ambient_reaches_setpoint() -> None:
    model = _freezer(setpoint_c=-80.0, initial_c=22.0)
    _run(model, 4 * 60)
    assert model.cabinet_c < -78.0


def test_open_door_warms_fast_and_sets_its_alarm_bit() -> None:
    model = _freezer()
    model.door_open = True
    _run(model, 10)
    assert model.cabinet_c > -80.0 + 10
    assert model.alarm_bits & ALARM_DOOR_OPEN
    assert model.alarm_bits & ALARM_HIGH_TEMPERATURE


def test_compressor_fail_warms_toward_ambient() -> None:
    model = _freezer(initial_c=-79.0)
    model.compressor_failed = True
    trace = _run(model, 8 * 60)
    assert not any(on for _, on in trace)
    temps = [t for t, _ in trace]
    assert temps == sorted(temps)
    assert -60.0 < temps[-1] < AMBIENT_C
    assert model.alarm_bits & ALARM_COMPRESSOR_FAULT


def test_setpoint_change_and_refusal() -> None:
    model = _freezer()
    model.set_setpoint(-70.0)
    assert model.setpoint_c == -70.0
    with pytest.raises(ValueError, match="outside"):
        model.set_setpoint(5.0)


def test_deterministic_given_the_seed() -> None:
    def readings(seed: int) -> list[float]:
        freezer = _freezer(seed)
        probe = ProbeModel(
            params=ProbeSimulation(follows="f", noise_c=0.1),
            ambient_c=AMBIENT_C,
            source=freezer,
            rng=random.Random(seed),
        )
        out = []
        for _ in range(600):
            freezer.step(1.0)
            probe.step(1.0)
            out += [freezer.reading_c, probe.reading_c]
        return out

    assert readings(7) == readings(7)
    assert readings(7) != readings(8)


def test_probe_reads_its_freezer_with_offset_and_noise() -> None:
    freezer = _freezer(initial_c=-80.0)
    probe = ProbeModel(
        params=ProbeSimulation(follows="f", offset_c=0.4, noise_c=0.05),
        ambient_c=AMBIENT_C,
        source=freezer,
        rng=random.Random(3),
    )
    samples = []
    for _ in range(500):
        probe.step(1.0)
        samples.append(probe.reading_c - freezer.cabinet_c)
    mean = sum(samples) / len(samples)
    assert mean == pytest.approx(0.4, abs=0.02)
    assert len(set(samples)) > 400


def test_room_probe_reads_ambient() -> None:
    probe = ProbeModel(
        params=ProbeSimulation(noise_c=0.0, offset_c=-1.5),
        ambient_c=AMBIENT_C,
        source=None,
        rng=random.Random(1),
    )
    assert probe.reading_c == pytest.approx(20.5)
