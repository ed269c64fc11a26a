"""A pick job's timeline: store operations and gantry picking, one after the other.

A job is a list of events: fetch a rack into a station slot, pick a tube (from its rack's slot to
its destination), return a rack. The store and the gantry take turns: the gantry leaves its home
for a run of consecutive picks and comes back home before the store moves a rack again. A rack
trip's exposure runs from the end of its fetch to the start of its return.

`simulate` is the one place a job's time is computed from events (plans and baselines alike);
`first_come_first_served` and `by_rack_in_request_order` build the baselines' events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllerd.planner._motion import path_time_s
from controllerd.planner._rack_model import RackBatchProblem
from controllerd.planner._store import StoreState


@dataclass(frozen=True, slots=True)
class Fetch:
    rack: int
    slot: int


@dataclass(frozen=True, slots=True)
class Pick:
    tube: int


@dataclass(frozen=True, slots=True)
class Return:
    rack: int


Event = Fetch | Pick | Return


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline:
    """What `simulate` measured."""

    total_s: float
    exposures_s: list[float]
    """One per rack trip, in the order the trips were fetched."""
    fetches: int


def simulate(problem: RackBatchProblem, events: list[Event]) -> Timeline:
    """Run the events in order and measure the job (raises ValueError if they are inconsistent)."""
    timing = problem.store.timing()
    motion = problem.motion.limits()
    home = np.asarray(problem.start, dtype=np.float64)
    slots = np.asarray(problem.station.slots, dtype=np.float64)
    rack_index = {rack.id: i for i, rack in enumerate(problem.racks)}
    places = [rack.place() for rack in problem.racks]
    state: StoreState = problem.store.initial_state()
    clock = 0.0
    at_station: dict[int, int] = {}  # rack -> slot
    fetched_at: dict[int, tuple[int, float]] = {}  # rack -> (trip number, fetch end)
    exposures: list[float] = []
    run: list[np.ndarray] = []

    def finish_run() -> float:
        if not run:
            return 0.0
        stops = np.asarray([home, *run, home])
        seconds = path_time_s(stops, motion) + (len(run) // 2) * problem.handling.per_tube_s
        run.clear()
        return seconds

    for event in events:
        if isinstance(event, Pick):
            tube = problem.tubes[event.tube]
            slot = at_station.get(rack_index[tube.rack])
            if slot is None:
                raise ValueError(f"tube '{tube.id}' picked while its rack is not at the station")
            run.append(slots[slot] + np.asarray(tube.position))
            run.append(np.asarray(tube.destination, dtype=np.float64))
            continue
        clock += finish_run()
        place = places[event.rack]
        if isinstance(event, Fetch):
            if event.rack in at_station or event.slot in at_station.values():
                raise ValueError(f"fetch of rack {event.rack} into a busy slot or twice")
            clock += timing.fetch_s(state, place)
            state = timing.after_fetch(place)
            at_station[event.rack] = event.slot
            fetched_at[event.rack] = (len(exposures), clock)
            exposures.append(0.0)
        else:
            if event.rack not in at_station:
                raise ValueError(f"return of rack {event.rack} that is not at the station")
            trip, since = fetched_at.pop(event.rack)
            exposures[trip] = clock - since
            clock += timing.return_s(state, place)
            state = place
            del at_station[event.rack]
    clock += finish_run()
    if at_station:
        raise ValueError("racks left at the station at the end of the job")
    return Timeline(total_s=clock, exposures_s=exposures, fetches=len(exposures))


def first_come_first_served(problem: RackBatchProblem) -> list[Event]:
    """Tubes in request order; a missing rack is fetched when its tube comes up.

    With the station full, the rack to return is one with no tube left to pick, else the least
    recently used one; the racks still out are returned at the end in slot order.
    """
    rack_index = {rack.id: i for i, rack in enumerate(problem.racks)}
    racks = [rack_index[tube.rack] for tube in problem.tubes]
    remaining: dict[int, int] = {}
    for r in racks:
        remaining[r] = remaining.get(r, 0) + 1
    k_max = problem.capacity
    events: list[Event] = []
    at_station: dict[int, int] = {}
    last_used: dict[int, int] = {}
    for t, r in enumerate(racks):
        if r not in at_station:
            if len(at_station) == k_max:
                victim = min(at_station, key=lambda x: (remaining[x] > 0, last_used[x]))
                events.append(Return(rack=victim))
                del at_station[victim]
            slot = min(set(range(k_max)) - set(at_station.values()))
            events.append(Fetch(rack=r, slot=slot))
            at_station[r] = slot
        events.append(Pick(tube=t))
        last_used[r] = t
        remaining[r] -= 1
    events += [Return(rack=r) for r in sorted(at_station, key=at_station.__getitem__)]
    return events


def by_rack_in_request_order(problem: RackBatchProblem) -> list[Event]:
    """Racks in order of first request, K per trip, each trip's tubes in request order."""
    rack_index = {rack.id: i for i, rack in enumerate(problem.racks)}
    first: list[int] = []
    for tube in problem.tubes:
        if rack_index[tube.rack] not in first:
            first.append(rack_index[tube.rack])
    events: list[Event] = []
    for i in range(0, len(first), problem.capacity):
        group = first[i : i + problem.capacity]
        events += [Fetch(rack=r, slot=s) for s, r in enumerate(group)]
        events += [
            Pick(tube=t) for t, tube in enumerate(problem.tubes) if rack_index[tube.rack] in group
        ]
        events += [Return(rack=r) for r in group]
    return events
