"""LN2 tanks end to end: the simulated controllers on a pty line and on a TCP port
(`socket://`), the serial line driver, the daemon-side fill watch and the `fill` command.

The tank logic runs in the test's process on the simulator's clock, so a simulated day of
boil-off takes seconds; the last test runs the real daemon process against the demo room.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controllerd.config import Config, Ln2TankConfig, parse_config
from controllerd.ln2 import Ln2Tank, apply_fill
from drivers import DriverError, InvalidRequest, Reading
from drivers.ln2.client import Ln2Driver, ln2_line
from drivers.serial_line import SerialLines
from simulators import SimulatedRoom
from simulators.ln2 import SimulatedTank
from tests.system._mqtt import Observer
from tests.system._simroom import free_tcp_port
from tests.system.conftest import make_stack

pytestmark = pytest.mark.system

LOW_PCT = 30.0


def _tank(dev_id: str, port: str, address: int, level: float) -> dict[str, Any]:
    return {
        "id": dev_id,
        "kind": "ln2_tank",
        "driver": {
            "type": "ln2_serial",
            "port": port,
            "address": address,
            "timeout_s": 0.2,
            "retries": 2,
            "gap_s": 0.002,
            "reconnect_initial_s": 0.05,
            "reconnect_max_s": 0.4,
        },
        "fill": {
            "start_pct": 40.0,
            "stop_pct": 80.0,
            "fill_timeout_s": 600.0,
            "max_fill_s": 1500.0,
        },
        "low_level_pct": LOW_PCT,
        "simulation": {"initial_level_pct": level, "boil_off_pct_per_day": 4.0},
    }


def _config(tmp_path: Path, tcp_port: int) -> Config:
    line = str(tmp_path / "rs485-ln2")
    return parse_config(
        {
            "controller": {"site": "t", "id": "ln2", "state_dir": str(tmp_path / "state")},
            "simulator": {"control_socket": str(tmp_path / "sim.sock")},
            "devices": [
                _tank("tank-1", line, 1, 70.0),
                _tank("tank-2", line, 2, 60.0),
                _tank("tank-3", f"socket://127.0.0.1:{tcp_port}", 1, 65.0),
            ],
        }
    )


@dataclass
class Bench:
    """A simulated room of three tanks and the daemon-side tanks polling them."""

    room: SimulatedRoom
    lines: SerialLines
    tanks: dict[str, Ln2Tank]

    def sim(self, device: str) -> SimulatedTank:
        tank = self.room.tanks.get(device)
        assert tank is not None
        return tank

    async def poll_until(
        self, device: str, predicate: Callable[[Reading], bool], *, timeout: float = 20.0
    ) -> Reading:
        """Read `device` until `predicate` holds for a reading (read failures are retried)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(DriverError):
                reading = await self.tanks[device].read()
                if predicate(reading):
                    return reading
            await asyncio.sleep(0.01)
        raise AssertionError(f"{device}: condition not met in {timeout} s")


@contextlib.asynccontextmanager
async def bench(tmp_path: Path, *, speed: float) -> AsyncIterator[Bench]:
    config = _config(tmp_path, free_tcp_port())
    async with SimulatedRoom(config=config, speed=speed) as room, SerialLines() as lines:
        tanks = {}
        for device in config.devices:
            assert isinstance(device, Ln2TankConfig)
            driver = Ln2Driver(
                device_id=device.id, link=ln2_line(lines, device.driver), config=device.driver
            )
            tanks[device.id] = Ln2Tank(config=device, driver=driver, clock=room.clock.now)
        yield Bench(room=room, lines=lines, tanks=tanks)


def _matches_truth(reading: Reading, sim: SimulatedTank) -> None:
    """A reading that was published must be the simulated tank's state, never a damaged one."""
    model, values = sim.model, reading.values
    assert abs(values["ln2_level_pct"] - model.level_pct) < 0.3
    assert abs(values["ln2_level_mm"] - model.level_mm) < 0.3 / 100 * model.params.capacity_mm
    assert abs(values["temperature_a_c"] - model.temperature_a_c) < 0.05
    assert values["temperature_b_c"] == round(model.temperature_b_c, 2)
    assert values["filling"] == float(model.filling)
    assert values["lid_open"] == float(model.lid_open)
    assert values["alarm_flags"] == float(model.alarm_bits())


async def test_telemetry_for_each_tank_over_pty_and_socket(tmp_path: Path) -> None:
    async with bench(tmp_path, speed=1.0) as b:
        for device in ("tank-1", "tank-2", "tank-3"):
            reading = await b.tanks[device].read()
            _matches_truth(reading, b.sim(device))
            assert reading.faults == {}
            assert reading.values["fill_timeout"] == 0.0
            assert reading.values["valve_stuck_open"] == 0.0
            assert "hours_to_low" not in reading.values  # no boil-off history yet
        # The configured fill levels reached every controller.
        assert (b.sim("tank-3").model.start_pct, b.sim("tank-3").model.stop_pct) == (40.0, 80.0)
        await b.room.inject("tank-2", "thermocouple_open")
        reading = await b.tanks["tank-2"].read()
        assert "temperature_a_c" not in reading.values
        assert reading.faults == {"temperature_a_c": "thermocouple open"}


async def test_fill_commands_act_on_the_tank_and_bad_ones_change_nothing(tmp_path: Path) -> None:
    async with bench(tmp_path, speed=1.0) as b:
        result = await apply_fill({"tank": "tank-3", "action": "start"}, b.tanks)
        assert result == {"tank": "tank-3", "action": "start", "filling": True}
        assert b.sim("tank-3").model.filling
        result = await apply_fill({"tank": "tank-3", "action": "stop"}, b.tanks)
        assert result["filling"] is False and not b.sim("tank-3").model.filling
        before = {d: b.sim(d).requests for d in b.tanks}
        bad: list[dict[str, Any]] = [
            {"tank": "tank-9", "action": "start"},
            {"tank": "tank-1", "action": "open"},
            {"tank": "tank-1"},
            {"tank": "tank-1", "action": "start", "operator": "x", "force": True},
        ]
        for command in bad:
            with pytest.raises(InvalidRequest) as err:
                await apply_fill(command, b.tanks)
            assert str(err.value)
        assert "no LN2 tank 'tank-9'" in str(
            await _error(apply_fill({"tank": "tank-9", "action": "start"}, b.tanks))
        )
        assert {d: b.sim(d).requests for d in b.tanks} == before  # nothing was sent
        assert not any(b.sim(d).model.filling for d in b.tanks)


async def _error(call: Any) -> BaseException:
    try:
        await call
    except InvalidRequest as exc:
        return exc
    raise AssertionError("no error")


async def test_supply_empty_fill_times_out_and_the_daemon_stops_the_overrun(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path, speed=400.0) as b:
        await b.room.inject("tank-1", "supply_empty")
        await apply_fill({"tank": "tank-1", "action": "start"}, b.tanks)
        reading = await b.poll_until("tank-1", lambda r: r.values["fill_timeout"] == 1.0)
        assert reading.values["filling"] == 1.0
        assert reading.values["fill_elapsed_s"] >= 600.0
        assert b.tanks["tank-1"].forced_stops == 0  # not yet at max_fill_s
        await b.poll_until("tank-1", lambda r: r.values["fill_overrun"] == 1.0)
        await b.poll_until("tank-1", lambda r: r.values["filling"] == 0.0)
        assert not b.sim("tank-1").model.filling
        assert b.tanks["tank-1"].forced_stops >= 1


async def test_stuck_valve_is_reported_and_the_daemon_keeps_stopping(tmp_path: Path) -> None:
    async with bench(tmp_path, speed=400.0) as b:
        await b.room.inject("tank-2", "valve_stuck")
        await apply_fill({"tank": "tank-2", "action": "start"}, b.tanks)
        reading = await b.poll_until("tank-2", lambda r: r.values["valve_stuck_open"] == 1.0)
        assert reading.values["ln2_level_pct"] > 80.0
        first = b.tanks["tank-2"].forced_stops
        assert first >= 1
        await b.poll_until("tank-2", lambda r: b.tanks["tank-2"].forced_stops >= first + 3)
        assert b.sim("tank-2").model.filling  # the valve is still stuck: stops keep coming
        await b.room.inject("tank-2", "valve_stuck", clear=True)
        await b.poll_until(
            "tank-2", lambda r: r.values["filling"] == 0 and r.values["valve_stuck_open"] == 0
        )
        assert not b.sim("tank-2").model.filling


async def test_hours_to_low_after_a_simulated_day(tmp_path: Path) -> None:
    async with bench(tmp_path, speed=6000.0) as b:
        reading = await b.poll_until(
            "tank-1", lambda r: b.room.clock.now() >= 86400.0, timeout=60.0
        )
        truth = b.sim("tank-1").model.hours_to_low(LOW_PCT)
        assert "hours_to_low" in reading.values
        assert reading.values["hours_to_low"] == pytest.approx(truth, rel=0.10)


async def test_noise_is_never_a_value_and_the_line_recovers(tmp_path: Path) -> None:
    async with bench(tmp_path, speed=1.0) as b:
        for device in ("tank-1", "tank-2"):
            await b.room.inject(device, "noise")
        line = ln2_line(b.lines, b.tanks["tank-1"].config.driver)
        good = failed = 0
        for index in range(80):
            device = ("tank-1", "tank-2")[index % 2]
            try:
                reading = await b.tanks[device].read()
            except DriverError:
                failed += 1
                continue
            good += 1
            _matches_truth(reading, b.sim(device))
        assert line.discarded_frames > 0  # noise did reach the driver
        assert good > failed
        for device in ("tank-1", "tank-2"):
            await b.room.inject(device, "noise", clear=True)
        for index in range(10):
            device = ("tank-1", "tank-2")[index % 2]
            _matches_truth(await b.tanks[device].read(), b.sim(device))


@pytest.mark.parametrize("device", ["tank-1", "tank-3"], ids=["pty", "socket"])
async def test_unplug_and_replug_recovers_without_restart(tmp_path: Path, device: str) -> None:
    async with bench(tmp_path, speed=1.0) as b:
        await b.tanks[device].read()
        port = b.sim(device).port
        await b.room.tanks.unplug(port)
        for _ in range(3):
            with pytest.raises(DriverError):
                await b.tanks[device].read()
            await asyncio.sleep(0.1)
        await b.room.tanks.replug(port)
        reading = await b.poll_until(device, lambda r: True, timeout=10.0)
        _matches_truth(reading, b.sim(device))


async def test_the_daemon_publishes_the_demo_tanks(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, speed=50.0)
    try:
        stack.start_simulators()
        stack.start_daemon()
        tanks = [d.id for d in stack.config.devices if d.kind == "ln2_tank"]
        assert len(tanks) == 2
        async with Observer(port=stack.broker.port, topic=f"{stack.base}/devices/#") as obs:
            for tank in tanks:
                body = await obs.wait_for(
                    f"{stack.base}/devices/{tank}/telemetry",
                    lambda b: b["quality"] == "good",
                    timeout=30,
                )
                values = body["values"]
                assert 0 < values["ln2_level_pct"] < 100
                assert -200 < values["temperature_a_c"] < -100
                assert values["fill_timeout"] == 0
                state = await obs.wait_for(f"{stack.base}/devices/{tank}/state")
                assert state["connected"] is True
    finally:
        stack.stop()
