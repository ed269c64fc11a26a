"""Rack-batch problem: which racks to fetch together, in which order, and the tube route of each
batch, so that the whole job is short and no rack stays out longer than the exposure limit.

Timeline of one batch (the store and the gantry take turns; see `docs/planner.md`): the store
fetches the batch's racks one after another (the i-th into station slot i), the gantry picks every
tube of the batch in one closed tour from its home (a pick-and-place tour), then the store returns
the racks in fetch order. A rack's exposure is its time at the station, from the end of its fetch
to the start of its return. Fetch and return times come from the store geometry (`_store`).

Search: a rack whose tubes cannot all be picked within the limit even alone is split into visits
(the fewest consecutive pieces of its best pick tour that fit); every other rack is one visit. The
visits are ordered by a tour through the store (carousel angle and lift height, the same search as
routes), then an exact dynamic programme cuts that sequence into batches of at most K distinct
racks whose exposures all fit (a split in the style of Prins). Iterated local search then perturbs
the sequence (segment reversal, segment move, swap) and re-splits, keeping changes that are no
worse, until the budget, the iteration cap or `_STALL_ITERATIONS` perturbations in a row without
a shorter job. Batch pick tours use a fixed iteration count, so a seed and an iteration cap fix
the plan.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._motion import TICKS_PER_S, path_time_s
from controllerd.planner._pick_place import pick_place_matrix
from controllerd.planner._rack_model import (
    JobFigures,
    RackBatch,
    RackBatchPlan,
    RackBatchProblem,
)
from controllerd.planner._route import open_route_matrix, route_order
from controllerd.planner._search import search_tour
from controllerd.planner._store import StoreState
from controllerd.planner._timeline import (
    Event,
    Fetch,
    Pick,
    Return,
    by_rack_in_request_order,
    first_come_first_served,
    simulate,
)

_NO_DEADLINE_S = 3600.0  # sub-searches stop on their iteration cap, never on a clock
_STORE_TOUR_ITERATIONS = 3000
_EPS_S = 1e-9
_STALL_ITERATIONS = 500
"""Perturbations in a row without a shorter job that end the search before its budget. The
store tour and the exact split are usually as good as it gets (on the bench's jobs, 20 to 300
tubes, no perturbation of thousands ever found a shorter job), so a small job's plan is ready in
milliseconds instead of after the whole budget; a big job reaches its budget first."""


_PICK_EXACT_MAX_NODES = 6  # 5! orders; above, local search and a few kicks are as good and faster


_SPLIT_ODDS = 10
"""One perturbation in ten splits a visit (the rack is fetched once more), one merges two."""


def _pick_iterations(n: int) -> int:
    return min(2 * n, 60)


@dataclass(frozen=True, slots=True)
class _Visit:
    """One rack trip's share of work: a rack and the tubes picked from it on that trip."""

    rack: int
    tubes: tuple[int, ...]
    alone_order: tuple[int, ...] | None = None
    """A pick order known to fit the exposure limit when the visit is alone (split racks)."""


@dataclass(frozen=True, slots=True)
class _BatchTimes:
    order: list[int]
    fetch_s: list[float]
    pick_s: float
    return_s: list[float]

    @property
    def total_s(self) -> float:
        return sum(self.fetch_s) + self.pick_s + sum(self.return_s)

    def exposures(self) -> list[float]:
        """Per rack in fetch order: later fetches, the picking, earlier returns."""
        k = len(self.fetch_s)
        return [sum(self.fetch_s[i + 1 :]) + self.pick_s + sum(self.return_s[:i]) for i in range(k)]


@dataclass(slots=True)
class _Job:
    """The problem as arrays, with the caches the search evaluates batches through."""

    problem: RackBatchProblem
    offsets: NDArray[np.float64] = field(init=False)
    destinations: NDArray[np.float64] = field(init=False)
    slots: NDArray[np.float64] = field(init=False)
    start: NDArray[np.float64] = field(init=False)
    places: list[StoreState] = field(init=False)
    picks: dict[tuple[int, ...], tuple[float, list[int]]] = field(default_factory=dict)
    batches: dict[tuple[int, tuple[int, ...]], _BatchTimes] = field(default_factory=dict)
    visits: list[_Visit] = field(default_factory=list)
    _visit_ids: dict[tuple[int, tuple[int, ...]], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.problem
        self.offsets = np.asarray([t.position for t in p.tubes], dtype=np.float64).reshape(-1, 2)
        self.destinations = np.asarray([t.destination for t in p.tubes], np.float64).reshape(-1, 2)
        self.slots = np.asarray(p.station.slots, dtype=np.float64)
        self.start = np.asarray(p.start, dtype=np.float64)
        self.places = [rack.place() for rack in p.racks]

    def set_visits(self, visits: list[_Visit]) -> None:
        self.visits = visits
        self._visit_ids = {(v.rack, tuple(sorted(v.tubes))): i for i, v in enumerate(visits)}

    def visit_id(self, rack: int, tubes: Sequence[int]) -> int:
        """The id of the visit picking `tubes` from `rack` (added if new; ids never change, so
        the caches keyed by them stay valid)."""
        key = (rack, tuple(sorted(tubes)))
        vid = self._visit_ids.get(key)
        if vid is None:
            vid = self._visit_ids[key] = len(self.visits)
            self.visits.append(_Visit(rack=rack, tubes=key[1]))
        return vid

    def pick_cost_s(self, order: Sequence[int], slot_of: dict[int, int]) -> float:
        """Gantry time of one batch: home → source → destination → … → home, plus handling."""
        stops = [self.start]
        for t in order:
            stops.append(self.slots[slot_of[t]] + self.offsets[t])
            stops.append(self.destinations[t])
        stops.append(self.start)
        moves = path_time_s(np.asarray(stops), self.problem.motion.limits())
        return moves + len(order) * self.problem.handling.per_tube_s

    def pick(self, vids: tuple[int, ...]) -> tuple[float, list[int]]:
        """Best pick tour found for the visits `vids` in slots 0, 1, …: (seconds, tube order)."""
        cached = self.picks.get(vids)
        if cached is not None:
            return cached
        slot_of = {t: s for s, v in enumerate(vids) for t in self.visits[v].tubes}
        tubes = [t for v in vids for t in self.visits[v].tubes]
        sources = np.asarray([self.slots[slot_of[t]] + self.offsets[t] for t in tubes])
        D = pick_place_matrix(
            self.start, sources, self.destinations[tubes], self.problem.motion.limits(), closed=True
        )
        result = search_tour(
            D,
            symmetric=False,
            budget_s=_NO_DEADLINE_S,
            seed=0,
            max_iterations=_pick_iterations(len(tubes)),
            exact_max_nodes=_PICK_EXACT_MAX_NODES,
        )
        order = [tubes[int(v) - 1] for v in result.tour[1:]]
        best = (self.pick_cost_s(order, slot_of), order)
        known = self.visits[vids[0]].alone_order if len(vids) == 1 else None
        if known is not None:
            best = min(best, (self.pick_cost_s(known, slot_of), list(known)))
        self.picks[vids] = best
        return best

    def evaluate(self, prev_rack: int, vids: tuple[int, ...]) -> _BatchTimes:
        """Times of one batch after the store last returned `prev_rack` (-1: job start)."""
        key = (prev_rack, vids)
        if key in self.batches:
            return self.batches[key]
        timing = self.problem.store.timing()
        state = self.problem.store.initial_state() if prev_rack < 0 else self.places[prev_rack]
        fetches: list[float] = []
        for v in vids:
            rack = self.places[self.visits[v].rack]
            fetches.append(timing.fetch_s(state, rack))
            state = timing.after_fetch(rack)
        pick_s, order = self.pick(vids)
        returns: list[float] = []
        for v in vids:
            rack = self.places[self.visits[v].rack]
            returns.append(timing.return_s(state, rack))
            state = rack
        times = _BatchTimes(order=order, fetch_s=fetches, pick_s=pick_s, return_s=returns)
        self.batches[key] = times
        return times


def _make_visits(job: _Job) -> list[_Visit]:
    """One visit per rack with tubes, split into the fewest pieces that fit the limit alone."""
    limit = job.problem.exposure_limit_s
    by_rack: dict[int, list[int]] = {}
    rack_index = {rack.id: i for i, rack in enumerate(job.problem.racks)}
    for t, tube in enumerate(job.problem.tubes):
        by_rack.setdefault(rack_index[tube.rack], []).append(t)
    visits: list[_Visit] = []
    for rack, tubes in sorted(by_rack.items()):
        job.visits = [_Visit(rack=rack, tubes=tuple(tubes))]
        job.picks.clear()
        pick_s, order = job.pick((0,))
        if pick_s <= limit + _EPS_S:
            visits.append(job.visits[0])
            continue
        slot_of = dict.fromkeys(tubes, 0)
        piece: list[int] = []
        for t in order:
            if piece and job.pick_cost_s([*piece, t], slot_of) > limit:
                visits.append(_Visit(rack=rack, tubes=tuple(piece), alone_order=tuple(piece)))
                piece = []
            piece.append(t)
        visits.append(_Visit(rack=rack, tubes=tuple(piece), alone_order=tuple(piece)))
    job.picks.clear()
    return visits


def _store_tour(job: _Job, seed: int) -> list[int]:
    """Visits ordered by an open tour through the store from its initial state."""
    timing = job.problem.store.timing()
    states = [job.problem.store.initial_state()] + [job.places[v.rack] for v in job.visits]
    m = len(states)
    D = np.zeros((m, m), dtype=np.int32)
    for i, a in enumerate(states):
        for j, b in enumerate(states):
            seconds = max(
                timing.rotate_s(a.angle_deg, b.angle_deg), timing.lift_s(a.level_mm, b.level_mm)
            )
            D[i, j] = round(seconds * TICKS_PER_S)
    result = search_tour(
        open_route_matrix(D),
        symmetric=True,
        budget_s=_NO_DEADLINE_S,
        seed=seed,
        max_iterations=_STORE_TOUR_ITERATIONS,
        last_fixed=True,
    )
    return route_order(result.tour, n=m - 1, closed=False)


def _split(job: _Job, seq: list[int]) -> tuple[float, list[tuple[int, int]]]:
    """Cheapest cut of `seq` into batches of ≤ K distinct racks whose exposures fit."""
    limit = job.problem.exposure_limit_s + _EPS_S
    k_max = job.problem.capacity
    m = len(seq)
    best = [float("inf")] * (m + 1)
    cut = [0] * (m + 1)
    best[0] = 0.0
    for i in range(m):
        if best[i] == float("inf"):
            continue
        prev = job.visits[seq[i - 1]].rack if i else -1
        racks: set[int] = set()
        for j in range(i + 1, min(m, i + k_max) + 1):
            rack = job.visits[seq[j - 1]].rack
            if rack in racks:
                break
            racks.add(rack)
            times = job.evaluate(prev, tuple(seq[i:j]))
            if max(times.exposures()) > limit:
                # Adding a rack adds its fetch and its tubes to the others' exposure: a batch
                # that does not fit is not extended (a prune; pick tours are heuristic).
                break
            cost = best[i] + times.total_s
            if cost < best[j]:
                best[j], cut[j] = cost, i
    cuts: list[tuple[int, int]] = []
    j = m
    while j > 0:
        cuts.append((cut[j], j))
        j = cut[j]
    cuts.reverse()
    return best[m], cuts


def _split_visit(job: _Job, seq: list[int], rng: random.Random) -> list[int] | None:
    """Cut one visit's tubes (in its own best pick order) in two; the second part becomes a
    visit of its own at a random place: the rack will be fetched once more."""
    splittable = [i for i, v in enumerate(seq) if len(job.visits[v].tubes) > 1]
    if not splittable:
        return None
    i = rng.choice(splittable)
    rack = job.visits[seq[i]].rack
    _, order = job.pick((seq[i],))
    cut = 1 + rng.randrange(len(order) - 1)
    out = [*seq[:i], job.visit_id(rack, order[:cut]), *seq[i + 1 :]]
    out.insert(rng.randrange(len(out) + 1), job.visit_id(rack, order[cut:]))
    return out


def _merge_visits(job: _Job, seq: list[int], rng: random.Random) -> list[int] | None:
    """Join two visits of the same rack into one (at the first one's place)."""
    places: dict[int, list[int]] = {}
    for i, v in enumerate(seq):
        places.setdefault(job.visits[v].rack, []).append(i)
    twice = sorted(rack for rack, at in places.items() if len(at) > 1)
    if not twice:
        return None
    rack = rng.choice(twice)
    i, j = sorted(rng.sample(places[rack], 2))
    tubes = job.visits[seq[i]].tubes + job.visits[seq[j]].tubes
    out = list(seq)
    out[i] = job.visit_id(rack, tubes)
    del out[j]
    return out


def _perturb(job: _Job, seq: list[int], rng: random.Random) -> list[int]:
    m = len(seq)
    kind = 0 if m < 2 else rng.randrange(_SPLIT_ODDS)
    if kind < 2:
        changed = (_split_visit if kind == 0 else _merge_visits)(job, seq, rng)
        if changed is not None or m < 2:
            return changed or seq
    out = list(seq)
    move = rng.randrange(3)
    if move == 0:
        i = rng.randrange(m - 1)
        j = min(m, i + 2 + rng.randrange(8))
        out[i:j] = reversed(out[i:j])
    elif move == 1:
        i = rng.randrange(m)
        length = min(m - i, 1 + rng.randrange(4))
        piece = out[i : i + length]
        del out[i : i + length]
        k = rng.randrange(len(out) + 1)
        out[k:k] = piece
    else:
        i, j = rng.randrange(m), rng.randrange(m)
        out[i], out[j] = out[j], out[i]
    return out


def _figures(problem: RackBatchProblem, events: list[Event]) -> JobFigures:
    """Whole-job figures of a list of events, from the one timeline simulator."""
    timeline = simulate(problem, events)
    limit = problem.exposure_limit_s
    return JobFigures(
        cost_s=timeline.total_s,
        fetches=timeline.fetches,
        max_exposure_s=max(timeline.exposures_s, default=0.0),
        exposure_violations=sum(e > limit for e in timeline.exposures_s),
    )


def solve_rack_batches(
    problem: RackBatchProblem, *, budget_s: float, seed: int, max_iterations: int | None
) -> RackBatchPlan:
    """Plan a rack-batch problem."""
    began = time.perf_counter()
    deadline = began + budget_s
    job = _Job(problem)
    job.set_visits(_make_visits(job))
    iterations = 0
    cuts: list[tuple[int, int]] = []
    seq: list[int] = []
    if job.visits:
        tour = _store_tour(job, seed) if len(job.visits) > 1 else [0]
        options = [(*_split(job, s), s) for s in (tour, tour[::-1])]
        cost, cuts, seq = min(options, key=lambda option: option[0])
        rng = random.Random(seed)
        cap = max_iterations if max_iterations is not None else 2**62
        stall = 0
        while iterations < cap and stall < _STALL_ITERATIONS and time.perf_counter() < deadline:
            if len(seq) == 1 and len(job.visits[seq[0]].tubes) == 1:
                break  # one tube: nothing to reorder or split
            candidate = _perturb(job, seq, rng)
            c_cost, c_cuts = _split(job, candidate)
            iterations += 1
            stall = 0 if c_cost < cost - _EPS_S else stall + 1
            if c_cost <= cost:
                cost, cuts, seq = c_cost, c_cuts, candidate
    events: list[Event] = []
    batches: list[RackBatch] = []
    clock = 0.0
    prev = -1
    for i, j in cuts:
        vids = tuple(seq[i:j])
        times = job.evaluate(prev, vids)
        prev = job.visits[vids[-1]].rack
        racks = [job.visits[v].rack for v in vids]
        events += [Fetch(rack=r, slot=s) for s, r in enumerate(racks)]
        events += [Pick(tube=t) for t in times.order]
        events += [Return(rack=r) for r in racks]
        batches.append(
            RackBatch(
                racks=[problem.racks[r].id for r in racks],
                tubes=[problem.tubes[t].id for t in times.order],
                order=times.order,
                exposure_s=times.exposures(),
                start_s=clock,
                pick_s=times.pick_s,
                end_s=clock + times.total_s,
            )
        )
        clock += times.total_s
    figures = _figures(problem, events)
    order = [t for b in batches for t in b.order]
    return RackBatchPlan(
        batches=batches,
        order=order,
        ids=[problem.tubes[t].id for t in order],
        cost_s=figures.cost_s,
        fetches=figures.fetches,
        max_exposure_s=figures.max_exposure_s,
        exposure_violations=figures.exposure_violations,
        fcfs=_figures(problem, first_come_first_served(problem)),
        fcfs_by_rack=_figures(problem, by_rack_in_request_order(problem)),
        elapsed_ms=(time.perf_counter() - began) * 1e3,
        iterations=iterations,
    )
