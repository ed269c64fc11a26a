# mypy: disable-error-code="no-any-return"
# (numba kernels: scalars read from typed arrays are Any to mypy, so returns are not checked)
"""numba kernels that set the search up: candidate neighbour lists, the starting tour, tour cost.

`D` is an int32 cost matrix in ticks (`D[i, j]` = cost from node i to node j); node 0 is the
depot where every tour starts.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._jit import jit as _jit


@_jit
def neighbour_lists(D: NDArray[np.int32], k: int, incoming: bool) -> NDArray[np.int32]:
    """The k cheapest other nodes of every node, cheapest first, in O(m²·k) without sorting rows.

    `incoming=False` ranks `D[i, j]` (where to go from i), `incoming=True` ranks `D[j, i]`.
    """
    m = D.shape[0]
    k = min(k, m - 1)
    out = np.empty((m, k), dtype=np.int32)
    best_cost = np.empty(k, dtype=np.int64)
    best_node = np.empty(k, dtype=np.int32)
    for i in range(m):
        filled = 0
        for j in range(m):
            if j == i:
                continue
            c = np.int64(D[j, i]) if incoming else np.int64(D[i, j])
            if filled == k and c >= best_cost[k - 1]:
                continue
            # Insertion into the small sorted buffer: k is ~10, so this beats any heap.
            slot = filled if filled < k else k - 1
            while slot > 0 and best_cost[slot - 1] > c:
                best_cost[slot] = best_cost[slot - 1]
                best_node[slot] = best_node[slot - 1]
                slot -= 1
            best_cost[slot] = c
            best_node[slot] = j
            if filled < k:
                filled += 1
        for s in range(k):
            out[i, s] = best_node[s]
    return out


@_jit
def nearest_neighbour_tour(
    D: NDArray[np.int32], nout: NDArray[np.int32], last_fixed: bool
) -> NDArray[np.int32]:
    """Greedy nearest-neighbour tour from node 0; with `last_fixed`, node m-1 is put last."""
    m = D.shape[0]
    tour = np.empty(m, dtype=np.int32)
    visited = np.zeros(m, dtype=np.bool_)
    visited[0] = True
    end = m
    if last_fixed:
        visited[m - 1] = True
        tour[m - 1] = m - 1
        end = m - 1
    tour[0] = 0
    cur = 0
    for t in range(1, end):
        nxt = -1
        for s in range(nout.shape[1]):
            c = nout[cur, s]
            if not visited[c]:
                nxt = c
                break
        if nxt < 0:
            best = np.iinfo(np.int64).max
            for j in range(m):
                if not visited[j] and D[cur, j] < best:
                    best = D[cur, j]
                    nxt = j
        tour[t] = nxt
        visited[nxt] = True
        cur = nxt
    return tour


@_jit
def tour_cost(D: NDArray[np.int32], tour: NDArray[np.int32]) -> np.int64:
    """Cost of the closed tour in ticks."""
    m = tour.shape[0]
    total = np.int64(0)
    for t in range(m):
        total += D[tour[t], tour[(t + 1) % m]]
    return total
