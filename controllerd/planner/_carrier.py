"""Carrier problem: a gripper holding up to C tubes collects them and unloads at the output rack.

Route first, cluster second: a closed tour through the output rack and all tubes (the symmetric
route search), then an exact split of that sequence into loads of at most C consecutive tubes by
dynamic programming (Prins' split), trying both directions of the tour. The split is optimal for
the given sequence; the sequence itself is a heuristic (capacitated routing is not re-optimised
across loads), except for up to `EXACT_MAX_TUBES` tubes, where every order is split (optimal).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from numpy.typing import NDArray

from controllerd.planner._model import CarrierProblem, Plan
from controllerd.planner._motion import GantryMotion, move_time_s, time_matrix_ticks
from controllerd.planner._search import search_tour

EXACT_MAX_TUBES = 6
"""Up to this many tubes every visiting order is split (6! = 720 orders): the plan is optimal."""


def split_loads(
    sequence: list[int],
    *,
    positions: NDArray[np.float64],
    start: NDArray[np.float64],
    output: NDArray[np.float64],
    capacity: int,
    motion: GantryMotion,
) -> tuple[list[list[int]], float]:
    """Best cut of `sequence` into loads of ≤ `capacity` tubes; returns the loads and move time.

    The first load starts from `start`, every other from `output`; every load ends at `output`.
    """
    n = len(sequence)
    pts = positions[sequence]
    inner = np.concatenate([[0.0], np.cumsum(move_time_s(pts[:-1], pts[1:], motion))])
    from_output = move_time_s(np.broadcast_to(output, pts.shape), pts, motion)
    to_output = move_time_s(pts, np.broadcast_to(output, pts.shape), motion)
    from_start = move_time_s(np.broadcast_to(start, pts.shape), pts, motion)
    best = np.full(n + 1, np.inf)
    cut = np.zeros(n + 1, dtype=np.int64)
    best[0] = 0.0
    for j in range(1, n + 1):
        for i in range(max(0, j - capacity), j):
            enter = from_start[i] if i == 0 else from_output[i]
            cost = best[i] + enter + inner[j - 1] - inner[i] + to_output[j - 1]
            if cost < best[j]:
                best[j] = cost
                cut[j] = i
    loads: list[list[int]] = []
    j = n
    while j > 0:
        loads.append(sequence[int(cut[j]) : j])
        j = int(cut[j])
    loads.reverse()
    return loads, float(best[n])


def solve_carrier(
    problem: CarrierProblem, *, budget_s: float, seed: int, max_iterations: int | None
) -> Plan:
    """Plan a carrier problem."""
    began = time.perf_counter()
    motion = problem.motion.limits()
    n = len(problem.tubes)
    start = np.asarray(problem.start, dtype=np.float64)
    output = np.asarray(problem.output, dtype=np.float64)
    back_s = float(move_time_s(output, start, motion)) if problem.return_to_start else 0.0
    loads: list[list[int]] = []
    moves = 0.0  # no tubes: the gantry stays at start
    iterations = 0
    if n:
        positions = np.asarray([t.position for t in problem.tubes], dtype=np.float64)
        nodes = np.concatenate([output[None, :], positions])
        D = time_matrix_ticks(nodes, nodes, motion)
        remaining = budget_s - (time.perf_counter() - began)
        result = search_tour(
            D, symmetric=True, budget_s=remaining, seed=seed, max_iterations=max_iterations
        )
        iterations = result.iterations
        sequence = [int(v) - 1 for v in result.tour[1:]]
        # Few tubes: every order is split, so the plan is optimal; else the tour both ways.
        sequences = (
            [list(p) for p in itertools.permutations(range(n))]
            if n <= EXACT_MAX_TUBES
            else [sequence, sequence[::-1]]
        )
        options = [
            split_loads(
                seq,
                positions=positions,
                start=start,
                output=output,
                capacity=problem.capacity,
                motion=motion,
            )
            for seq in sequences
        ]
        loads, moves = min(options, key=lambda option: option[1])
        moves += back_s
    order = [i for load in loads for i in load]
    return Plan(
        order=order,
        ids=[problem.tubes[i].id for i in order],
        trips=loads,
        cost_s=moves + n * problem.handling.per_tube_s,
        elapsed_ms=(time.perf_counter() - began) * 1e3,
        iterations=iterations,
    )
