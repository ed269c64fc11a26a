"""Reconciling interrupted work with the store and the picker: after a crash, and after a stuck
picker sent the racks back.

* `recover` (at start-up, before any job runs): the racks the journal has out of the cold —
  the store's inventory says where each is now. In a port: the executor keeps it there (the
  job resumes with it). Back on its shelf: its trip ends now. On the robot: the store is still
  moving it; wait until it is not (at most `ROBOT_WAIT_S`).
* `settle_tube` (first thing when a job runs or resumes), for a tube whose move was
  interrupted (`picking`: its slot reserved, the pick may or may not have happened; `held`:
  picked, maybe placed). The picker's `holding` flag says whether it is in the gripper — then
  it is carried to its slot, placed and scanned there, and recorded only when the barcode is
  the journal's. Otherwise its slot is scanned: there, the place happened and only the record
  is missing. Otherwise, with its rack at the station, its source is scanned: there, the pick
  never happened and it goes back to `pending`; a `picking` tube whose rack went back to the
  store (the picker got stuck before the pick) goes back to `pending` too — its barcode is
  checked at its source before it is picked. A tube found nowhere is marked failed with
  `{picker}.tube_unaccounted` (never guessed into a movement).

A movement is recorded only in the same transaction that marks its tube `done`, so a tube that
is `done` in the journal is never recorded again, and one that is not has no movement yet.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

import structlog

from controllerd.jobs._journal import Journal
from controllerd.jobs._model import Job, TubeTask
from drivers import Backoff, DriverError
from drivers.opcua_model import Inventory

if TYPE_CHECKING:  # the executor calls settle_tube
    from controllerd.jobs._executor import JobExecutor

_log = structlog.get_logger("controllerd.jobs.recovery")

#: How long recovery waits for a rack the store is still moving.
ROBOT_WAIT_S = 600.0


class InventorySource(Protocol):
    """What recovery needs of the store (controllerd.store.TubeStore)."""

    async def load_inventory(self) -> Inventory: ...


async def _rack_locations(store: InventorySource, racks: list[str]) -> dict[str, str]:
    """rack -> `store` | `port:<p>` from a fresh inventory, waiting out racks on the robot."""
    backoff = Backoff(initial_s=0.5, max_s=10.0)
    async with asyncio.timeout(ROBOT_WAIT_S):
        while True:
            try:
                inventory = await store.load_inventory()
            except DriverError as exc:
                if backoff.failures == 0:
                    _log.warning("store not reachable for recovery: retrying", error=str(exc))
                await asyncio.sleep(backoff.next_delay())
                continue
            locations = {}
            for rack in racks:
                try:
                    locations[rack] = inventory.rack(rack).location
                except KeyError:
                    locations[rack] = "unknown"
            if all(where != "robot" for where in locations.values()):
                return locations
            _log.info("a rack is on the store's robot: waiting for it to arrive")
            await asyncio.sleep(backoff.next_delay())


async def recover(
    *,
    executor: JobExecutor,
    journal: Journal,
    store: InventorySource,
    store_id: str,
) -> None:
    """Bring the executor's station in line with where the store says the racks are."""
    out = [rack for owner, rack in journal.racks_out() if owner == store_id]
    if not out:
        return
    locations = await _rack_locations(store, out)
    for rack, where in locations.items():
        if where.startswith("port:"):
            executor.station[rack] = where.removeprefix("port:")
        else:
            journal.rack_in(store_id, rack, executor.now())
            _log.info("rack found back in the store", rack=rack, location=where)
    _log.info("racks at the pick station after restart", station=executor.station)


async def settle_tube(executor: JobExecutor, job: Job, tube: TubeTask) -> None:
    """Find out where an interrupted tube is and bring the journal in line (docstring)."""
    log = _log.bind(job=job.job, barcode=tube.barcode)
    journal = executor.journal
    status = await executor.status()
    if status.holding:
        log.info("tube found in the gripper: placing it in its slot")
        journal.tube_state(job.job, tube, "held")
        await executor.place_held(job, tube, verify=True)
        return
    assert tube.out_position is not None
    if await executor.scan_at(job, tube, executor.output_port, tube.out_position) == tube.barcode:
        log.info("tube found in its output slot: recording its movement")
        executor.record_movement(job, tube)
        return
    port = executor.station.get(tube.rack)
    if port is None and tube.state == "picking":
        log.info("tube not picked before its rack went back: picking it again later")
        journal.tube_state(job.job, tube, "pending")
        return
    if port is not None and await executor.scan_at(job, tube, port, tube.position) == tube.barcode:
        log.info("tube found at its source: picking it again")
        journal.tube_state(job.job, tube, "pending")
        return
    text = f"{tube.barcode} not found (not held, not in its slot or at its source)"
    log.error("tube lost track of", error=text)
    executor.alarm("tube_unaccounted", active=True, text=text)
    journal.tube_state(job.job, tube, "failed", text)
