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


def store_rng(seed: int, device_id: str) -> random.Random:
    """The random generator a store of the room is seeded with (its hotel first, then its
    sensor noise): seeded by name, so adding a device does not change the others' draws."""
    return random.Random(f"{seed}:{device_id}")


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
                rng=store_rng(section.seed, dev.id),
                now=now,
                base_dir=config_dir,
            )
            for dev in config.devices
            if isinstance(dev, TubeStoreConfig) and dev.simulation is not None
        }
        return cls(stores)

    def status(self) -> dict[str, Any]:
        return {store.id: store.state() for store in self.stores.values()}
