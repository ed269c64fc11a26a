"""Heartbeat supervision on a clock the test moves by hand, against the picker simulator on a
real pty: each valid frame re-arms the deadline (arrival + heartbeat timeout), and a silent
controller is declared lost at exactly that deadline, the silence measured on the link's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from controllerd.sim_config import PickerSimulation
from firmware_bridge import CommunicationLost, FirmwareLink, FirmwareSerialConfig
from simulators._clock import SimClock
from simulators._station import default_station
from simulators.picker import PickerSimulator

TIMEOUT_S = 1.0


class HandClock:
    """A `LinkClock` that stands still until `advance_to` moves it."""

    def __init__(self) -> None:
        self.t = 0.0
        self._moved = asyncio.Condition()

    def now(self) -> float:
        return self.t

    async def sleep_until(self, when: float) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self.t >= when)

    async def advance_to(self, t: float) -> None:
        async with self._moved:
            self.t = t
            self._moved.notify_all()


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - link and simulator counters, no event
            await asyncio.sleep(0.005)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[PickerSimulator]:
    async with PickerSimulator(
        device_id="picker-hb",
        path=tmp_path / "picker",
        station=default_station(),
        clock=SimClock(speed=100.0),
        params=PickerSimulation(heartbeat_ms=20),
    ) as simulator:
        yield simulator


async def test_silence_is_a_loss_exactly_one_timeout_after_the_last_frame(
    tmp_path: Path, sim: PickerSimulator
) -> None:
    config = FirmwareSerialConfig(
        type="firmware_serial", port=str(tmp_path / "picker"), heartbeat_timeout_s=TIMEOUT_S
    )
    clock = HandClock()
    async with FirmwareLink(config=config, device="picker-hb", clock=clock) as link:
        # Heartbeats keep the link alive however far the clock goes, one re-armed deadline each.
        for t in (0.6, 1.2, 1.8):
            await clock.advance_to(t)
            await _until(lambda: link.last_heard == clock.t)
            assert link.lost is None

        sim.inject("silent")
        # Every frame the simulator wrote before falling silent has reached the link.
        await _until(lambda: sim.unread_by_host == 0)
        heard = link.last_heard
        await clock.advance_to(heard + TIMEOUT_S - 1e-3)
        for _ in range(5):
            await asyncio.sleep(0)  # the supervisor runs if it was (wrongly) woken
        assert link.lost is None

        await clock.advance_to(heard + TIMEOUT_S)
        await _until(lambda: link.lost is not None)
        lost = link.lost
        assert isinstance(lost, CommunicationLost)
        assert lost.silent_s == pytest.approx(TIMEOUT_S)
        assert "heartbeat timeout" in str(lost)
        with pytest.raises(CommunicationLost):
            await link.request("status")
