"""Every simulated picker of a room config, served together (what `SimulatedRoom` holds)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controllerd.config import Config, TubePickerConfig
from controllerd.sim_config import SimulatorSection
from simulators._clock import SimClock
from simulators._fleet import Fleet
from simulators._station import PickStation
from simulators.picker._server import PickerSimulator


class PickerFleet(Fleet[PickerSimulator]):
    """The room's simulated pickers, each on its own pty; an async context manager."""

    def __init__(self, pickers: dict[str, PickerSimulator]) -> None:
        super().__init__(pickers)
        self.pickers = pickers

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

    def status(self) -> dict[str, dict[str, Any]]:
        """Each picker's state, by device id."""
        return {device_id: picker.state() for device_id, picker in self.pickers.items()}
