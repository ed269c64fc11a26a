"""Anytime tour search on a cost matrix: construction, local search, then iterated local search
until the deadline or the iteration cap, whichever comes first.

numba kernels cannot read a clock, so the kicks run in chunks sized to take roughly a
twentieth of the remaining budget; the chunking does not change the result (the random state and
tour carry over), so with an iteration cap and no deadline pressure the same seed gives the same
tour.

The numba kernels are imported on first use, not with this module: the daemon process imports
the planner for its models and the numpy-only fallback (`_cold`), and must not pay for numba.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._cold import closed_cost, cold_tour, numpy_only_active

NEIGHBOURS = 16
"""Candidates per node on symmetric matrices: the `ALPHA_NEIGHBOURS` alpha-nearest, then the
nearest (`_construct.candidate_lists`). Measured on the bench instances: 8 alpha + 8 nearest beat
12 or 16 nearest, 12 of which 6 alpha, and 5 or 12 alpha of 16."""

ALPHA_NEIGHBOURS = 8

ASYMMETRIC_NEIGHBOURS = 12
"""Candidates per node (successors, and predecessors) on asymmetric matrices: the nearest."""

_FIRST_CHUNK = 16

DEVIATION_EDGE_FRACTION = 0.2
"""Record-to-record deviation at 200 nodes, as a fraction of the mean edge (see `_deviation`)."""

DOUBLE_BRIDGE_MAX_NODES = 1200
"""Route searches (`search_tour(double_bridge=True)`) of up to this many nodes kick with double
bridges instead of segment swaps. Measured on the bench instances (CPU-time budgets, paired with
the segment-swap search): at 200 nodes, 20 ms, 400 seeds, rack grids +0.227 % to +0.200 % mean
(-0.027 ± 0.007), uniform +0.072 % to +0.065 % (-0.007 ± 0.005); at 1000 nodes, 250 ms, 100
seeds, once the moves were faster and Or-3opt reversed both segments too, rack grids +0.167 % to
+0.146 % (-0.020 ± 0.010), uniform +0.130 % to +0.119 % (-0.011 ± 0.005) (before those changes
double bridges measured worse there). At 2000 nodes, 1 s, 30 seeds: no clear difference (rack
grids +0.002 ± 0.001 %, uniform -0.010 ± 0.009 %), so they keep segment swaps."""

EXACT_MAX_NODES = 9
"""Up to this many nodes the tour is found by enumeration (8! = 40320 orders): exact, and
needed below ~5 nodes anyway, where the perturbation has no room."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TourSearchResult:
    """A closed tour over the matrix's nodes, starting at node 0."""

    tour: NDArray[np.int32]
    cost_ticks: int
    iterations: int


def _max_segment(m: int) -> int:
    # Kicks swap segments of up to a quarter of the tour, at most 100 nodes (tuned on the bench
    # instances: at n = 200, 50 left basins that 10 never left; at n = 1000-2000, 100 beat 30,
    # 50 and 200).
    return min(100, max(10, m // 4))


def _deviation(D: NDArray[np.int32], tour: NDArray[np.int32], last_fixed: bool) -> int:
    """Record-to-record acceptance: a kicked tour may be kept up to this many ticks above the
    best so far: a fifth of the mean edge of `tour` up to 200 nodes, fading with the fourth power
    of the size (none left at 1000). Measured on the bench instances (CPU-time budgets, 8-16
    seeds): at 200 nodes it lets more seeds leave the basin of the first local optimum on rack
    grids (+0.30 % to +0.14-0.26 % mean in six runs), uniform no worse; at 1000 nodes even a few
    ticks made rack grids worse (+0.25 % to +0.30 %): there the search is still descending."""
    m = tour.shape[0]
    edges = D[tour, np.roll(tour, -1)].astype(np.int64)
    if last_fixed:
        # The open route's dummy end: its edge to a point is a penalty, not a move.
        at = int(np.flatnonzero(tour == m - 1)[0])
        edges[[at, at - 1]] = 0
        m -= 2
    mean_edge = float(edges.sum()) / max(m, 1)
    return int(DEVIATION_EDGE_FRACTION * mean_edge * min(1.0, (200 / m) ** 4))


def exact_tour(D: NDArray[np.int32], *, last_fixed: bool = False) -> TourSearchResult:
    """The optimal closed tour from node 0 by enumerating every order (small `m` only)."""
    m = D.shape[0]
    if m <= 2:
        tour = np.arange(m, dtype=np.int32)
        return TourSearchResult(tour=tour, cost_ticks=closed_cost(D, tour), iterations=0)
    orders = np.array(list(itertools.permutations(range(1, m))), dtype=np.int64)
    tours = np.concatenate([np.zeros((orders.shape[0], 1), dtype=np.int64), orders], axis=1)
    D64 = D.astype(np.int64)
    costs = D64[tours, np.roll(tours, -1, axis=1)].sum(axis=1)
    if last_fixed:
        # Only for the open-route dummy: its tours must end with it (same cost either way).
        costs = np.where(tours[:, -1] == m - 1, costs, np.iinfo(np.int64).max)
    best = int(np.argmin(costs))  # first minimum: deterministic
    return TourSearchResult(
        tour=tours[best].astype(np.int32), cost_ticks=int(costs[best]), iterations=0
    )


def search_tour(
    D: NDArray[np.int32],
    *,
    symmetric: bool,
    budget_s: float,
    seed: int,
    max_iterations: int | None = None,
    last_fixed: bool = False,
    exact_max_nodes: int = EXACT_MAX_NODES,
    double_bridge: bool = False,
) -> TourSearchResult:
    """Best closed tour found within `budget_s` seconds (construction always completes).

    `last_fixed` puts node m-1 last in the starting tour (used for the dummy end of open routes).
    Tours of up to `exact_max_nodes` nodes (at most `EXACT_MAX_NODES`) are enumerated instead.
    Inside `numpy_only()` the tour comes from the numpy-only `cold_tour` (no iterations).

    `double_bridge` (routes use it): up to `DOUBLE_BRIDGE_MAX_NODES` nodes, kick with double
    bridges instead of segment swaps.
    """
    deadline = time.perf_counter() + budget_s
    m = D.shape[0]
    if m <= min(exact_max_nodes, EXACT_MAX_NODES):
        return exact_tour(D, last_fixed=last_fixed)
    if numpy_only_active():
        tour, cost_ticks = cold_tour(
            D, symmetric=symmetric, budget_s=budget_s, last_fixed=last_fixed
        )
        return TourSearchResult(tour=tour, cost_ticks=cost_ticks, iterations=0)
    from controllerd.planner import _kernels
    from controllerd.planner._construct import (
        candidate_lists,
        nearest_neighbour_tour,
        neighbour_lists,
    )

    if symmetric:
        nout = nin = candidate_lists(D, ALPHA_NEIGHBOURS, NEIGHBOURS)
    else:
        nout = neighbour_lists(D, ASYMMETRIC_NEIGHBOURS, False)
        nin = neighbour_lists(D, ASYMMETRIC_NEIGHBOURS, True)
    tour = nearest_neighbour_tour(D, nout, last_fixed)
    first_cost = int(_kernels.descend(D, nin, nout, symmetric, tour))
    cost = np.array([first_cost, first_cost], dtype=np.int64)  # current, best
    record = tour.copy()
    deviation = _deviation(D, tour, last_fixed)
    # splitmix-style scrambling so that seeds 0, 1, 2 … give unrelated streams (state ≠ 0).
    rng = np.array([(seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % 2**64 or 1], np.uint64)
    bridges = double_bridge and m <= DOUBLE_BRIDGE_MAX_NODES
    cap = max_iterations if max_iterations is not None else 2**62
    done = 0
    chunk = _FIRST_CHUNK
    max_segment = _max_segment(m)
    while done < cap:
        now = time.perf_counter()
        remaining = deadline - now
        if remaining <= 0:
            break
        step = min(chunk, cap - done)
        _kernels.ils_chunk(
            D, nin, nout, symmetric, tour, record, cost, rng, step, max_segment, deviation, bridges
        )
        done += step
        took = time.perf_counter() - now
        per_iteration = max(took / step, 1e-7)
        chunk = int(max(1.0, min(remaining / 20 / per_iteration, 1e6)))  # remaining may be inf
    start = int(np.flatnonzero(record == 0)[0])
    tour = np.roll(record, -start)
    return TourSearchResult(tour=tour, cost_ticks=int(cost[1]), iterations=done)
