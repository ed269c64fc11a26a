"""The room's simulated tube stores: built from the config, served together, faults routed."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from controllerd.config import Config, TubeStoreConfig
from controllerd.sim_config import SimulatorSection
from simulators._station import PickStation
from simulators.store._server import SimulatedStore


class StoreFleet:
    """Every `tube_store` with a simulation block; all share the room's pick station."""

    def __init__(self, stores: dict[str, SimulatedStore]) -> None:
        self.stores = stores
        self._stack: contextlib.AsyncExitStack | None = None

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

    def __bool__(self) -> bool:
        return bool(self.stores)

    def get(self, device: str) -> SimulatedStore | None:
        return self.stores.get(device)

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            for store in self.stores.values():
                await stack.enter_async_context(store)
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

    def status(self) -> dict[str, Any]:
        return {store.id: store.state() for store in self.stores.values()}
