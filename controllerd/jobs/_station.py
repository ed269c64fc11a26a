"""The racks at the pick station: fetched from and returned to the tube store, journalled and
timed.

`RackStation` knows which rack is in which port (`racks`), marks a rack out in the journal
*before* its retrieve is requested (after a crash mid-retrieve, recovery asks the store where it
ended up, and the exposure clock errs on the safe side), scans a rack before storing it (so the
store's inventory shows what was taken), and feeds the exposure budget the durations it sees.
Whether a rack may be fetched now is the budget's call: a rack is fetched only while the racks
already out could afford its fetch, a tube and everyone's way back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

from controllerd.jobs._errors import JobFailed
from controllerd.jobs._exposure import ExposureBudget
from controllerd.jobs._journal import Journal
from drivers import DeviceRejected

_log = structlog.get_logger("controllerd.jobs")


class StoreOps(Protocol):
    """What the executor needs of the tube store (controllerd.store.TubeStore)."""

    async def retrieve_rack(self, rack: str, port: str) -> float: ...
    async def store_rack(self, rack: str) -> float: ...
    async def scan_rack(self, rack: str) -> float: ...


class RackStation:
    """The rack ports of the pick station (see the module docstring)."""

    def __init__(
        self,
        *,
        store: StoreOps,
        store_id: str,
        ports: tuple[str, ...],
        journal: Journal,
        budget: ExposureBudget,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._store_id = store_id
        self._ports = ports
        self._journal = journal
        self._budget = budget
        self._clock = clock
        #: rack -> port, for the racks at the station
        self.racks: dict[str, str] = {}

    def out_since(self) -> dict[str, float]:
        """rack -> when its trip began, for the racks at the station."""
        out = {}
        for rack in self.racks:
            since = self._journal.rack_out_since(self._store_id, rack)
            if since is not None:
                out[rack] = since
        return out

    async def arrange(self, job: str, racks: tuple[str, ...]) -> None:
        """Racks not in `racks` back to the store, missing ones fetched (those the racks out
        can afford now; the others wait for a later round)."""
        for rack in self._budget.return_order(self.out_since()):
            if rack not in racks:
                await self.return_rack(job, rack)
        for rack in racks:
            if rack in self.racks:
                continue
            free = [port for port in self._ports if port not in self.racks.values()]
            if not free:
                raise JobFailed("no free rack port")
            now = self._clock()
            if self.racks:
                reason = self._budget.overrun(
                    {**self.out_since(), rack: now},
                    now=now,
                    work_s=self._budget.robot.value + self._budget.tube.value,
                )
                if reason is not None:
                    _log.info("rack fetched later: the racks out cannot wait", rack=rack)
                    continue
            await self._fetch(job, rack, free[0], now)

    async def _fetch(self, job: str, rack: str, port: str, now: float) -> None:
        self._journal.rack_out(self._store_id, rack, now)
        self._journal.step(job, "retrieve", rack, "before", port=port)
        try:
            await self._store.retrieve_rack(rack, port)
        except DeviceRejected:  # refused: it never left its shelf
            self._journal.rack_in(self._store_id, rack, self._clock())
            raise
        self._budget.robot.add(self._clock() - now)
        self.racks[rack] = port
        self._journal.step(job, "retrieve", rack, "after", port=port)

    async def return_rack(self, job: str, rack: str) -> None:
        """Scan the rack (the store's inventory then shows what was taken) and store it;
        journalled as `job`'s steps."""
        start = self._clock()
        self._journal.step(job, "scan_rack", rack, "before")
        await self._store.scan_rack(rack)
        self._journal.step(job, "scan_rack", rack, "after")
        stored = self._clock()
        self._budget.scan.add(stored - start)
        self._journal.step(job, "store", rack, "before")
        await self._store.store_rack(rack)
        self._budget.robot.add(self._clock() - stored)
        trip = self._journal.rack_in(self._store_id, rack, self._clock())
        self.racks.pop(rack, None)
        self._journal.step(job, "store", rack, "after", trip_s=round(trip, 3))

    async def return_all(self, job: str) -> None:
        """Every rack at the station back to the store, the one out longest first."""
        out = self.out_since()
        for rack in [*self._budget.return_order(out), *(r for r in self.racks if r not in out)]:
            await self.return_rack(job, rack)
