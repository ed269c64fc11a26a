"""Every simulated picker of a room config, served together (what `SimulatedRoom` holds)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from controllerd.config import Config, TubePickerConfig
from controllerd.sim_config import SimulatorSection
from simulators._clock import SimClock
from simulators._station import PickStation
from simulators.picker._server import PickerSimulator


class PickerFleet:
    """The room's simulated pickers, each on its own pty; an async context manager."""

    def __init__(self, pickers: dict[str, PickerSimulator]) -> None:
        self.pickers = pickers
        self._stack: contextlib.AsyncExitStack | None = None

    @classmethod
    def from_config(
        cls,
        config: Config,
        section: SimulatorSection,
        *,
        station: PickStation | None,
        clock: Callable[[], SimClock],
    ) -> PickerFleet:
        """One simulator per `tube_picker` with a `simulation` block (they need `station`)."""
        pickers: dict[str, PickerSimulator] = {}
        for dev in config.devices:
            if not isinstance(dev, TubePickerConfig) or dev.simulation is None:
                continue
            assert station is not None, "a room with a picker has a pick station"
            pickers[dev.id] = PickerSimulator(
                device_id=dev.id,
                path=Path(dev.driver.port),
                station=station,
                clock=clock,
                params=dev.simulation,
                motion=dev.motion,
                rng=random.Random(f"{section.seed}:{dev.id}/faults"),
            )
        return cls(pickers)

    def __bool__(self) -> bool:
        return bool(self.pickers)

    def get(self, device_id: str) -> PickerSimulator | None:
        return self.pickers.get(device_id)

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            for picker in self.pickers.values():
                await stack.enter_async_context(picker)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def status(self) -> dict[str, dict[str, Any]]:
        """Each picker's state, by device id."""
        return {device_id: picker.state() for device_id, picker in self.pickers.items()}
