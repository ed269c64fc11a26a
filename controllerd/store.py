"""A tube store as the daemon uses it: its driver plus the local specimen map kept up to date.

`TubeStore` enters the driver (which keeps the OPC UA session), reloads the store's whole
inventory into the specimen map on every (re)connect, and after each `scan_rack` reloads that
rack. The pick jobs (issue 8) call its methods; telemetry goes through the poller as for any
device.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from controllerd.config import TubeStoreConfig
from controllerd.specimen_map import SpecimenMap
from drivers import DriverError
from drivers.opcua import OpcUaStoreDriver
from drivers.opcua_model import Inventory

_log = structlog.get_logger("controllerd.store")


class TubeStore:
    """`async with TubeStore(device=..., driver=..., state_dir=...) as store:`."""

    def __init__(self, *, device: TubeStoreConfig, driver: OpcUaStoreDriver, state_dir: Path):
        self.device = device
        self.driver = driver
        self.specimens = SpecimenMap.in_state_dir(state_dir)
        self._log = _log.bind(device=device.id)
        self._exit = contextlib.AsyncExitStack()
        #: inventory loads done (one per connect, plus one per scan)
        self.loads = 0
        driver.add_connect_listener(self._on_connect)

    async def __aenter__(self) -> Self:
        self._exit.callback(self.specimens.close)
        await self._exit.enter_async_context(self.driver)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit.aclose()

    async def _on_connect(self, driver: OpcUaStoreDriver) -> None:
        await self.load_inventory()

    async def load_inventory(self) -> Inventory:
        """Read the store's inventory and replace the store's part of the specimen map."""
        inventory = await self.driver.inventory()
        self.specimens.replace_store(self.device.id, inventory)
        self.loads += 1
        tubes = sum(1 for rack in inventory.racks for code in rack.tubes.values() if code)
        self._log.info("specimen map loaded", racks=len(inventory.racks), tubes=tubes)
        return inventory

    async def retrieve_rack(self, rack: str, port: str) -> float:
        """Bring a rack to a port; the store's seconds. Raises the drivers' errors."""
        seconds = await self.driver.retrieve_rack(rack, port)
        await self._refresh_rack(rack)
        return seconds

    async def store_rack(self, rack: str) -> float:
        """Put a rack back onto its shelf; the store's seconds."""
        seconds = await self.driver.store_rack(rack)
        await self._refresh_rack(rack)
        return seconds

    async def scan_rack(self, rack: str) -> float:
        """Re-read a rack's barcodes and update the specimen map with what the store saw."""
        seconds = await self.driver.scan_rack(rack)
        await self._refresh_rack(rack, required=True)
        return seconds

    async def reset(self) -> None:
        await self.driver.reset()

    async def _refresh_rack(self, rack: str, *, required: bool = False) -> None:
        # One rack's record is all that changed; the inventory read is the consistent way to get
        # it (the store publishes no per-rack method), and a failure only costs freshness.
        try:
            inventory = await self.driver.inventory()
            self.specimens.replace_rack(self.device.id, inventory.rack(rack), ports=inventory.ports)
            if required:
                self.loads += 1
        except (DriverError, KeyError) as exc:
            if required:
                raise
            self._log.warning("rack location not refreshed", rack=rack, error=str(exc))
