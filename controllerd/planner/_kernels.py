# mypy: disable-error-code="no-any-return"
# (numba kernels: scalars read from typed arrays are Any to mypy, so returns are not checked)
"""numba kernels of the tour search: local search moves, perturbation, iterated local search.

Everything here works on one closed tour over `m` nodes and an int32 cost matrix `D` in ticks
(`D[i, j]` = cost of going from node i to node j; not necessarily symmetric). Node 0 is the
depot; callers rotate the tour so it comes first. Problem-specific shaping (open routes, pick and
place) happens in the matrices the callers build, not here.

The tour is an array `tour` (position → node) with its inverse `pos`. Every change to it is a
reversal of a cyclic range of positions, logged in a journal, so a rejected perturbation is undone
in time proportional to what it changed rather than O(m).

Moves:
- 2-opt (symmetric matrices only: it reverses a path) over neighbour lists;
- Or-opt: move a segment of 1 to 3 nodes next to one of its neighbours, reversed or not (reversed
  only for symmetric matrices);
- perturbation: an Or-3opt segment swap (double bridge on two short adjacent segments), which
  reverses nothing and so is valid for asymmetric matrices too.

Local search processes a FIFO queue of "dirty" nodes (don't-look bits: a node is only looked at
again after a move touched it). Iterated local search kicks, repairs, keeps the result when it is
no worse and undoes it otherwise; `ils_chunk` runs a fixed number of kicks so the caller can check
a deadline between chunks (numba has no clock) and an iteration cap makes runs reproducible.

All kernels are compiled with `cache=True, nogil=True` on fixed dtypes; see `warm_up`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._construct import nearest_neighbour_tour, neighbour_lists, tour_cost
from controllerd.planner._jit import jit as _jit

JOURNAL_CAPACITY = 4096
"""Reversals logged per kick; beyond it a rejected kick is undone by copying the best tour."""


@_jit
def _reverse(tour: NDArray[np.int32], pos: NDArray[np.int32], i: int, j: int) -> None:
    """Reverse the cyclic range of positions i..j (inclusive, going forward)."""
    m = tour.shape[0]
    length = (j - i) % m + 1
    for _ in range(length // 2):
        a = tour[i]
        b = tour[j]
        tour[i] = b
        pos[b] = i
        tour[j] = a
        pos[a] = j
        i += 1
        if i == m:
            i = 0
        j -= 1
        if j < 0:
            j = m - 1


@_jit
def _reverse_logged(
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    i: int,
    j: int,
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> None:
    m = tour.shape[0]
    i %= m
    j %= m
    _reverse(tour, pos, i, j)
    n_logged = jlen[0]
    if n_logged < journal.shape[0]:
        journal[n_logged, 0] = i
        journal[n_logged, 1] = j
    jlen[0] = n_logged + 1


@_jit
def _push(v: int, queue: NDArray[np.int32], inq: NDArray[np.bool_], qs: NDArray[np.int64]) -> None:
    if not inq[v]:
        inq[v] = True
        m = queue.shape[0]
        queue[(qs[0] + qs[1]) % m] = v
        qs[1] += 1


@_jit
def _try_2opt(
    a: int,
    D: NDArray[np.int32],
    nout: NDArray[np.int32],
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    queue: NDArray[np.int32],
    inq: NDArray[np.bool_],
    qs: NDArray[np.int64],
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> np.int64:
    m = tour.shape[0]
    pa = pos[a]
    for direction in range(2):
        b = tour[(pa + 1) % m] if direction == 0 else tour[(pa - 1) % m]
        dab = np.int64(D[a, b])
        for s in range(nout.shape[1]):
            c = nout[a, s]
            dac = np.int64(D[a, c])
            if dac >= dab:
                break  # neighbour lists are sorted: no later c can gain on the first edge
            pc = pos[c]
            d = tour[(pc + 1) % m] if direction == 0 else tour[(pc - 1) % m]
            if c == b or d == a:
                continue
            delta = dac + D[b, d] - dab - D[c, d]
            if delta < 0:
                if direction == 0:
                    i, j = pos[b], pc  # a b … c d  →  a c … b d
                else:
                    i, j = pa, pos[d]  # b a … d c  →  b d … a c
                if 2 * ((j - i) % m + 1) > m:
                    # The complement gives the same cycle and moves fewer nodes.
                    i, j = j + 1, i - 1
                _reverse_logged(tour, pos, i, j, journal, jlen)
                _push(a, queue, inq, qs)
                _push(b, queue, inq, qs)
                _push(c, queue, inq, qs)
                _push(d, queue, inq, qs)
                return delta
    return np.int64(0)


@_jit
def _move_segment(
    tour: NDArray[np.int32],
    pos: NDArray[np.int32],
    i: int,
    length: int,
    c: int,
    reverse: bool,
    journal: NDArray[np.int32],
    jlen: NDArray[np.int64],
) -> None:
    """Move positions i..i+length-1 to just after node c (outside it), optionally reversed.

    Done as a swap of adjacent blocks (three reversals), going whichever way moves fewer nodes.
    """
    m = tour.shape[0]
    j = (i + length - 1) % m
    pc = pos[c]
    forward = (pc - j) % m
    backward = (i - pc - 1) % m
    if forward <= backward:
        # [segment][Y] → [Y][segment], Y = j+1..pc
        if not reverse:
            _reverse_logged(tour, pos, i, j, journal, jlen)
        _reverse_logged(tour, pos, j + 1, pc, journal, jlen)
        _reverse_logged(tour, pos, i, pc, journal, jlen)
    else:
        # [X][segment] → [segment][X], X = pc+1..i-1
        _reverse_logged(tour, pos, pc + 1, i - 1, journal, jlen)
        if not reverse:
            _reverse_logged(tour, pos, i, j, journal, jlen)
        _reverse_logged(tour, pos, pc + 1, j, journal, jlen)


@_jit
def _try_or_opt(
    a: int,
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
    m = tour.shape[0]
    pa = pos[a]
    for length in range(1, 4):
        if length + 3 > m:
            break
        for side in range(2):
            if side == 1 and length == 1:
                continue
            i = pa if side == 0 else (pa - length + 1) % m
            j = (i + length - 1) % m
            s1 = tour[i]
            s2 = tour[j]
            p = tour[(i - 1) % m]
            nx = tour[(j + 1) % m]
            removed = np.int64(D[p, s1]) + D[s2, nx] - D[p, nx]
            if removed <= 0:
                continue
            # New edge into s1 (c → s1, or s1 → c when reversed in a symmetric matrix).
            for s in range(nin.shape[1]):
                c = nin[s1, s]
                if D[c, s1] >= removed:
                    break
                if (pos[c] - i) % m < length:
                    continue
                if c != p:
                    e = tour[(pos[c] + 1) % m]
                    delta = np.int64(D[c, s1]) + D[s2, e] - D[c, e] - removed
                    if delta < 0:
                        _move_segment(tour, pos, i, length, c, False, journal, jlen)
                        _push(c, queue, inq, qs)
                        _push(e, queue, inq, qs)
                        _push(p, queue, inq, qs)
                        _push(nx, queue, inq, qs)
                        _push(s1, queue, inq, qs)
                        _push(s2, queue, inq, qs)
                        return delta
                if symmetric and c != nx:
                    f = tour[(pos[c] - 1) % m]
                    delta = np.int64(D[f, s2]) + D[s1, c] - D[f, c] - removed
                    if delta < 0:
                        _move_segment(tour, pos, i, length, f, True, journal, jlen)
                        _push(c, queue, inq, qs)
                        _push(f, queue, inq, qs)
                        _push(p, queue, inq, qs)
                        _push(nx, queue, inq, qs)
                        _push(s1, queue, inq, qs)
                        _push(s2, queue, inq, qs)
                        return delta
            # New edge out of s2 (s2 → c, or c → s2 when reversed in a symmetric matrix).
            for s in range(nout.shape[1]):
                c = nout[s2, s]
                if D[s2, c] >= removed:
                    break
                if (pos[c] - i) % m < length:
                    continue
                if c != nx:
                    f = tour[(pos[c] - 1) % m]
                    delta = np.int64(D[f, s1]) + D[s2, c] - D[f, c] - removed
                    if delta < 0:
                        _move_segment(tour, pos, i, length, f, False, journal, jlen)
                        _push(c, queue, inq, qs)
                        _push(f, queue, inq, qs)
                        _push(p, queue, inq, qs)
                        _push(nx, queue, inq, qs)
                        _push(s1, queue, inq, qs)
                        _push(s2, queue, inq, qs)
                        return delta
                if symmetric and c != p:
                    e = tour[(pos[c] + 1) % m]
                    delta = np.int64(D[c, s2]) + D[s1, e] - D[c, e] - removed
                    if delta < 0:
                        _move_segment(tour, pos, i, length, c, True, journal, jlen)
                        _push(c, queue, inq, qs)
                        _push(e, queue, inq, qs)
                        _push(p, queue, inq, qs)
                        _push(nx, queue, inq, qs)
                        _push(s1, queue, inq, qs)
                        _push(s2, queue, inq, qs)
                        return delta
    return np.int64(0)


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
        qs[0] = (qs[0] + 1) % m
        qs[1] -= 1
        inq[a] = False
        while True:
            delta = np.int64(0)
            if symmetric:
                delta = _try_2opt(a, D, nout, tour, pos, queue, inq, qs, journal, jlen)
            if delta == 0:
                delta = _try_or_opt(
                    a, D, nin, nout, symmetric, tour, pos, queue, inq, qs, journal, jlen
                )
            if delta == 0:
                break
            total += delta
    return total


@_jit
def _rand_below(rng: NDArray[np.uint64], bound: int) -> int:
    """xorshift64*: a tiny RNG whose whole state is one array cell, so runs are reproducible."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    r = (x * np.uint64(2685821657736338717)) >> np.uint64(33)
    return int(r % np.uint64(bound))


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
    l1 = 1 + _rand_below(rng, max_segment)
    l2 = 1 + _rand_below(rng, max_segment)
    i = _rand_below(rng, m)
    a = tour[i]
    x1 = tour[(i + 1) % m]
    x2 = tour[(i + l1) % m]
    y1 = tour[(i + l1 + 1) % m]
    y2 = tour[(i + l1 + l2) % m]
    z = tour[(i + l1 + l2 + 1) % m]
    delta = np.int64(D[a, y1]) + D[y2, x1] + D[x2, z] - D[a, x1] - D[x2, y1] - D[y2, z]
    _reverse_logged(tour, pos, i + 1, i + l1, journal, jlen)
    _reverse_logged(tour, pos, i + l1 + 1, i + l1 + l2, journal, jlen)
    _reverse_logged(tour, pos, i + 1, i + l1 + l2, journal, jlen)
    for v in (a, x1, x2, y1, y2, z):
        _push(v, queue, inq, qs)
    return delta


@_jit
def _set_positions(tour: NDArray[np.int32], pos: NDArray[np.int32]) -> None:
    for t in range(tour.shape[0]):
        pos[tour[t]] = t


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
    _set_positions(tour, pos)
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
    cost: NDArray[np.int64],
    rng: NDArray[np.uint64],
    iterations: int,
    max_segment: int,
) -> None:
    """Run `iterations` kick + repair rounds on a locally optimal `tour` (updated in place).

    `cost[0]` holds the tour's cost and is kept current; `rng` carries the random state between
    chunks, so any split of the same total iterations gives the same tour.
    """
    m = tour.shape[0]
    if m < 8:
        return  # a segment swap needs room; tiny tours are already exhausted by local search
    max_segment = max(1, min(max_segment, (m - 2) // 3))
    pos = np.empty(m, dtype=np.int32)
    _set_positions(tour, pos)
    best = tour.copy()
    queue = np.empty(m, dtype=np.int32)
    inq = np.zeros(m, dtype=np.bool_)
    qs = np.zeros(2, dtype=np.int64)
    journal = np.empty((JOURNAL_CAPACITY, 2), dtype=np.int32)
    jlen = np.zeros(1, dtype=np.int64)
    for _ in range(iterations):
        jlen[0] = 0
        delta = _segment_swap_kick(D, tour, pos, rng, max_segment, queue, inq, qs, journal, jlen)
        delta += _local_search(D, nin, nout, symmetric, tour, pos, queue, inq, qs, journal, jlen)
        if delta <= 0:
            # Accepting sideways moves too lets the search drift across plateaus (grids have many).
            cost[0] += delta
            best[:] = tour
        elif jlen[0] <= journal.shape[0]:
            for r in range(jlen[0] - 1, -1, -1):
                _reverse(tour, pos, journal[r, 0], journal[r, 1])
        else:
            tour[:] = best
            _set_positions(tour, pos)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel on a tiny problem."""
    rng = np.random.default_rng(0)
    pts = rng.random((12, 2))
    D = np.rint(np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1)) * 1e4).astype(
        np.int32
    )
    for symmetric in (True, False):
        nout = neighbour_lists(D, 5, False)
        nin = neighbour_lists(D, 5, True)
        for last_fixed in (False, True):
            tour = nearest_neighbour_tour(D, nout, last_fixed)
        cost = np.array([descend(D, nin, nout, symmetric, tour)], dtype=np.int64)
        ils_chunk(D, nin, nout, symmetric, tour, cost, np.array([1], dtype=np.uint64), 5, 3)
