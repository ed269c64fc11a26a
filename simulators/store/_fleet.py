"""The room's simulated tube stores: built from the config, served together, faults routed."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controllerd.config import Config, TubeStoreConfig
from controllerd.sim_config import SimulatorSection
from simulators._fleet import Fleet
from simulators._station import PickStation
from simulators.store._server import SimulatedStore


class StoreFleet(Fleet[SimulatedStore]):
    """Every `tube_store` with a simulation block; all share the room's pick station."""

    def __init__(self, stores: dict[str, SimulatedStore]) -> None:
        super().__init__(stores)
        self.stores = stores

    @classmethod
    def from_config(
        cls,
        config: Config,
        section: SimulatorSection,
        *,
        station: PickStation,
        now: Callable[[], float],
        config_dir: Path | None = None,
    ) -> StoreFleet:
        stores = {
            dev.id: SimulatedStore(
                config=dev,
                station=station,
                ambient_c=section.ambient_c,
                # Seeded by name, so adding a device does not change the others' draws.
                rng=random.Random(f"{section.seed}:{dev.id}"),
                now=now,
                base_dir=config_dir,
            )
            for dev in config.devices
            if isinstance(dev, TubeStoreConfig) and dev.simulation is not None
        }
        return cls(stores)

    def status(self) -> dict[str, Any]:
        return {store.id: store.state() for store in self.stores.values()}
