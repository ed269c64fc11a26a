"""Pick-and-place and carrier plans: valid, within capacity, honestly costed, reproducible."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllerd.planner import plan

from .conftest import carrier, carrier_cost, pick_place, pick_place_cost

TICK_SLACK_S = 1e-4


@pytest.mark.parametrize("closed", [True, False])
@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_tiny_pick_place_matches_brute_force(n: int, closed: bool) -> None:
    problem = pick_place(n, seed=n, closed=closed)
    result = plan(problem, budget_ms=100, seed=0)
    best = min(pick_place_cost(problem, list(o)) for o in itertools.permutations(range(n)))
    assert result.cost_s == pytest.approx(best, abs=(2 * n + 1) * TICK_SLACK_S)


@pytest.mark.parametrize("closed", [True, False])
def test_pick_place_cost_is_the_independent_recomputation(closed: bool) -> None:
    problem = pick_place(120, seed=3, closed=closed)
    result = plan(problem, budget_ms=None, seed=2, max_iterations=400)
    assert sorted(result.order) == list(range(120))
    assert result.ids == [problem.tubes[i].id for i in result.order]
    assert result.cost_s == pytest.approx(pick_place_cost(problem, result.order), rel=1e-12)
    again = plan(problem, budget_ms=None, seed=2, max_iterations=400)
    assert again.order == result.order


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=40),
    capacity=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_carrier_loads_respect_capacity(n: int, capacity: int, seed: int) -> None:
    problem = carrier(n, seed=seed, capacity=capacity)
    result = plan(problem, budget_ms=1000, seed=seed, max_iterations=20)
    assert result.trips is not None
    assert all(1 <= len(trip) <= capacity for trip in result.trips)
    assert sorted(result.order) == list(range(n))
    assert result.order == [i for trip in result.trips for i in trip]
    assert result.cost_s == pytest.approx(carrier_cost(problem, result.trips), rel=1e-9)


def test_carrier_with_unlimited_capacity_makes_one_trip() -> None:
    problem = carrier(30, seed=4, capacity=30)
    result = plan(problem, budget_ms=200, seed=0)
    assert result.trips is not None
    assert len(result.trips) == 1


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=40),
    closed=st.booleans(),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_random_pick_place_is_valid(n: int, closed: bool, seed: int) -> None:
    problem = pick_place(n, seed=seed, closed=closed)
    result = plan(problem, budget_ms=1000, seed=seed, max_iterations=30)
    assert sorted(result.order) == list(range(n))
    assert result.cost_s == pytest.approx(pick_place_cost(problem, result.order), rel=1e-9)


def _loads(order: tuple[int, ...], capacity: int) -> list[list[list[int]]]:
    """Every cut of `order` into consecutive loads of at most `capacity` tubes."""
    if not order:
        return [[]]
    return [
        [list(order[:size]), *rest]
        for size in range(1, min(capacity, len(order)) + 1)
        for rest in _loads(order[size:], capacity)
    ]


@pytest.mark.parametrize(("n", "capacity"), [(1, 1), (3, 1), (4, 2), (5, 2), (5, 3), (5, 4)])
def test_tiny_carrier_matches_brute_force(n: int, capacity: int) -> None:
    """Every order of the tubes, every cut into loads: the plan is the best of them."""
    problem = carrier(n, seed=10 * n + capacity, capacity=capacity)
    result = plan(problem, budget_ms=100, seed=0)
    best = min(
        carrier_cost(problem, trips)
        for order in itertools.permutations(range(n))
        for trips in _loads(order, capacity)
    )
    assert result.trips is not None
    assert result.cost_s == pytest.approx(carrier_cost(problem, result.trips), rel=1e-12)
    assert result.cost_s == pytest.approx(best, rel=1e-12)
