"""Which racks go to the pick station together, and in which order their tubes are picked.

`plan_batches` groups a job's tubes by rack and fetches at most K racks at a time, the racks
with the most tubes first, each rack once; within a batch the tubes go port by port in
serpentine order (row by row, alternating direction) so the gantry never doubles back across
a rack. `fcfs_batches` is the baseline: tubes in the order asked, fetching a rack whenever the
next tube's rack is not at the station (the one there longest goes back first). Both return the
same shape, so the executor runs either. The planner's rack-batch form (controllerd.jobs._planned)
is the daemon's default; `plan_batches` is its fallback when the planner cannot answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controllerd.jobs._model import TubeTask

ROWS = "ABCDEFGH"


@dataclass(frozen=True, slots=True)
class Batch:
    """Racks fetched together and the tubes picked from them, in order."""

    racks: tuple[str, ...]
    tubes: tuple[TubeTask, ...]


#: What the executor asks for the next tubes: batches for K ports (may plan in a worker process).
Batcher = Callable[[list["TubeTask"], int], Awaitable[list[Batch]]]


def simple_batcher(batching: Callable[[list[TubeTask], int], list[Batch]]) -> Batcher:
    """A Batcher from a plain function (`plan_batches`, `fcfs_batches`)."""

    async def batches(tubes: list[TubeTask], k: int) -> list[Batch]:
        return batching(tubes, k)

    return batches


def _serpentine_key(position: str) -> tuple[int, int]:
    row = ROWS.index(position[0]) if position[:1] in ROWS else 0
    column = int(position[1:]) if position[1:].isdigit() else 0
    return row, column if row % 2 == 0 else -column


def plan_batches(tubes: list[TubeTask], k: int) -> list[Batch]:
    """Each rack once, K racks at a time, fullest racks first."""
    by_rack: dict[str, list[TubeTask]] = {}
    for tube in tubes:
        by_rack.setdefault(tube.rack, []).append(tube)
    racks = sorted(by_rack, key=lambda rack: (-len(by_rack[rack]), rack))
    batches = []
    for lo in range(0, len(racks), k):
        chosen = tuple(racks[lo : lo + k])
        ordered = [
            tube
            for rack in chosen
            for tube in sorted(by_rack[rack], key=lambda t: _serpentine_key(t.position))
        ]
        batches.append(Batch(racks=chosen, tubes=tuple(ordered)))
    return batches


def fcfs_batches(tubes: list[TubeTask], k: int) -> list[Batch]:
    """Tubes in the order asked; a missing rack replaces the one at the station longest."""
    batches: list[Batch] = []
    station: OrderedDict[str, None] = OrderedDict()
    current: list[TubeTask] = []
    for tube in tubes:
        if tube.rack not in station and len(station) == k:
            batches.append(Batch(racks=tuple(station), tubes=tuple(current)))
            station.popitem(last=False)
            current = []
        station[tube.rack] = None
        current.append(tube)
    if current:
        batches.append(Batch(racks=tuple(station), tubes=tuple(current)))
    return batches
