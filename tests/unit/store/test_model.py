"""The simulated store's pure model: geometry, the state machine, refusals, thermal physics."""

from __future__ import annotations

import random

import pytest

from controllerd.sim_config import StoreSimulation
from drivers.opcua_model import POSITIONS, FaultCode, StoreState
from simulators._station import default_station
from simulators.store import StoreModel, StoreRejected, seed_racks


def _model(**params: float) -> StoreModel:
    return StoreModel(
        params=StoreSimulation(towers=4, shelves=6, racks=10, **params),  # type: ignore[arg-type]
        ambient_c=22.0,
        station=default_station(),
        rng=random.Random(3),
    )


def _run(model: StoreModel, seconds: float) -> None:
    for _ in range(round(seconds / 0.1)):
        model.step(0.1)


def test_seeding_is_reproducible_with_unique_barcodes() -> None:
    params = StoreSimulation(towers=3, shelves=5, racks=12, tube_fill=0.9)
    first = seed_racks(params, random.Random(9))
    again = seed_racks(params, random.Random(9))
    assert {k: v[2].tubes for k, v in first.items()} == {k: v[2].tubes for k, v in again.items()}
    codes = [code for _, _, rack in first.values() for code in rack.tubes.values() if code]
    assert len(codes) == len(set(codes)) > 0.8 * 12 * len(POSITIONS)
    assert len({(t, s) for t, s, _ in first.values()}) == 12


def test_move_time_is_rotation_plus_lift_both_ways_plus_handling() -> None:
    model = _model(rotation_deg_per_s=30.0, shelf_pitch_mm=75.0, lift_mm_per_s=150.0)
    rack = next(r for r, (tower, shelf) in model.home.items() if tower == 3 and shelf > 1)
    _tower, shelf = model.home[rack]
    # from tower 1 to tower 3 of 4: two 90° steps at 30°/s
    expected = 2 * 90 / 30 + 2 * (shelf - 1) * 75 / 150 + 6.0
    assert model.move_s(rack) == pytest.approx(expected)
    op_id, duration = model.retrieve(rack, "P2")
    assert (op_id, duration) == (1, pytest.approx(expected))
    assert model.state is StoreState.BUSY
    _run(model, expected + 0.2)
    assert model.station.racks["P2"] is model.racks[rack]
    assert model.completed.status == "Good" and model.completed.duration_s == pytest.approx(
        expected
    )
    assert model.carousel_tower == 3
    # Storing it back starts from tower 3: no rotation.
    _, back = model.store(rack)
    assert back == pytest.approx(2 * (shelf - 1) * 75 / 150 + 6.0)
    assert model.station.racks["P2"] is None


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda m: m.retrieve("R9999", "P1"), "BadNotFound"),
        (lambda m: m.retrieve("R0001", "P9"), "BadInvalidArgument"),
        (lambda m: m.retrieve("R0001", "OUT"), "BadInvalidArgument"),
        (lambda m: m.store("R0001"), "BadInvalidState"),
        (lambda m: m.scan("nope"), "BadNotFound"),
    ],
)
def test_bad_calls_are_refused_and_change_nothing(call: object, status: str) -> None:
    model = _model()
    before = model.snapshot()
    with pytest.raises(StoreRejected) as refused:
        call(model)  # type: ignore[operator]
    assert refused.value.status == status
    assert model.last_rejection == refused.value.message
    assert model.snapshot() == before


def test_occupied_port_and_busy_store_are_refused() -> None:
    model = _model()
    model.retrieve("R0001", "P1")
    with pytest.raises(StoreRejected, match="Busy") as busy:
        model.retrieve("R0002", "P2")
    assert busy.value.status == "BadResourceUnavailable"
    _run(model, 120)
    before = model.snapshot()
    with pytest.raises(StoreRejected, match="port P1 holds rack R0001"):
        model.retrieve("R0002", "P1")
    assert model.snapshot() == before


def test_robot_jam_fails_the_operation_until_cleared_and_reset() -> None:
    model = _model()
    model.retrieve("R0003", "P1")
    model.set_fault("robot_jam", True)
    model.step(0.1)
    assert model.state is StoreState.FAULTED and model.fault_code is FaultCode.ROBOT_JAM
    assert model.completed.status == "BadDeviceFailure"
    assert model.station.racks["P1"] is None
    with pytest.raises(StoreRejected, match="Faulted"):
        model.retrieve("R0004", "P2")
    with pytest.raises(StoreRejected, match="still jammed"):
        model.reset()
    model.set_fault("robot_jam", False)
    model.reset()
    assert model.state is StoreState.IDLE and model.location["R0003"] == "store"


def test_open_door_pauses_the_robot_and_refuses_methods() -> None:
    model = _model()
    _, duration = model.retrieve("R0001", "P1")
    model.set_fault("door_open", True)
    assert model.state is StoreState.MAINTENANCE
    _run(model, duration + 5)
    assert model.station.racks["P1"] is None  # paused
    with pytest.raises(StoreRejected, match="door"):
        model.scan("R0002")
    model.set_fault("door_open", False)
    _run(model, duration + 1)
    assert model.station.racks["P1"] is not None


def test_scan_shows_what_the_picker_changed() -> None:
    model = _model()
    _run(model, 1)
    model.retrieve("R0001", "P1")
    _run(model, 60)
    rack = model.station.racks["P1"]
    assert rack is not None
    position = next(p for p, code in rack.tubes.items() if code)
    rack.tubes[position] = None  # the picker took the tube
    assert model.scanned["R0001"][position] is not None
    model.scan("R0001")
    _run(model, 60)
    assert model.scanned["R0001"][position] is None


def test_failed_refrigeration_and_open_door_warm_the_chambers() -> None:
    model = _model(noise_c=0.0)
    _run(model, 60)
    assert model.chamber_c == pytest.approx(-80.0) and model.pick_chamber_c == pytest.approx(-20)
    model.set_fault("chamber_warm", True)
    _run(model, 600)
    assert model.chamber_c > -70.0
    model.set_fault("chamber_warm", False)
    model.set_fault("door_open", True)
    pick_before = model.pick_chamber_c
    _run(model, 600)
    assert model.pick_chamber_c > pick_before
