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
    RackBatch,
    RackBatchProblem,
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


STORE: dict[str, Any] = {
    "rotation": {"v_deg_s": 30.0, "a_deg_s2": 15.0},
    "lift": {"v_mm_s": 400.0, "a_mm_s2": 800.0},
    "port_level_mm": 2000.0,
    "handle_s": 4.0,
    "transfer_s": 6.0,
}


def rack_job_data(
    *, tubes: int, racks: int, slots: int, limit_s: float, seed: int
) -> dict[str, Any]:
    """A rack-batch job as JSON data: tubes spread at random over racks, in request order."""
    rng = np.random.default_rng(seed)
    rack_list = [
        {
            "id": f"R{r}",
            "angle_deg": float(rng.integers(0, 12) * 30),
            "level_mm": float(rng.integers(0, 20) * 100),
        }
        for r in range(racks)
    ]
    tube_list = []
    for t in range(tubes):
        row, col = rng.integers(0, 8), rng.integers(0, 12)
        tube_list.append(
            {
                "id": f"T{t}",
                "rack": f"R{int(rng.integers(0, racks))}",
                "position": [float(col) * 9.0, float(row) * 9.0],
                "destination": [450.0 + (t % 12) * 9.0, 300.0 + (t // 12 % 8) * 9.0],
            }
        )
    return {
        "kind": "rack_batches",
        "motion": MOTION,
        "start": [500.0, 0.0],
        "handling": {"pick_s": 1.0, "place_s": 0.8, "scan_s": 0.5},
        "store": STORE,
        "station": {"slots": [[i * 140.0, 0.0] for i in range(slots)]},
        "exposure_limit_s": limit_s,
        "racks": rack_list,
        "tubes": tube_list,
    }


def rack_job(*, tubes: int, racks: int, slots: int, limit_s: float, seed: int) -> RackBatchProblem:
    problem = parse_problem(
        rack_job_data(tubes=tubes, racks=racks, slots=slots, limit_s=limit_s, seed=seed)
    )
    assert isinstance(problem, RackBatchProblem)
    return problem


def _profile_s(d: float, v: float, a: float) -> float:
    d = abs(d)
    return d / v + v / a if d >= v * v / a else 2.0 * math.sqrt(d / a)


def rack_job_recomputed(
    problem: RackBatchProblem, batches: list[RackBatch]
) -> tuple[float, list[list[float]]]:
    """Independent recomputation of a rack-batch plan: job time and exposures per batch.

    Written from docs/planner.md alone: fetch the batch's racks in order (slot i for the i-th),
    pick its tubes in one tour from home, return the racks in fetch order.
    """
    store, motion = problem.store, problem.motion.limits()
    racks = {rack.id: rack for rack in problem.racks}
    tubes = {tube.id: tube for tube in problem.tubes}

    def rotate(a: float, b: float) -> float:
        d = abs(a - b) % 360.0
        return _profile_s(min(d, 360.0 - d), store.rotation.v_deg_s, store.rotation.a_deg_s2)

    def lift(a: float, b: float) -> float:
        return _profile_s(b - a, store.lift.v_mm_s, store.lift.a_mm_s2)

    angle, level, port = store.initial_angle_deg, store.port_level_mm, store.port_level_mm
    total = 0.0
    exposures: list[list[float]] = []
    for batch in batches:
        fetches, returns = [], []
        for rack_id in batch.racks:
            rack = racks[rack_id]
            position = max(rotate(angle, rack.angle_deg), lift(level, rack.level_mm))
            fetches.append(position + store.handle_s + lift(rack.level_mm, port) + store.transfer_s)
            angle, level = rack.angle_deg, port
        slot_of = {rack_id: problem.station.slots[i] for i, rack_id in enumerate(batch.racks)}
        stops = [problem.start]
        for tube_id in batch.tubes:
            tube = tubes[tube_id]
            slot = slot_of[tube.rack]
            stops += [(slot[0] + tube.position[0], slot[1] + tube.position[1]), tube.destination]
        stops.append(problem.start)
        pick = walk_s(stops, motion) + len(batch.tubes) * problem.handling.per_tube_s
        for rack_id in batch.racks:
            rack = racks[rack_id]
            travel = lift(level, port) + store.transfer_s + lift(port, rack.level_mm)
            returns.append(max(rotate(angle, rack.angle_deg), travel) + store.handle_s)
            angle, level = rack.angle_deg, rack.level_mm
        exposures.append(
            [sum(fetches[i + 1 :]) + pick + sum(returns[:i]) for i in range(len(fetches))]
        )
        total += sum(fetches) + pick + sum(returns)
    return total, exposures
