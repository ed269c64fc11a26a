# mypy: disable-error-code="no-any-return"
# (numba kernels: scalars read from typed arrays are Any to mypy, so returns are not checked)
"""numba kernels of the tour search: local search, perturbation, iterated local search.

Everything here works on one closed tour over `m` nodes and an int32 cost matrix `D` in ticks
(`D[i, j]` = cost of going from node i to node j; not necessarily symmetric). Node 0 is the
depot; callers rotate the tour so it comes first. Problem-specific shaping (open routes, pick and
place) happens in the matrices the callers build, not here. The tour representation and its
journal of reversals are in `_tour_ops`, the moves (2-opt, Or-opt, Or-3opt) in `_moves`.

Local search processes a FIFO queue of "dirty" nodes (don't-look bits: a node is only looked at
again after a move touched it) and tries, from each, 2-opt, then Or-opt, then Or-3opt (on
symmetric matrices with its both-reversed variant), then (symmetric only) Or-3opt reversed.
The perturbation is a segment swap (double bridge on two
adjacent segments: short ones, and one kick in ten up to a quarter of the tour), or on request
(small routes) a true double bridge on three segments; both reverse nothing and so are valid for
asymmetric matrices too. Iterated local search kicks, repairs, keeps
the result when it is no worse than the current tour or within a small deviation of the best
(record-to-record) and undoes it otherwise; `ils_chunk` runs a fixed number of kicks
so the caller can check a deadline between chunks (numba has no clock) and an iteration cap
makes runs reproducible.

All kernels are compiled with `cache=True, nogil=True` on fixed dtypes; see `warm_up`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._construct import (
    candidate_lists,
    nearest_neighbour_tour,
    neighbour_lists,
    tour_cost,
)
from controllerd.planner._jit import jit as _jit
from controllerd.planner._moves import try_2opt, try_or3opt, try_or3opt_reversed, try_or_opt
from controllerd.planner._tour_ops import (
    push,
    rand_below,
    reverse,
    reverse_logged,
    set_positions,
    wrap,
)

GLOBAL_KICK_ODDS = 10

JOURNAL_CAPACITY = 4096
"""Reversals logged per kick; beyond it a rejected kick is undone by copying the best tour."""


@_jit
def _local_search(
    D: NDArray[np.int32],
    nin: NDArray[np.int32],
    nout: NDArray[np.int32],
    symmetric: bool,
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    queue: NDArray[np.int32],
    inq: NDArray[np.bool_],
    qs: NDArray[np.int64],
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> np.int64:
    """Improve until no queued node has an improving move; returns the (≤ 0) cost change."""
    m = tour.shape[0]
    total = np.int64(0)
    while qs[1] > 0:
        a = queue[qs[0]]
        qs[0] = wrap(qs[0] + 1, m)
        qs[1] -= 1
        inq[a] = False
        while True:
            delta = np.int64(0)
            if symmetric:
                delta = try_2opt(a, D, nout, tour, pos, queue, inq, qs, journal, jlen)
            if delta == 0:
                delta = try_or_opt(
                    a, D, nin, nout, symmetric, tour, pos, queue, inq, qs, journal, jlen
                )
            if delta == 0:
                delta = try_or3opt(
                    a, D, nin, nout, symmetric, tour, pos, queue, inq, qs, journal, jlen
                )
            if delta == 0 and symmetric:
                delta = try_or3opt_reversed(a, D, nout, tour, pos, queue, inq, qs, journal, jlen)
            if delta == 0:
                break
            total += delta
    return total


@_jit
def _segment_swap_kick(
    D: NDArray[np.int32],
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    rng: NDArray[np.uint64],
    max_segment: int,
    queue: NDArray[np.int32],
    inq: NDArray[np.bool_],
    qs: NDArray[np.int64],
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> np.int64:
    """Or-3opt perturbation: a X Y z → a Y X z for two short adjacent segments X, Y."""
    m = tour.shape[0]
    l1 = 1 + rand_below(rng, max_segment)
    l2 = 1 + rand_below(rng, max_segment)
    i = rand_below(rng, m)
    a = tour[i]
    x1 = tour[wrap(i + 1, m)]
    x2 = tour[wrap(i + l1, m)]
    y1 = tour[wrap(i + l1 + 1, m)]
    y2 = tour[wrap(i + l1 + l2, m)]
    z = tour[wrap(i + l1 + l2 + 1, m)]
    delta = np.int64(D[a, y1]) + D[y2, x1] + D[x2, z] - D[a, x1] - D[x2, y1] - D[y2, z]
    reverse_logged(tour, pos, i + 1, i + l1, journal, jlen)
    reverse_logged(tour, pos, i + l1 + 1, i + l1 + l2, journal, jlen)
    reverse_logged(tour, pos, i + 1, i + l1 + l2, journal, jlen)
    for v in (a, x1, x2, y1, y2, z):
        push(v, queue, inq, qs)
    return delta


@_jit
def _double_bridge_kick(
    D: NDArray[np.int32],
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    rng: NDArray[np.uint64],
    max_segment: int,
    queue: NDArray[np.int32],
    inq: NDArray[np.bool_],
    qs: NDArray[np.int64],
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> np.int64:
    """Double bridge: a B C D e → a D C B e for three short adjacent segments, none reversed
    (valid for asymmetric matrices). Its four new edges form two separate alternating cycles, so
    no sequential move of the local search undoes it in one step, as Or-3opt does a segment
    swap."""
    m = tour.shape[0]
    l1 = 1 + rand_below(rng, max_segment)
    l2 = 1 + rand_below(rng, max_segment)
    l3 = 1 + rand_below(rng, max_segment)
    i = rand_below(rng, m)
    a = tour[i]
    b1 = tour[wrap(i + 1, m)]
    b2 = tour[wrap(i + l1, m)]
    c1 = tour[wrap(i + l1 + 1, m)]
    c2 = tour[wrap(i + l1 + l2, m)]
    d1 = tour[wrap(i + l1 + l2 + 1, m)]
    d2 = tour[wrap(i + l1 + l2 + l3, m)]
    e = tour[wrap(i + l1 + l2 + l3 + 1, m)]
    delta = (
        np.int64(D[a, d1])
        + D[d2, c1]
        + D[c2, b1]
        + D[b2, e]
        - D[a, b1]
        - D[b2, c1]
        - D[c2, d1]
        - D[d2, e]
    )
    length = l1 + l2 + l3
    reverse_logged(tour, pos, i + 1, i + length, journal, jlen)  # D' C' B'
    reverse_logged(tour, pos, i + 1, i + l3, journal, jlen)  # D
    reverse_logged(tour, pos, i + l3 + 1, i + l3 + l2, journal, jlen)  # C
    reverse_logged(tour, pos, i + l3 + l2 + 1, i + length, journal, jlen)  # B
    for v in (a, b1, b2, c1, c2, d1, d2, e):
        push(v, queue, inq, qs)
    return delta


@_jit
def descend(
    D: NDArray[np.int32],
    nin: NDArray[np.int32],
    nout: NDArray[np.int32],
    symmetric: bool,
    tour: NDArray[np.int32],
) -> np.int64:
    """Local search from `tour` (changed in place) with every node queued; returns its cost."""
    m = tour.shape[0]
    pos = np.empty(m, dtype=np.int32)
    set_positions(tour, pos)
    queue = tour.copy()
    inq = np.ones(m, dtype=np.bool_)
    qs = np.array([0, m], dtype=np.int64)
    journal = np.empty((1, 2), dtype=np.int32)
    jlen = np.zeros(1, dtype=np.int64)
    _local_search(D, nin, nout, symmetric, tour, pos, queue, inq, qs, journal, jlen)
    return tour_cost(D, tour)


@_jit
def ils_chunk(
    D: NDArray[np.int32],
    nin: NDArray[np.int32],
    nout: NDArray[np.int32],
    symmetric: bool,
    tour: NDArray[np.int32],
    record: NDArray[np.int32],
    cost: NDArray[np.int64],
    rng: NDArray[np.uint64],
    iterations: int,
    max_segment: int,
    deviation: int,
    double_bridge: bool,
) -> None:
    """Run `iterations` kick + repair rounds on a locally optimal `tour` (updated in place).

    Record-to-record acceptance: a repaired tour is kept when it is no worse than the current
    one, or no more than `deviation` ticks worse than the best tour so far (`record`, whose cost
    is `cost[1]`; `cost[0]` is the current tour's). Kicks are segment swaps, or with
    `double_bridge` double bridges. `rng` carries the random state between chunks, so any split
    of the same total iterations gives the same tours.
    """
    m = tour.shape[0]
    if m < 8:
        return  # a kick needs room; tiny tours are already exhausted by local search
    max_segment = max(1, min(max_segment, (m - 2) // 3))
    pos = np.empty(m, dtype=np.int32)
    set_positions(tour, pos)
    accepted = tour.copy()
    queue = np.empty(m, dtype=np.int32)
    inq = np.zeros(m, dtype=np.bool_)
    qs = np.zeros(2, dtype=np.int64)
    journal = np.empty((JOURNAL_CAPACITY, 2), dtype=np.int32)
    jlen = np.zeros(1, dtype=np.int64)
    # One kick in GLOBAL_KICK_ODDS swaps segments of up to a quarter of the tour: it reorders
    # whole regions (on rack grids, the order of the racks), which short swaps never do.
    global_segment = max(1, min(m // 4, (m - 2) // 3))
    bridge_segment = max(1, min(max_segment, (m - 2) // 4))
    for _ in range(iterations):
        jlen[0] = 0
        if double_bridge:
            delta = _double_bridge_kick(
                D, tour, pos, rng, bridge_segment, queue, inq, qs, journal, jlen
            )
        else:
            segment = global_segment if rand_below(rng, GLOBAL_KICK_ODDS) == 0 else max_segment
            delta = _segment_swap_kick(D, tour, pos, rng, segment, queue, inq, qs, journal, jlen)
        delta += _local_search(D, nin, nout, symmetric, tour, pos, queue, inq, qs, journal, jlen)
        if delta <= 0 or cost[0] + delta <= cost[1] + deviation:
            # Accepting sideways moves too lets the search drift across plateaus (grids have many),
            # and a slightly worse tour can lead out of a basin that no single kick leaves.
            cost[0] += delta
            accepted[:] = tour
            if cost[0] < cost[1]:
                cost[1] = cost[0]
                record[:] = tour
        elif jlen[0] <= journal.shape[0]:
            for r in range(jlen[0] - 1, -1, -1):
                reverse(tour, pos, journal[r, 0], journal[r, 1])
        else:
            tour[:] = accepted
            set_positions(tour, pos)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel on a tiny problem."""
    rng = np.random.default_rng(0)
    pts = rng.random((12, 2))
    D = np.rint(np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1)) * 1e4).astype(
        np.int32
    )
    for symmetric in (True, False):
        nout = candidate_lists(D, 3, 5) if symmetric else neighbour_lists(D, 5, False)
        nin = neighbour_lists(D, 5, True)
        for last_fixed in (False, True):
            tour = nearest_neighbour_tour(D, nout, last_fixed)
        c = descend(D, nin, nout, symmetric, tour)
        cost = np.array([c, c], dtype=np.int64)
        state = np.array([1], dtype=np.uint64)
        for double_bridge in (False, True):
            record = tour.copy()
            ils_chunk(D, nin, nout, symmetric, tour, record, cost, state, 5, 3, 10, double_bridge)
