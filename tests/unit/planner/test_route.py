"""Route plans: valid, honestly costed, reproducible, and optimal on tiny instances."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllerd.planner import RouteProblem, plan, plan_rack_batches, reference_move_time_s

from .conftest import pick_place, rack_job, random_points, route, route_cost

# Ticks round each move to 0.1 ms, so a tick-optimal tour may be this much worse in seconds.
TICK_SLACK_S = 1e-4


def brute_force_s(problem: RouteProblem) -> float:
    return min(
        route_cost(problem, list(order))
        for order in itertools.permutations(range(len(problem.points)))
    )


def held_karp_s(problem: RouteProblem) -> float:
    """Optimal closed-tour time by dynamic programming over subsets (plain Python)."""
    motion = problem.motion.limits()
    nodes = [problem.start, *problem.points]
    n = len(nodes)
    t = [[reference_move_time_s(p, q, motion) for q in nodes] for p in nodes]
    best: dict[tuple[int, int], float] = {(1 << j, j): t[0][j] for j in range(1, n)}
    for size in range(2, n):
        for subset in itertools.combinations(range(1, n), size):
            bits = sum(1 << j for j in subset)
            for j in subset:
                prev = bits & ~(1 << j)
                best[bits, j] = min(best[prev, k] + t[k][j] for k in subset if k != j)
    full = sum(1 << j for j in range(1, n))
    return min(best[full, j] + t[j][0] for j in range(1, n))


@pytest.mark.parametrize("closed", [True, False])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7])
def test_tiny_routes_match_brute_force(n: int, closed: bool) -> None:
    problem = route(random_points(n, seed=n), closed=closed)
    result = plan(problem, budget_ms=100, seed=0)
    assert sorted(result.order) == list(range(n))
    assert result.cost_s == pytest.approx(brute_force_s(problem), abs=(n + 1) * TICK_SLACK_S)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_search_finds_the_optimum_of_a_ten_node_tour(seed: int) -> None:
    problem = route(random_points(9, seed=seed))  # 10 nodes: past enumeration, into the search
    result = plan(problem, budget_ms=None, seed=seed, max_iterations=2000)
    assert result.iterations == 2000
    assert result.cost_s == pytest.approx(held_karp_s(problem), abs=10 * TICK_SLACK_S)


@pytest.mark.parametrize("closed", [True, False])
def test_cost_is_the_independent_recomputation(closed: bool) -> None:
    problem = route(random_points(300, seed=7), closed=closed)
    result = plan(problem, budget_ms=50, seed=1)
    assert sorted(result.order) == list(range(300))
    assert result.cost_s == pytest.approx(route_cost(problem, result.order), rel=1e-12)


def test_same_seed_same_plan() -> None:
    problem = route(random_points(150, seed=11))
    runs = [plan(problem, budget_ms=None, seed=5, max_iterations=500) for _ in range(2)]
    assert runs[0].order == runs[1].order
    assert runs[0].iterations == 500
    other = plan(problem, budget_ms=None, seed=6, max_iterations=500)
    assert sorted(other.order) == list(range(150))


def test_search_improves_on_the_first_local_optimum() -> None:
    problem = route(random_points(200, seed=12))
    first = plan(problem, budget_ms=0, seed=0)
    longer = plan(problem, budget_ms=None, seed=0, max_iterations=3000)
    assert first.iterations == 0
    assert longer.cost_s <= first.cost_s


coordinate = st.floats(min_value=-500, max_value=500, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    points=st.lists(st.tuples(coordinate, coordinate), max_size=40),
    closed=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_random_routes_are_valid_and_honestly_costed(
    points: list[tuple[float, float]], closed: bool, seed: int
) -> None:
    problem = route([list(p) for p in points], closed=closed)
    result = plan(problem, budget_ms=1000, seed=seed, max_iterations=30)
    assert sorted(result.order) == list(range(len(points)))
    assert result.cost_s == pytest.approx(route_cost(problem, result.order), rel=1e-9, abs=1e-12)


def test_a_time_budgeted_plan_is_reproduced_from_its_seed_and_iterations() -> None:
    """Under a time budget the iteration count depends on the machine, the plan on nothing
    else: the same seed run for the `iterations` a budgeted plan reports gives that plan."""
    plan(route(random_points(20, seed=1)), budget_ms=5)  # kernels loaded: the budget is search
    problems = [route(random_points(250, seed=13)), pick_place(120, seed=14)]
    for problem in problems:
        # A loaded machine may spend a short budget before the first kick: lengthen it until
        # the budget, not the construction, ends the search.
        for budget_ms in (40, 400, 4000, 40_000):
            timed = plan(problem, budget_ms=budget_ms, seed=9)
            if timed.iterations > 0:
                break
        assert timed.iterations > 0
        again = plan(problem, budget_ms=None, seed=9, max_iterations=timed.iterations)
        assert again.order == timed.order
        assert again.cost_s == timed.cost_s
    job = rack_job(tubes=40, racks=10, slots=3, limit_s=150.0, seed=15)
    timed_job = plan_rack_batches(job, budget_ms=100, seed=9)
    again_job = plan_rack_batches(job, budget_ms=None, seed=9, max_iterations=timed_job.iterations)
    assert again_job.batches == timed_job.batches


def test_no_time_limit_needs_an_iteration_cap() -> None:
    problem = route(random_points(12, seed=16))
    with pytest.raises(ValueError, match="max_iterations"):
        plan(problem, budget_ms=None)
    with pytest.raises(ValueError, match="max_iterations"):
        plan_rack_batches(
            rack_job(tubes=5, racks=2, slots=2, limit_s=300.0, seed=1), budget_ms=None
        )
