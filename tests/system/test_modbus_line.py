"""One RS-485 line shared by four Modbus RTU units: the daemon's driver against the simulated
line on a pseudo-terminal, watched from the simulator's side of the wire.

The simulated line records its traffic (when each request's first byte arrived, when each
reply was written): what a scope on the bus would show.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controllerd.config import Config, ProbeConfig, load_config
from drivers import DeviceTimeout
from drivers.modbus import ModbusRtuConfig
from drivers.modbus_client import ModbusDriver, ModbusLinks
from simulators._room import _build_devices as build_devices
from simulators.modbus import ModbusRtuLine
from tests.system._simroom import write_demo_config

pytestmark = pytest.mark.system

PROBES = ("probe-1", "probe-2", "probe-3", "probe-4")


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[tuple[Config, ModbusRtuLine]]:
    """Only the demo's simulated RS-485 line of probes (not the whole room)."""
    config = load_config(write_demo_config(tmp_path, speed=1.0))
    assert config.simulator is not None
    devices = build_devices(config, config.simulator)
    link = _line_config(config)
    units = {devices[d].unit_id: devices[d] for d in PROBES}
    async with ModbusRtuLine(path=Path(link.port), devices=units, silence_s=link.gap_s) as rtu:
        yield config, rtu


def _line_config(config: Config) -> ModbusRtuConfig:
    """The line's settings (timeout, retries, gap: the same for every probe on it)."""
    link = config.device("probe-1").driver
    assert isinstance(link, ModbusRtuConfig)
    return link


def _drivers(config: Config, links: ModbusLinks) -> list[ModbusDriver]:
    drivers = []
    for device_id in PROBES:
        device = config.device(device_id)
        assert isinstance(device, ProbeConfig) and isinstance(device.driver, ModbusRtuConfig)
        drivers.append(
            ModbusDriver(
                device_id=device_id,
                link=links.link_for(device.driver),
                unit_id=device.driver.unit_id,
                registers=device.registers,
            )
        )
    return drivers


async def test_units_on_one_line_take_turns_with_the_silent_gap(
    line: tuple[Config, ModbusRtuLine],
) -> None:
    config, rtu = line
    gap_s = _line_config(config).gap_s
    async with ModbusLinks() as links:
        drivers = _drivers(config, links)
        rtu.traffic.clear()
        # Every unit polled at once, as four poll loops would: the line lock must serialise.
        for _ in range(5):
            readings = await asyncio.gather(*(driver.read() for driver in drivers))
            assert all(-100 < r.values["temperature_c"] < 40 for r in readings)
    traffic = list(rtu.traffic)
    assert len(traffic) >= 2 * 5 * len(PROBES)
    # One exchange at a time: a request is always answered before the next request starts.
    kinds = [kind for _, kind, _ in traffic]
    assert kinds == ["request", "reply"] * (len(traffic) // 2), kinds
    for (_, _, asked), (_, _, answered) in zip(traffic[::2], traffic[1::2], strict=True):
        assert asked == answered
    # The master keeps the line silent for the gap between a reply and the next request.
    silences = [nxt[0] - prev[0] for prev, nxt in zip(traffic[1::2], traffic[2::2], strict=False)]
    assert silences and min(silences) >= gap_s, (min(silences), gap_s)
    # Each unit was asked in turn, none starved.
    assert {unit for _, kind, unit in traffic if kind == "request"} == {1, 2, 3, 4}


async def test_a_silent_unit_is_asked_every_attempt_and_the_line_goes_on(
    line: tuple[Config, ModbusRtuLine],
) -> None:
    config, rtu = line
    link_config = _line_config(config)
    rtu.devices[2].inject("disconnect")
    async with ModbusLinks() as links:
        drivers = _drivers(config, links)
        rtu.traffic.clear()
        with pytest.raises(DeviceTimeout, match="no answer"):
            await drivers[1].read()
        asked = [t for t, kind, unit in rtu.traffic if kind == "request" and unit == 2]
        assert [kind for _, kind, _ in rtu.traffic] == ["request"] * (link_config.retries + 1)
        assert len(asked) == link_config.retries + 1
        # Each attempt waited its whole timeout before the next went out.
        waits = [b - a for a, b in itertools.pairwise(asked)]
        assert min(waits) >= link_config.timeout_s, waits
        # The line stays open (one silent unit says nothing about the others): they answer.
        readings = await asyncio.gather(drivers[0].read(), drivers[2].read(), drivers[3].read())
        assert all(-100 < r.values["temperature_c"] < 40 for r in readings)
