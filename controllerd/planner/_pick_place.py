"""Pick-and-place problem: each tube goes from its source to its destination.

Node 0 is the start and node i the i-th tube; the cost of i → j is the move from tube i's
destination to tube j's source, so the matrix is asymmetric and the search uses only moves that
keep every path's direction (Or-opt without reversal, segment swaps). The source → destination
moves and the fixed handling times do not depend on the order and are added afterwards. An open
job (no return to start) costs nothing back to node 0.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._model import PickPlaceProblem, Plan
from controllerd.planner._motion import GantryMotion, path_time_s, time_matrix_ticks
from controllerd.planner._search import search_tour


def pick_place_matrix(
    start: NDArray[np.float64],
    sources: NDArray[np.float64],
    destinations: NDArray[np.float64],
    motion: GantryMotion,
    *,
    closed: bool,
) -> NDArray[np.int32]:
    """The asymmetric tick matrix over start + tubes."""
    leaving = np.concatenate([start[None, :], destinations])
    arriving = np.concatenate([start[None, :], sources])
    D = time_matrix_ticks(leaving, arriving, motion)
    np.fill_diagonal(D, 0)
    if not closed:
        D[:, 0] = 0
    return D


def pick_place_cost_s(problem: PickPlaceProblem, order: list[int], motion: GantryMotion) -> float:
    """Moves start → src → dst → next src … (→ start) plus fixed handling, in seconds."""
    stops = [problem.start]
    for i in order:
        stops.append(problem.tubes[i].source)
        stops.append(problem.tubes[i].destination)
    if problem.return_to_start:
        stops.append(problem.start)
    moves = path_time_s(np.asarray(stops, dtype=np.float64).reshape(-1, 2), motion)
    return moves + len(order) * problem.handling.per_tube_s


def solve_pick_place(
    problem: PickPlaceProblem, *, budget_s: float, seed: int, max_iterations: int | None
) -> Plan:
    """Plan a pick-and-place problem."""
    began = time.perf_counter()
    motion = problem.motion.limits()
    n = len(problem.tubes)
    iterations = 0
    order: list[int] = []
    if n:
        start = np.asarray(problem.start, dtype=np.float64)
        sources = np.asarray([t.source for t in problem.tubes], dtype=np.float64)
        destinations = np.asarray([t.destination for t in problem.tubes], dtype=np.float64)
        D = pick_place_matrix(start, sources, destinations, motion, closed=problem.return_to_start)
        remaining = budget_s - (time.perf_counter() - began)
        result = search_tour(
            D, symmetric=False, budget_s=remaining, seed=seed, max_iterations=max_iterations
        )
        order = [int(v) - 1 for v in result.tour[1:]]
        iterations = result.iterations
    return Plan(
        order=order,
        ids=[problem.tubes[i].id for i in order],
        cost_s=pick_place_cost_s(problem, order, motion),
        elapsed_ms=(time.perf_counter() - began) * 1e3,
        iterations=iterations,
    )
