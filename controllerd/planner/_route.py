"""Route problem: visit points from a start, closed (back to start) or open (end anywhere).

Node 0 is the start, nodes 1..n the points. An open route gets a dummy node n+1 that costs
nothing to and from the start and a large penalty to every point, so every good tour runs
start → points → dummy → start and dropping the dummy leaves the best open path; the matrix
stays symmetric, so 2-opt remains available.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._model import Plan, RouteProblem
from controllerd.planner._motion import GantryMotion, path_time_s, time_matrix_ticks
from controllerd.planner._search import search_tour

_INT32_HEADROOM = 2**30


def open_route_matrix(D: NDArray[np.int32]) -> NDArray[np.int32]:
    """Add the dummy end node to the closed matrix `D` (node 0 = start)."""
    m = D.shape[0]
    penalty = min(int(D.max(initial=0)) * m + 1, _INT32_HEADROOM)
    out = np.full((m + 1, m + 1), penalty, dtype=np.int32)
    out[:m, :m] = D
    out[m, m] = 0
    out[0, m] = out[m, 0] = 0
    return out


def route_order(tour: NDArray[np.int32], *, n: int, closed: bool) -> list[int]:
    """Point indices in visiting order from a tour starting at node 0."""
    rest = tour[1:]
    if not closed:
        if rest[0] == n + 1:
            rest = rest[::-1]  # the dummy must come last: walk the cycle the other way
        rest = rest[:-1]
    return [int(v) - 1 for v in rest]


def route_cost_s(
    start: NDArray[np.float64],
    points: NDArray[np.float64],
    order: list[int],
    motion: GantryMotion,
    *,
    closed: bool,
) -> float:
    """Move time of the route, in seconds, from the motion model."""
    legs = [start[None, :], points[order]]
    if closed:
        legs.append(start[None, :])
    return path_time_s(np.concatenate(legs), motion)


def solve_route(
    problem: RouteProblem, *, budget_s: float, seed: int, max_iterations: int | None
) -> Plan:
    """Plan a route problem."""
    began = time.perf_counter()
    motion = problem.motion.limits()
    start = np.asarray(problem.start, dtype=np.float64)
    points = np.asarray(problem.points, dtype=np.float64).reshape(-1, 2)
    n = points.shape[0]
    nodes = np.concatenate([start[None, :], points])
    D = time_matrix_ticks(nodes, nodes, motion)
    closed = problem.return_to_start
    if not closed:
        D = open_route_matrix(D)
    iterations = 0
    if n == 0:
        order: list[int] = []
    else:
        remaining = budget_s - (time.perf_counter() - began)
        result = search_tour(
            D,
            symmetric=True,
            budget_s=remaining,
            seed=seed,
            max_iterations=max_iterations,
            last_fixed=not closed,
            double_bridge=True,
        )
        order = route_order(result.tour, n=n, closed=closed)
        iterations = result.iterations
    cost = route_cost_s(start, points, order, motion, closed=closed)
    return Plan(
        order=order,
        cost_s=cost,
        elapsed_ms=(time.perf_counter() - began) * 1e3,
        iterations=iterations,
    )
