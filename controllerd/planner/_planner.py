"""`plan` and `plan_rack_batches`: the entry points that dispatch a validated problem."""

from __future__ import annotations

import math

from controllerd.planner._carrier import solve_carrier
from controllerd.planner._model import (
    CarrierProblem,
    PickPlaceProblem,
    Plan,
    RouteProblem,
)
from controllerd.planner._pick_place import solve_pick_place
from controllerd.planner._rack_batches import solve_rack_batches
from controllerd.planner._rack_model import RackBatchPlan, RackBatchProblem
from controllerd.planner._route import solve_route

DEFAULT_BUDGET_MS = 1000.0


def _budget_s(budget_ms: float | None, max_iterations: int | None) -> float:
    if budget_ms is None:
        if max_iterations is None:
            raise ValueError("budget_ms=None (no time limit) needs max_iterations")
        return math.inf
    return max(budget_ms, 0.0) / 1e3


def plan(
    problem: RouteProblem | PickPlaceProblem | CarrierProblem,
    *,
    budget_ms: float | None = DEFAULT_BUDGET_MS,
    seed: int = 0,
    max_iterations: int | None = None,
) -> Plan:
    """Plan `problem` within `budget_ms` (anytime: the best order found by then).

    Building the matrices and the first local optimum always complete, so a tiny budget still
    returns a good valid plan. With `max_iterations`, the search stops after that many
    perturbations; a budget that does not cut it short then makes the plan depend only on `seed`.
    `budget_ms=None` sets no time limit (then `max_iterations` is required): the plan is then a
    function of the problem, `seed` and `max_iterations` alone, however slow or busy the machine.
    """
    budget_s = _budget_s(budget_ms, max_iterations)
    if isinstance(problem, RouteProblem):
        return solve_route(problem, budget_s=budget_s, seed=seed, max_iterations=max_iterations)
    if isinstance(problem, PickPlaceProblem):
        return solve_pick_place(
            problem, budget_s=budget_s, seed=seed, max_iterations=max_iterations
        )
    return solve_carrier(problem, budget_s=budget_s, seed=seed, max_iterations=max_iterations)


def plan_rack_batches(
    problem: RackBatchProblem,
    *,
    budget_ms: float | None = DEFAULT_BUDGET_MS,
    seed: int = 0,
    max_iterations: int | None = None,
) -> RackBatchPlan:
    """Plan a whole job's rack batches within `budget_ms` (same contract as `plan`).

    The first feasible plan (visits, store tour, exact split) always completes; the budget and
    `max_iterations` bound the improvement that follows.
    """
    return solve_rack_batches(
        problem,
        budget_s=_budget_s(budget_ms, max_iterations),
        seed=seed,
        max_iterations=max_iterations,
    )
