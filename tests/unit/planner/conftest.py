"""Planner test helpers: problem builders and independent cost recomputation."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from controllerd.planner import (
    CarrierProblem,
    GantryMotion,
    PickPlaceProblem,
    RouteProblem,
    parse_problem,
    reference_move_time_s,
)

AXIS = {"v_mm_s": 800.0, "a_mm_s2": 4000.0}
MOTION: dict[str, Any] = {"x": AXIS, "y": {"v_mm_s": 600.0, "a_mm_s2": 3000.0}}


def random_points(n: int, seed: int, size: float = 300.0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [[float(x), float(y)] for x, y in rng.random((n, 2)) * size]


def route(points: list[list[float]], *, closed: bool = True) -> RouteProblem:
    problem = parse_problem(
        {"motion": MOTION, "start": [0.0, 0.0], "points": points, "return_to_start": closed}
    )
    assert isinstance(problem, RouteProblem)
    return problem


def pick_place(n: int, seed: int, *, closed: bool = True) -> PickPlaceProblem:
    src, dst = random_points(n, seed), random_points(n, seed + 1000)
    problem = parse_problem(
        {
            "kind": "pick_place",
            "motion": MOTION,
            "start": [0.0, 0.0],
            "tubes": [
                {"id": f"T{i}", "source": s, "destination": d}
                for i, (s, d) in enumerate(zip(src, dst, strict=True))
            ],
            "return_to_start": closed,
            "handling": {"pick_s": 0.5, "place_s": 0.25, "scan_s": 0.1},
        }
    )
    assert isinstance(problem, PickPlaceProblem)
    return problem


def carrier(n: int, seed: int, capacity: int) -> CarrierProblem:
    problem = parse_problem(
        {
            "kind": "carrier",
            "motion": MOTION,
            "start": [0.0, 0.0],
            "output": [150.0, -40.0],
            "capacity": capacity,
            "tubes": [{"id": f"T{i}", "position": p} for i, p in enumerate(random_points(n, seed))],
            "handling": {"pick_s": 0.5, "place_s": 0.25, "scan_s": 0.1},
        }
    )
    assert isinstance(problem, CarrierProblem)
    return problem


def walk_s(stops: list[tuple[float, float]], motion: GantryMotion) -> float:
    """Independent recomputation: plain Python over consecutive stops."""
    return math.fsum(reference_move_time_s(p, q, motion) for p, q in itertools.pairwise(stops))


def route_cost(problem: RouteProblem, order: list[int]) -> float:
    stops = [problem.start, *(problem.points[i] for i in order)]
    if problem.return_to_start:
        stops.append(problem.start)
    return walk_s(stops, problem.motion.limits())


def pick_place_cost(problem: PickPlaceProblem, order: list[int]) -> float:
    stops = [problem.start]
    for i in order:
        stops += [problem.tubes[i].source, problem.tubes[i].destination]
    if problem.return_to_start:
        stops.append(problem.start)
    return walk_s(stops, problem.motion.limits()) + len(order) * problem.handling.per_tube_s


def carrier_cost(problem: CarrierProblem, trips: list[list[int]]) -> float:
    stops = [problem.start]
    for trip in trips:
        stops += [problem.tubes[i].position for i in trip]
        stops.append(problem.output)
    if problem.return_to_start:
        stops.append(problem.start)
    return walk_s(stops, problem.motion.limits()) + len(problem.tubes) * (
        problem.handling.per_tube_s
    )
