"""The numpy-only search (`numpy_only`) that answers plans while the worker warms up, and the
worker's switch from it to the full search."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controllerd.planner import PlannerWorker, plan, plan_rack_batches
from controllerd.planner._cold import numpy_only

from .conftest import (
    carrier,
    carrier_cost,
    pick_place,
    pick_place_cost,
    rack_job,
    random_points,
    route,
    route_cost,
)
from .test_rack_batches import assert_valid


@pytest.mark.parametrize("closed", [True, False])
def test_numpy_only_routes_are_valid_costed_and_repeatable(closed: bool) -> None:
    problem = route(random_points(150, seed=4), closed=closed)
    with numpy_only():
        # No time limit: the 2-opt sweeps run until they find nothing, however busy the machine.
        first = plan(problem, budget_ms=None, seed=1, max_iterations=0)
        again = plan(problem, budget_ms=None, seed=2, max_iterations=0)
    assert sorted(first.order) == list(range(150))
    assert first.cost_s == pytest.approx(route_cost(problem, first.order), rel=1e-9)
    assert first.iterations == 0
    assert again.order == first.order  # no randomness in the numpy-only search
    full = plan(problem, budget_ms=None, seed=1, max_iterations=200)
    # 2-opt from nearest neighbour is a few percent above the full search, no more.
    assert full.cost_s <= first.cost_s <= full.cost_s * 1.15


def test_numpy_only_pick_place_carrier_and_rack_batches_are_valid() -> None:
    tubes = pick_place(40, seed=5)
    load = carrier(40, seed=6, capacity=5)
    job = rack_job(tubes=40, racks=10, slots=3, limit_s=120.0, seed=7)
    with numpy_only():
        moved = plan(tubes, budget_ms=100, seed=0)
        carried = plan(load, budget_ms=100, seed=0)
        batches = plan_rack_batches(job, budget_ms=200, seed=0)
    assert sorted(moved.order) == list(range(40))
    assert moved.cost_s == pytest.approx(pick_place_cost(tubes, moved.order), rel=1e-9)
    assert carried.trips is not None
    assert all(len(trip) <= 5 for trip in carried.trips)
    assert carried.cost_s == pytest.approx(carrier_cost(load, carried.trips), rel=1e-9)
    assert_valid(job, batches)


def test_numpy_only_is_scoped_to_its_block() -> None:
    problem = route(random_points(60, seed=8))
    with numpy_only():
        assert plan(problem, budget_ms=20).iterations == 0
    assert plan(problem, budget_ms=None, max_iterations=50).iterations == 50


async def test_worker_answers_before_it_is_warm_then_plans_in_full() -> None:
    problem = route(random_points(200, seed=9))
    async with PlannerWorker() as worker:
        assert not worker.warm  # a spawned process needs far longer than this to import numba
        early = await worker.plan(problem, budget_ms=20, seed=1)
        assert await worker.ready()
        assert worker.pid is not None
        late = await worker.plan(problem, budget_ms=20, seed=1)
    assert not early.warm
    assert late.warm
    for result in (early, late):
        assert sorted(result.order) == list(range(200))
        assert result.cost_s == pytest.approx(route_cost(problem, result.order), rel=1e-9)


def test_importing_the_planner_does_not_import_numba() -> None:
    # The daemon imports the planner; numba (about half a second) is the worker's business.
    probe = "import sys, controllerd.planner; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
