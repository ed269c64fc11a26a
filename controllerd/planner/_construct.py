# mypy: disable-error-code="no-any-return"
# (numba kernels: scalars read from typed arrays are Any to mypy, so returns are not checked)
"""numba kernels that set the search up: candidate neighbour lists, the starting tour, tour cost.

`D` is an int32 cost matrix in ticks (`D[i, j]` = cost from node i to node j); node 0 is the
depot where every tour starts.

Candidates for symmetric matrices mix alpha-nearness (Helsgaun's LKH: an edge is a good
candidate when it is short compared with the longest edge on the minimum spanning tree path it
would replace) with plain nearness. On rack grids, a node's nearest nodes are all in its own
rack and, under the max-of-axes move time, tie by the dozen; the few short edges between racks
that good tours use are alpha-near but not near.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._jit import jit as _jit


@_jit
def _keep_smallest(
    key: np.int64,
    node: int,
    best_key: NDArray[np.int64],
    best_node: NDArray[np.int32],
    filled: int,
) -> int:
    """Insert (key, node) into the sorted buffers, which hold `filled` of at most their length
    entries, dropping the largest when full; returns the new fill. The buffers are ~10 long, so
    insertion beats any heap."""
    k = best_key.shape[0]
    if filled == k and key >= best_key[k - 1]:
        return filled
    slot = filled if filled < k else k - 1
    while slot > 0 and best_key[slot - 1] > key:
        best_key[slot] = best_key[slot - 1]
        best_node[slot] = best_node[slot - 1]
        slot -= 1
    best_key[slot] = key
    best_node[slot] = node
    return filled + 1 if filled < k else filled


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
            filled = _keep_smallest(c, j, best_cost, best_node, filled)
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


@_jit
def _spanning_tree(D: NDArray[np.int32]) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Prim's minimum spanning tree (symmetric D) from node 0, in O(m²): each node's parent
    (-1 for node 0) and the order nodes joined the tree (every parent before its children)."""
    m = D.shape[0]
    parent = np.full(m, -1, dtype=np.int32)
    order = np.empty(m, dtype=np.int32)
    key = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    in_tree = np.zeros(m, dtype=np.bool_)
    key[0] = 0
    for t in range(m):
        u = -1
        best = np.iinfo(np.int64).max
        for v in range(m):
            if not in_tree[v] and key[v] < best:
                best = key[v]
                u = v
        in_tree[u] = True
        order[t] = u
        for v in range(m):
            if not in_tree[v] and D[u, v] < key[v]:
                key[v] = D[u, v]
                parent[v] = u
    return parent, order


@_jit
def candidate_lists(D: NDArray[np.int32], k_alpha: int, k: int) -> NDArray[np.int32]:
    """k candidates per node for a symmetric D, cheapest first: the `k_alpha` alpha-nearest,
    then the nearest not yet in, up to k. O(m²·k) time, O(m·k) memory.

    alpha(i, j) = D[i, j] - beta(i, j), beta being the longest edge on the spanning tree path
    from i to j (0 for tree edges); for each i, beta to every node comes from one pass over the
    tree in Prim order (LKH's method), ties broken by D.
    """
    m = D.shape[0]
    k = min(k, m - 1)
    k_alpha = min(k_alpha, k)
    parent, order = _spanning_tree(D)
    nearest = neighbour_lists(D, k, False)
    beta = np.empty(m, dtype=np.int64)
    on_path = np.zeros(m, dtype=np.int32)  # == i + 1: on the tree path from i to the root
    out = np.empty((m, k), dtype=np.int32)
    best_key = np.empty(k_alpha, dtype=np.int64)
    best_node = np.empty(k_alpha, dtype=np.int32)
    for i in range(m):
        beta[i] = -1
        on_path[i] = i + 1
        u = i
        while parent[u] >= 0:
            p = parent[u]
            beta[p] = max(beta[u], np.int64(D[u, p]))
            on_path[p] = i + 1
            u = p
        for t in range(1, m):
            j = order[t]
            if on_path[j] != i + 1:
                beta[j] = max(beta[parent[j]], np.int64(D[j, parent[j]]))
        filled = 0
        for j in range(m):
            if j == i:
                continue
            key = ((np.int64(D[i, j]) - beta[j]) << np.int64(32)) + np.int64(D[i, j])
            filled = _keep_smallest(key, j, best_key, best_node, filled)
        count = 0
        for s in range(filled):
            out[i, count] = best_node[s]
            count += 1
        for s in range(k):
            if count == k:
                break
            c = nearest[i, s]
            known = False
            for r in range(count):
                if out[i, r] == c:
                    known = True
                    break
            if not known:
                out[i, count] = c
                count += 1
        # Cheapest first: the moves stop scanning a list at the first candidate too far away.
        for a in range(1, k):
            c = out[i, a]
            b = a
            while b > 0 and D[i, out[i, b - 1]] > D[i, c]:
                out[i, b] = out[i, b - 1]
                b -= 1
            out[i, b] = c
    return out
