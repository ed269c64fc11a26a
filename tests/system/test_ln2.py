"""LN2 tanks in this process: the simulated controllers on a pty line and on a TCP port
(`socket://`), the serial line driver, the daemon-side tank logic (fill watch, `fill` command)
and the alarms the daemon raises from it.

Everything runs on the simulator's clock, so a simulated day of boil-off takes seconds. Each room
has two tanks on a pty line and two on a `socket://` line; a scenario runs on one tank of each
side by side, so covering both transports costs the time of one. test_ln2_daemon.py drives the
daemon process through MQTT against the same simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controllerd.alarms.engine import AlarmEngine
from controllerd.broker import PrivateBroker
from controllerd.config import Config, Ln2TankConfig, parse_config
from controllerd.ln2 import Ln2Tank, apply_fill
from controllerd.mqtt import MqttConnection
from controllerd.poller import DevicePoller
from controllerd.statedb import StateDb
from controllerd.topics import Topics
from drivers import DriverError, InvalidRequest, Reading
from drivers.ln2.client import Ln2Driver, ln2_line
from drivers.serial_line import SerialLines
from simulators import SimulatedRoom
from simulators.ln2 import SimulatedTank
from tests.system._mqtt import Observer
from tests.system._simroom import free_tcp_port

pytestmark = pytest.mark.system
T = TypeVar("T")

LOW_PCT = 30.0
#: One tank of each line: a scenario on both covers both transports at once.
BOTH = ("tank-1", "tank-3")


def _tank(dev_id: str, port: str, address: int, level: float, **extra: Any) -> dict[str, Any]:
    tank: dict[str, Any] = {
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
    for key, value in extra.items():
        tank[key] = {**tank.get(key, {}), **value} if isinstance(value, dict) else value
    return tank


def _config(tmp_path: Path, devices: Iterable[dict[str, Any]], **sections: Any) -> Config:
    return parse_config(
        {
            "controller": {"site": "t", "id": "ln2", "state_dir": str(tmp_path / "state")},
            "simulator": {"control_socket": str(tmp_path / "sim.sock")},
            "devices": list(devices),
            **sections,
        }
    )


def _lines(tmp_path: Path) -> tuple[str, str]:
    """A pty line and a `socket://` line."""
    return str(tmp_path / "rs485-ln2"), f"socket://127.0.0.1:{free_tcp_port()}"


@dataclass
class Bench:
    """A simulated room of tanks and the daemon-side tanks polling them."""

    config: Config
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
async def bench(config: Config, *, speed: float) -> AsyncIterator[Bench]:
    async with SimulatedRoom(config=config, speed=speed) as room, SerialLines() as lines:
        tanks = {}
        for device in config.devices:
            assert isinstance(device, Ln2TankConfig)
            driver = Ln2Driver(
                device_id=device.id, link=ln2_line(lines, device.driver), config=device.driver
            )
            tanks[device.id] = Ln2Tank(config=device, driver=driver, clock=room.clock.now)
        yield Bench(config=config, room=room, lines=lines, tanks=tanks)


def four_tanks(tmp_path: Path, **driver: float) -> Config:
    """tank-1 and tank-2 on a pty line, tank-3 and tank-4 on a `socket://` line."""
    pty, tcp = _lines(tmp_path)
    return _config(
        tmp_path,
        [
            _tank("tank-1", pty, 1, 70.0, driver=driver),
            _tank("tank-2", pty, 2, 60.0, driver=driver),
            _tank("tank-3", tcp, 1, 70.0, driver=driver),
            _tank("tank-4", tcp, 2, 60.0, driver=driver),
        ],
    )


async def on_both(scenario: Callable[[T], Awaitable[None]], targets: Iterable[T]) -> None:
    """Run a scenario on each target (a tank, a line) at once."""
    await asyncio.gather(*(scenario(target) for target in targets))


def _matches_truth(reading: Reading, sim: SimulatedTank) -> None:
    """A reading that was returned must be the simulated tank's state, never a damaged one."""
    model, values = sim.model, reading.values
    assert abs(values["ln2_level_pct"] - model.level_pct) < 0.3
    assert abs(values["ln2_level_mm"] - model.level_mm) < 0.3 / 100 * model.params.capacity_mm
    assert abs(values["temperature_a_c"] - model.temperature_a_c) < 0.05
    assert values["temperature_b_c"] == round(model.temperature_b_c, 2)
    assert values["filling"] == float(model.filling)
    assert values["lid_open"] == float(model.lid_open)
    assert values["bypass_open"] == float(model.bypass_open)
    assert values["alarm_bits"] == float(model.alarm_bits())


async def test_telemetry_for_each_tank_over_pty_and_socket(tmp_path: Path) -> None:
    async with bench(four_tanks(tmp_path), speed=1.0) as b:
        for device in b.tanks:
            reading = await b.tanks[device].read()
            _matches_truth(reading, b.sim(device))
            assert reading.faults == {}
            assert reading.values["fill_timeout"] == 0.0
            assert reading.values["valve_stuck_open"] == 0.0
            assert "hours_to_low" not in reading.values  # no boil-off history yet
            model = b.sim(device).model
            # The configured fill levels reached every controller.
            assert (model.start_pct, model.stop_pct) == (40.0, 80.0)
        await b.room.inject("tank-2", "thermocouple_open")
        reading = await b.tanks["tank-2"].read()
        assert "temperature_a_c" not in reading.values
        assert reading.faults == {"temperature_a_c": "thermocouple open"}


async def test_fill_commands_act_on_the_tank_and_bad_ones_change_nothing(tmp_path: Path) -> None:
    async with bench(four_tanks(tmp_path), speed=1.0) as b:
        for device in BOTH:
            result = await apply_fill({"tank": device, "action": "start"}, b.tanks)
            assert result == {"tank": device, "action": "start", "filling": True}
            assert b.sim(device).model.filling
            result = await apply_fill({"tank": device, "action": "stop"}, b.tanks)
            assert result["filling"] is False and not b.sim(device).model.filling
        before = {d: b.sim(d).requests for d in b.tanks}
        bad: list[tuple[dict[str, Any], str]] = [
            ({"tank": "tank-9", "action": "start"}, "no LN2 tank 'tank-9'"),
            ({"tank": "tank-1", "action": "open"}, "action"),
            ({"tank": "tank-1"}, "action"),
            ({"tank": "tank-1", "action": "start", "force": True}, "force"),
        ]
        for command, problem in bad:
            with pytest.raises(InvalidRequest, match=problem):
                await apply_fill(command, b.tanks)
        assert {d: b.sim(d).requests for d in b.tanks} == before  # nothing was sent
        assert not any(b.sim(d).model.filling for d in b.tanks)


async def test_supply_empty_fill_times_out_and_the_daemon_stops_the_overrun(
    tmp_path: Path,
) -> None:
    async with bench(four_tanks(tmp_path), speed=400.0) as b:

        async def scenario(device: str) -> None:
            await b.room.inject(device, "supply_empty")
            await apply_fill({"tank": device, "action": "start"}, b.tanks)
            reading = await b.poll_until(device, lambda r: r.values["fill_timeout"] == 1.0)
            assert reading.values["filling"] == 1.0
            assert reading.values["fill_elapsed_s"] >= 600.0
            assert b.tanks[device].forced_stops == 0  # not yet at max_fill_s
            await b.poll_until(device, lambda r: r.values["fill_overrun"] == 1.0)
            await b.poll_until(device, lambda r: r.values["filling"] == 0.0)
            assert not b.sim(device).model.filling
            assert b.tanks[device].forced_stops >= 1

        await on_both(scenario, BOTH)


async def test_stuck_valve_is_reported_and_the_daemon_keeps_stopping(tmp_path: Path) -> None:
    async with bench(four_tanks(tmp_path), speed=400.0) as b:

        async def scenario(device: str) -> None:
            await b.room.inject(device, "valve_stuck")
            await apply_fill({"tank": device, "action": "start"}, b.tanks)
            reading = await b.poll_until(device, lambda r: r.values["valve_stuck_open"] == 1.0)
            assert reading.values["ln2_level_pct"] > 80.0
            first = b.tanks[device].forced_stops
            assert first >= 1
            await b.poll_until(device, lambda r: b.tanks[device].forced_stops >= first + 3)
            assert b.sim(device).model.filling  # the valve is still stuck: stops keep coming
            await b.room.inject(device, "valve_stuck", clear=True)
            await b.poll_until(
                device, lambda r: r.values["filling"] == 0 and r.values["valve_stuck_open"] == 0
            )
            assert not b.sim(device).model.filling

        await on_both(scenario, ("tank-2", "tank-4"))


async def test_hours_to_low_after_a_simulated_day(tmp_path: Path) -> None:
    async with bench(four_tanks(tmp_path), speed=12000.0) as b:

        async def scenario(device: str) -> None:
            reading = await b.poll_until(
                device, lambda r: b.room.clock.now() >= 86400.0, timeout=60.0
            )
            truth = b.sim(device).model.hours_to_low(LOW_PCT)
            assert "hours_to_low" in reading.values
            assert reading.values["hours_to_low"] == pytest.approx(truth, rel=0.10)

        await on_both(scenario, BOTH)


async def test_noise_is_never_a_value_and_the_line_recovers(tmp_path: Path) -> None:
    """1 % of the bytes on the line, both ways: every reading returned is the tank's true state
    at that moment (a garbled frame is a failed read, never a number). The simulated tanks
    answer at once, so a short timeout only shortens the waits for replies the noise ate."""
    async with bench(four_tanks(tmp_path, timeout_s=0.08), speed=1.0) as b:
        for device in b.tanks:
            await b.room.inject(device, "noise")

        async def line(devices: tuple[str, str]) -> None:
            good = failed = 0
            for index in range(16):
                device = devices[index % 2]
                try:
                    reading = await b.tanks[device].read()
                except DriverError:
                    failed += 1
                    continue
                good += 1
                _matches_truth(reading, b.sim(device))
            assert good >= 4
            link = ln2_line(b.lines, b.tanks[devices[0]].config.driver)
            assert link.discarded_frames > 0  # damaged replies reached the driver
            assert sum(b.sim(d).unreadable_requests for d in devices) > 0  # and requests

        await on_both(line, [("tank-1", "tank-2"), ("tank-3", "tank-4")])
        for device in b.tanks:
            await b.room.inject(device, "noise", clear=True)
        for device in b.tanks:
            _matches_truth(await b.tanks[device].read(), b.sim(device))


@pytest.mark.parametrize("device", BOTH, ids=["pty", "socket"])
async def test_unplug_and_replug_recovers_without_restart(tmp_path: Path, device: str) -> None:
    async with bench(four_tanks(tmp_path), speed=1.0) as b:
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


# ------------------------------------------------------------------ alarms


async def test_tank_alarms_through_the_alarm_engine(tmp_path: Path) -> None:
    """The ln2_tank alarm defaults (controllerd/alarms/_rules.py), raised by the daemon's own
    pollers and alarm engine from simulated faults, on the simulator's clock, over MQTT."""
    broker = PrivateBroker(workdir=tmp_path / "broker")
    pty, tcp = _lines(tmp_path)
    # Polled every 50 ms (25 simulated seconds); no comm loss from a slow poll on the fast clock.
    never = {"alarms": {"comm_loss_after_s": 86400.0}, "poll_interval_s": 0.05}
    config = _config(
        tmp_path,
        [
            _tank("lid", pty, 1, 70.0, **never),
            _tank("tc", pty, 2, 70.0, **never),
            _tank("low", tcp, 1, 30.3, simulation={"boil_off_pct_per_day": 48.0}, **never),
            _tank("high", tcp, 2, 75.0, **never),
        ],
        mqtt={"host": "127.0.0.1", "port": broker.port},
    )
    c = config.controller
    topics = Topics(prefix=config.mqtt.prefix, site=c.site, controller=c.id)
    broker.start()
    try:
        async with (
            bench(config, speed=500.0) as b,
            StateDb(path=tmp_path / "state.db") as db,
            MqttConnection(config=config, topics=topics) as mqtt,
            AlarmEngine(
                config=config, mqtt=mqtt, topics=topics, db=db, clock=b.room.clock.now
            ) as engine,
            Observer(port=broker.port, topic=f"{topics.base}/alarms/#") as obs,
            asyncio.TaskGroup() as pollers,
        ):
            await mqtt.wait_connected()
            await b.room.inject("lid", "lid_open")
            await b.room.inject("tc", "thermocouple_open")
            await b.room.inject("low", "supply_empty")  # its automatic fill raises nothing
            await b.room.inject("high", "valve_stuck")
            tasks = [
                pollers.create_task(
                    DevicePoller(
                        device=device,
                        driver=b.tanks[device.id],
                        mqtt=mqtt,
                        topics=topics,
                        alarms=engine,
                    ).run(),
                    name=f"poll-{device.id}",
                )
                for device in config.devices
            ]
            await apply_fill({"tank": "high", "action": "start"}, b.tanks)

            expected = {
                # Discrete alarms report the value that means "in alarm" as their limit.
                "lid.lid_open": ("medium", 1.0),
                "lid.temperature_a_c.high": ("critical", -150.0),
                "tc.temperature_a_c.sensor_fault": ("high", None),
                "low.ln2_level_pct.low": ("critical", LOW_PCT),
                "low.fill_timeout": ("critical", 1.0),
                "high.ln2_level_pct.high": ("medium", 90.0),
                "high.valve_stuck_open": ("critical", 1.0),
            }
            for alarm, (severity, limit) in expected.items():
                raised = await obs.wait_for(
                    f"{topics.base}/alarms/{alarm}",
                    lambda body: body["state"] == "unacked",
                    timeout=60,
                )
                assert raised["active"] is True and raised["severity"] == severity
                assert raised["limit"] == limit
            for task in tasks:
                task.cancel()
            # Nothing else (comm loss and stale data keep real-time defaults, which mean little
            # on a clock running 500 times faster: they are left out).
            active = {
                topic.rsplit("/", 1)[-1]
                for topic, body in obs.latest.items()
                if body.get("active") and not topic.endswith((".comm_loss", ".stale"))
            }
            assert active == set(expected)
            sim = {name: b.sim(name).model for name in ("lid", "low", "high")}
            assert sim["lid"].temperature_a_c > -150.0
            assert sim["low"].level_pct < LOW_PCT
            assert sim["high"].level_pct > 90.0
            history = await db.run(lambda: db.history("lid.lid_open"))
            assert [event for event, *_ in history if not event.startswith("state:")] == ["raised"]
    finally:
        broker.stop()
