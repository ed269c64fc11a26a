"""Planner benchmark: our route search against LKH-3 (elkai), fast-tsp and OR-Tools, side by side.

Every solver gets the same int32 tick matrix (0.1 ms) of the same seeded instance: a closed tour
through the gantry's start at (0, 0) and n tube positions, either uniform on a 600 x 400 mm deck
or drawn from 24 racks of 96 positions at 9 mm pitch. Times are solver wall time on that matrix
(building it is not counted for anyone). Gap is to the best tour any solver found. Results go to
`bench/RESULTS.md` under `## Planner` (other sections are left alone).

Run: `.venv/bin/python bench/planner.py` (needs the `bench` extra: elkai, fast-tsp, ortools).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import elkai
import fast_tsp
import numpy as np
from _results import write_section  # bench/ is sys.path[0] when run as a script
from numpy.typing import NDArray
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from controllerd.planner import AxisLimits, GantryMotion, time_matrix_ticks
from controllerd.planner._construct import tour_cost
from controllerd.planner._kernels import warm_up
from controllerd.planner._pick_place import pick_place_matrix
from controllerd.planner._search import search_tour

MOTION = GantryMotion(
    x=AxisLimits(v_mm_s=800.0, a_mm_s2=4000.0), y=AxisLimits(v_mm_s=800.0, a_mm_s2=4000.0)
)
OUR_BUDGET_S = {200: 0.02, 1000: 0.25, 2000: 1.0}
AIM_GAP_PCT = {200: 0.1, 1000: 0.2, 2000: 0.3}
ORTOOLS_S = 2.0
ELKAI_MAX_N = 1000  # LKH-3 needs 7-30 s per instance at n = 1000 here; n = 2000 is minutes

Tour = NDArray[np.int32]


def uniform(n: int, seed: int) -> NDArray[np.float64]:
    return np.random.default_rng(seed).random((n, 2)) * [600.0, 400.0]


def rack_grid(n: int, seed: int) -> NDArray[np.float64]:
    """n distinct positions drawn from 6 x 4 racks of 8 x 12 tubes at 9 mm pitch."""
    rows, cols, pitch = 8, 12, 9.0
    slots = [
        (rx * 140.0 + c * pitch, ry * 100.0 + r * pitch)
        for ry in range(4)
        for rx in range(6)
        for r in range(rows)
        for c in range(cols)
    ]
    pick = np.random.default_rng(seed).choice(len(slots), size=n, replace=False)
    return np.asarray(slots, dtype=np.float64)[pick]


def closed_matrix(points: NDArray[np.float64]) -> NDArray[np.int32]:
    nodes = np.concatenate([[[0.0, 0.0]], points])
    return time_matrix_ticks(nodes, nodes, MOTION)


def ours(D: NDArray[np.int32], budget_s: float, *, symmetric: bool = True) -> Tour:
    return search_tour(D, symmetric=symmetric, budget_s=budget_s, seed=1).tour


def lkh(D: NDArray[np.int32], _budget_s: float) -> Tour:
    tour = elkai.DistanceMatrix(D.tolist()).solve_tsp(runs=1)
    return np.asarray(tour[:-1], dtype=np.int32)


def fast(D: NDArray[np.int32], budget_s: float) -> Tour:
    return np.asarray(fast_tsp.find_tour(D.tolist(), duration_seconds=budget_s), dtype=np.int32)


def ortools(D: NDArray[np.int32], budget_s: float) -> Tour | None:
    m = D.shape[0]
    manager = pywrapcp.RoutingIndexManager(m, 1, 0)
    routing = pywrapcp.RoutingModel(manager)
    rows = D.tolist()

    def cost(i: int, j: int) -> int:
        return int(rows[manager.IndexToNode(i)][manager.IndexToNode(j)])

    routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitCallback(cost))
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    )
    params.time_limit.FromMilliseconds(int(budget_s * 1000))
    solution = routing.SolveWithParameters(params)
    if solution is None:
        return None  # no first solution within the limit (happens at n = 2000)
    index, tour = routing.Start(0), []
    while not routing.IsEnd(index):
        tour.append(manager.IndexToNode(index))
        index = solution.Value(routing.NextVar(index))
    return np.asarray(tour, dtype=np.int32)


def timed(
    solver: Callable[[NDArray[np.int32], float], Tour | None], D: NDArray[np.int32], budget: float
) -> tuple[int, float] | None:
    began = time.perf_counter()
    tour = solver(D, budget)
    took = time.perf_counter() - began
    if tour is None:
        return None
    assert sorted(tour.tolist()) == list(range(D.shape[0])), "solver returned no permutation"
    return int(tour_cost(D, tour)), took


def route_rows(sizes: list[int]) -> list[str]:
    lines = [
        "| instance | n | ours (budget) | fast-tsp (same budget) | LKH-3 (elkai, runs=1) "
        f"| OR-Tools GLS ({ORTOOLS_S:g} s) | aim |",
        "| --- | ---: | --- | --- | --- | --- | --- |",
    ]
    for kind, make in (("uniform", uniform), ("racks 9 mm", rack_grid)):
        for n in sizes:
            D = closed_matrix(make(n, seed=n))
            budget = OUR_BUDGET_S[n]
            results: dict[str, tuple[int, float] | None] = {
                "ours": timed(ours, D, budget),
                "fast": timed(fast, D, budget),
                "lkh": timed(lkh, D, 0.0) if n <= ELKAI_MAX_N else None,
                "ortools": timed(ortools, D, ORTOOLS_S),
            }
            best = min(r[0] for r in results.values() if r is not None)

            def cell(r: tuple[int, float] | None, missing: str = "", best: int = best) -> str:
                if r is None:
                    return missing
                return f"+{(r[0] / best - 1) * 100:.3f} % in {r[1] * 1e3:.0f} ms"

            lines.append(
                f"| {kind} | {n} | {cell(results['ours'])} | {cell(results['fast'])} "
                f"| {cell(results['lkh'], f'not run (n > {ELKAI_MAX_N})')} "
                f"| {cell(results['ortools'], f'no tour in {ORTOOLS_S:g} s')} "
                f"| ≤ +{AIM_GAP_PCT[n]} % in {budget * 1e3:.0f} ms |"
            )
            print(lines[-1], flush=True)
    return lines


def pick_place_rows() -> list[str]:
    n = 500
    rng = np.random.default_rng(500)
    src = rack_grid(n, seed=501)
    dst = rng.random((n, 2)) * [600.0, 400.0]
    D = pick_place_matrix(np.zeros(2), src, dst, MOTION, closed=True)

    def asym(D: NDArray[np.int32], budget: float) -> Tour:
        return ours(D, budget, symmetric=False)

    runs = {
        "ours, 1 s": timed(asym, D, 1.0),
        "ours, 5 s": timed(asym, D, 5.0),
        "OR-Tools GLS, 5 s": timed(ortools, D, 5.0),
    }
    best = min(r[0] for r in runs.values() if r is not None)
    lines = ["| solver | gap to best | time |", "| --- | ---: | ---: |"]
    for name, run in runs.items():
        if run is None:
            lines.append(f"| {name} | no tour in time | |")
            continue
        cost, took = run
        lines.append(f"| {name} | +{(cost / best - 1) * 100:.3f} % | {took * 1e3:.0f} ms |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[200, 1000, 2000])
    args = parser.parse_args()
    warm_up()
    started = time.strftime("%Y-%m-%d")
    route = route_rows(args.sizes)
    pick_place = pick_place_rows()
    write_section(
        "Planner",
        [
            f"`bench/planner.py`, {started}, 2 shared cores. Closed tours over the start and",
            "n tube positions, motion 800 mm/s, 4000 mm/s² on both axes, int32 matrix in 0.1 ms",
            "ticks given to every solver. Gap is to the best tour any solver found on that",
            "instance; time is wall time on the ready matrix; one seed (1) per solver.",
            "",
            "### Route (symmetric)",
            "",
            *route,
            "",
            "### Pick and place, n = 500 (asymmetric; fast-tsp is symmetric-only, LKH-3 is",
            "minutes here and not run)",
            "",
            *pick_place,
        ],
    )


if __name__ == "__main__":
    main()
