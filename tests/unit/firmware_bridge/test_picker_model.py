"""The picker simulator's mechanics (pure): motion profile, refusals, gripper and station."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controllerd.config import ConfigError, TubePickerConfig, load_config, parse_config
from firmware_bridge.protocol import ErrorCode, MotionConfig
from simulators._station import SimRack, default_station
from simulators.picker._model import PickerModel
from simulators.picker._profile import axis_time_s, axis_travelled_mm

DEMO = Path(__file__).resolve().parents[3] / "config" / "demo.toml"


def test_profile_is_the_product_motion_model() -> None:
    # d >= v²/a: d/v + v/a; else 2·sqrt(d/a)
    assert axis_time_s(50.0, 400.0, 2000.0) == pytest.approx(2 * math.sqrt(50 / 2000))
    assert axis_time_s(500.0, 400.0, 2000.0) == pytest.approx(500 / 400 + 400 / 2000)
    assert axis_time_s(-500.0, 400.0, 2000.0) == axis_time_s(500.0, 400.0, 2000.0)


@given(
    st.floats(-800, 800),
    st.floats(10, 1000),
    st.floats(100, 10_000),
    st.lists(st.floats(0, 1.2), min_size=2, max_size=8),
)
def test_profile_position_is_monotonic_and_ends_at_the_target(
    d: float, v: float, a: float, fractions: list[float]
) -> None:
    total = axis_time_s(d, v, a)
    covered = [abs(axis_travelled_mm(d, v, a, f * total)) for f in sorted(fractions)]
    assert covered == sorted(covered)
    assert all(c <= abs(d) + 1e-9 for c in covered)
    assert axis_travelled_mm(d, v, a, total) == d


def _model() -> PickerModel:
    station = default_station()
    station.put("P1", SimRack.filled("R1", {"A1": "T1"}))
    return PickerModel(station=station, motion=MotionConfig(), travel_mm=(700.0, 200.0))


def test_motion_needs_homing_and_stays_in_range() -> None:
    model = _model()
    assert model.begin(op="move", seq=1, now_s=0, x_mm=10, y_mm=10) == ErrorCode.NOT_HOMED
    assert model.begin(op="home", seq=2, now_s=0) is None
    assert model.begin(op="scan", seq=3, now_s=0) == ErrorCode.BUSY
    assert model.finish(1.0) == (None, None)
    assert model.homed
    assert model.begin(op="move", seq=4, now_s=1, x_mm=900, y_mm=10) == ErrorCode.OUT_OF_RANGE
    assert [op for _, _, op in model.executed] == ["home"]


def test_pick_and_place_move_a_tube_through_the_gripper() -> None:
    model = _model()
    model.homed = True
    x, y = model.station.position_xy_mm("P1", "A1")
    assert model.begin(op="pick", seq=1, now_s=0) == ErrorCode.NO_TUBE  # at (0, 0)
    assert model.begin(op="move", seq=2, now_s=0, x_mm=x, y_mm=y) is None
    model.finish(10)
    assert model.begin(op="scan", seq=3, now_s=10) is None
    assert model.finish(11) == (None, "T1")
    assert model.begin(op="place", seq=4, now_s=11) == ErrorCode.GRIPPER_EMPTY
    assert model.begin(op="pick", seq=5, now_s=11) is None
    assert model.finish(13) == (None, None)
    assert model.holding == "T1" and model.station.tube_at(x, y) is None
    assert model.begin(op="pick", seq=6, now_s=13) == ErrorCode.GRIPPER_FULL
    b1 = model.station.position_xy_mm("P1", "B1")
    model.begin(op="move", seq=7, now_s=13, x_mm=b1[0], y_mm=b1[1])
    model.finish(20)
    assert model.begin(op="place", seq=8, now_s=20) is None
    assert model.finish(22) == (None, None)
    assert model.holding is None and model.station.tube_at(*b1) == "T1"
    assert model.duplicate_executions() == []


def test_a_jammed_move_stops_halfway() -> None:
    model = _model()
    model.homed = True
    model.jam = True
    assert model.begin(op="move", seq=1, now_s=0, x_mm=600, y_mm=0) is None
    code, _ = model.finish(100)
    assert code == ErrorCode.JAM
    assert 0 < model.x_mm < 600
    assert model.current is None


def test_a_halted_move_stays_where_the_profile_got_to() -> None:
    model = _model()
    model.homed = True
    model.begin(op="move", seq=1, now_s=0, x_mm=600, y_mm=100)
    assert model.current is not None
    total = model.current.end_s
    model.halt(total / 3)
    assert 0 < model.x_mm < 600  # x is still on its way
    assert model.y_mm == 100  # the shorter y move had finished
    assert model.current is None


def test_demo_room_has_a_simulated_picker() -> None:
    pickers = [d for d in load_config(DEMO).devices if isinstance(d, TubePickerConfig)]
    assert len(pickers) == 1
    assert pickers[0].simulation is not None and pickers[0].motion is not None


def test_picker_config_mistakes_are_named_by_path() -> None:
    data = tomllib.loads(DEMO.read_text())
    index = next(i for i, d in enumerate(data["devices"]) if d["kind"] == "tube_picker")
    data["devices"][index]["driver"]["heartbeat_timeout_s"] = 0.1
    data["devices"][index]["motion"]["x"]["v_mm_s"] = -1
    data["devices"][index]["simulation"]["colour"] = "red"
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    problems = "\n".join(info.value.problems)
    assert f"devices[{index}].driver" in problems and "250 ms" in problems
    assert f"devices[{index}].motion.x.v_mm_s" in problems
    assert f"devices[{index}].simulation.colour: unknown key" in problems
