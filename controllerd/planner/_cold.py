"""The numpy-only tour search used while the worker process is still starting (no numba).

`PlannerWorker` answers plans asked for before its worker is warm from the daemon process, in a
thread: importing numba and loading the compiled kernels takes about a second, which is longer
than a first plan may wait. This search builds a nearest-neighbour tour and improves it with
first-improvement 2-opt sweeps (symmetric matrices only), each step vectorised over the whole
tour, until a short budget runs out. It is several percent above the full search, always valid,
and deterministic for a given matrix and budget that does not cut it short (or no time limit).

`numpy_only()` switches `search_tour` to it for the current context (thread or task).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar

import numpy as np
from numpy.typing import NDArray

MAX_BUDGET_S = 0.1
"""Upper bound on the improvement time: the search shares the daemon's GIL with its event loop."""

_numpy_only: ContextVar[bool] = ContextVar("planner_numpy_only", default=False)


@contextlib.contextmanager
def numpy_only() -> Iterator[None]:
    """Within this block (this thread or task only), tours come from `cold_tour`."""
    token = _numpy_only.set(True)
    try:
        yield
    finally:
        _numpy_only.reset(token)


def numpy_only_active() -> bool:
    """Whether the current context asked for the numpy-only search."""
    return _numpy_only.get()


def closed_cost(D: NDArray[np.int32], tour: NDArray[np.int32]) -> int:
    """Cost of the closed tour in ticks."""
    return int(D[tour, np.roll(tour, -1)].astype(np.int64).sum())


def _nearest_neighbour(D: NDArray[np.int32], last_fixed: bool) -> NDArray[np.int32]:
    m = D.shape[0]
    tour = np.empty(m, dtype=np.int32)
    free = np.ones(m, dtype=np.bool_)
    free[0] = False
    end = m
    if last_fixed:
        free[m - 1] = False
        tour[m - 1] = m - 1
        end = m - 1
    big = np.iinfo(np.int64).max
    cur = 0
    tour[0] = 0
    for t in range(1, end):
        row = np.where(free, D[cur].astype(np.int64), big)
        cur = int(np.argmin(row))  # first minimum: deterministic
        tour[t] = cur
        free[cur] = False
    return tour


def _two_opt_pass(D: NDArray[np.int32], tour: NDArray[np.int32], deadline: float) -> bool:
    """One sweep of first-improvement 2-opt; False when it found nothing (or ran out of time)."""
    m = tour.shape[0]
    improved = False
    for i in range(m - 2):
        if time.perf_counter() > deadline:
            return False
        a, b = tour[i], tour[i + 1]
        c = tour[i + 2 :]
        d = np.roll(tour, -1)[i + 2 :]
        # Edges (a, b) and (c, d) become (a, c) and (b, d): the path b … c is reversed.
        delta = D[a, c].astype(np.int64) + D[b, d] - np.int64(D[a, b]) - D[c, d].astype(np.int64)
        k = int(np.argmin(delta))
        if delta[k] < 0:
            j = i + 2 + k
            tour[i + 1 : j + 1] = tour[i + 1 : j + 1][::-1].copy()
            improved = True
    return improved


def cold_tour(
    D: NDArray[np.int32], *, symmetric: bool, budget_s: float, last_fixed: bool
) -> tuple[NDArray[np.int32], int]:
    """A closed tour from node 0 and its cost: nearest neighbour, then 2-opt while time lasts.

    The time is cut to `MAX_BUDGET_S`, except that an infinite budget (`plan(budget_ms=None)`)
    runs the sweeps until 2-opt finds nothing: the same tour however busy the machine.
    """
    limit_s = budget_s if budget_s == math.inf else min(max(budget_s, 0.0), MAX_BUDGET_S)
    deadline = time.perf_counter() + limit_s
    tour = _nearest_neighbour(D, last_fixed)
    if symmetric and tour.shape[0] >= 4:
        while _two_opt_pass(D, tour, deadline):
            pass
    return tour, closed_cost(D, tour)
