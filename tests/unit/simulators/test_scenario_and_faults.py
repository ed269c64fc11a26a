"""Scenario validation, fault rules and the control endpoint's request handling."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from controllerd.config import load_config
from simulators import FaultError, ScenarioError, SimulatedRoom, load_scenario, parse_scenario
from simulators._clock import SimClock
from simulators._control import ControlServer
from simulators._scenario import run_scenario
from tests.system._simroom import DEMO_CONFIG, write_demo_config


def test_demo_scenario_is_valid() -> None:
    scenario = load_scenario(DEMO_CONFIG.parent / "scenarios" / "demo.toml")
    assert [step.at_s for step in scenario.ordered()] == [600, 780]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": [{"at_s": -1, "device": "d", "fault": "stuck"}]}, "steps[0].at_s"),
        ({"steps": [{"device": "d", "fault": "stuck"}]}, "steps[0].at_s: Field required"),
        ({"steps": [{"at_s": 1, "device": "d", "fault": "stuck", "when": 2}]}, "steps[0].when"),
        ({"step": []}, "step: Extra inputs"),
    ],
)
def test_scenario_validation_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(data)


def test_unreadable_and_broken_scenario_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[steps]\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(broken)


def _room_with_scenario(tmp_path: Path, steps: str) -> SimulatedRoom:
    config = load_config(write_demo_config(tmp_path))
    scenario = tmp_path / "faults.toml"
    scenario.write_text(steps)
    simulator = config.simulator
    assert simulator is not None
    config = config.model_copy(
        update={"simulator": simulator.model_copy(update={"scenario": Path("faults.toml")})}
    )
    return SimulatedRoom(config=config, config_dir=tmp_path)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ('[[steps]]\nat_s = 1\ndevice = "nobody"\nfault = "stuck"\n', "'nobody' is not simulated"),
        ('[[steps]]\nat_s = 1\ndevice = "probe-1"\nfault = "door_open"\n', "a probe has no"),
        ('[[steps]]\nat_s = 1\ndevice = "freezer-2"\nfault = "sensor_open"\n', "fault_codes"),
        ('[[steps]]\nat_s = 1\ndevice = "freezer-1"\nfault = "melt"\n', "unknown fault"),
    ],
)
def test_scenario_checked_against_the_room(tmp_path: Path, steps: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        _room_with_scenario(tmp_path, steps)


def test_scenario_path_is_relative_to_the_config(tmp_path: Path) -> None:
    room = _room_with_scenario(
        tmp_path, '[[steps]]\nat_s = 1\ndevice = "probe-1"\nfault = "stuck"\n'
    )
    assert room.scenario is not None and len(room.scenario.steps) == 1


async def test_run_scenario_in_order_on_the_simulated_clock() -> None:
    scenario = parse_scenario(
        {
            "steps": [
                {"at_s": 50, "device": "b", "fault": "stuck", "clear": True},
                {"at_s": 10, "device": "a", "fault": "stuck"},
            ]
        }
    )
    clock = SimClock(speed=1000)
    done: list[tuple[str, bool, float]] = []

    async def inject(device: str, fault: str, clear: bool) -> None:
        done.append((device, clear, clock.now()))

    await run_scenario(scenario, clock=clock, inject=inject)
    assert [(d, c) for d, c, _ in done] == [("a", False), ("b", True)]
    assert done[0][2] >= 10 and done[1][2] >= 50


def test_faults_a_kind_lacks_are_refused(tmp_path: Path) -> None:
    room = SimulatedRoom(config=load_config(write_demo_config(tmp_path)))
    with pytest.raises(FaultError, match="a probe has no 'compressor_fail'"):
        room.devices["probe-3"].inject("compressor_fail")
    assert room.devices["probe-3"].faults == frozenset()
    assert room.devices["probe-3"].inject("stuck")
    assert not room.devices["probe-3"].inject("stuck")


class _Target:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []

    async def inject(self, device: str, fault: str, *, clear: bool = False) -> None:
        if device != "probe-1":
            raise FaultError("no such device", device=device, fault=fault)
        self.calls.append((device, fault, clear))

    def status(self) -> dict[str, Any]:
        return {"devices": {}}


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[]",
        b'{"op": "explode"}',
        b'{"op": "inject", "device": "probe-1"}',
        b'{"op": "inject", "device": "probe-1", "fault": "stuck", "extra": 1}',
        b'{"op": "inject", "device": "probe-9", "fault": "stuck"}',
    ],
)
async def test_bad_control_requests_get_errors_and_change_nothing(
    tmp_path: Path, line: bytes
) -> None:
    target = _Target()
    server = ControlServer(path=tmp_path / "c.sock", target=target)
    reply = await server.handle(line)
    assert reply["ok"] is False and reply["error"]
    assert target.calls == []


async def test_control_socket_round_trip(tmp_path: Path) -> None:
    target = _Target()
    path = tmp_path / "c.sock"
    async with ControlServer(path=path, target=target):
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"op": "inject", "device": "probe-1", "fault": "stuck"}\n{"op": "status"}\n')
        assert json.loads(await reader.readline()) == {"ok": True}
        assert json.loads(await reader.readline()) == {"ok": True, "status": {"devices": {}}}
        writer.close()
        await writer.wait_closed()
    assert target.calls == [("probe-1", "stuck", False)]
    assert not path.exists()
