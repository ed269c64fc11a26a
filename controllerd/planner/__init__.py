"""Tube-picking planner: in which order the gantry visits, picks and carries tubes.

`parse_problem` validates a problem (route, pick-and-place or carrier form, see
`docs/planner.md`), `plan` solves it within a time budget in the calling thread, and
`PlannerWorker` does the same in a warmed-up worker process for asyncio code. The command
`controllerd plan` lives in `controllerd.planner.cli`.
"""

from controllerd.planner._model import (
    AxisSpec,
    CarrierProblem,
    CarrierTube,
    HandlingSpec,
    MotionSpec,
    PickPlaceProblem,
    Plan,
    ProblemError,
    RouteProblem,
    Tube,
    parse_problem,
)
from controllerd.planner._motion import (
    TICKS_PER_S,
    AxisLimits,
    GantryMotion,
    move_time_s,
    reference_move_time_s,
    time_matrix_ticks,
)
from controllerd.planner._planner import DEFAULT_BUDGET_MS, plan
from controllerd.planner._worker import PlannerWorker

__all__ = [
    "DEFAULT_BUDGET_MS",
    "TICKS_PER_S",
    "AxisLimits",
    "AxisSpec",
    "CarrierProblem",
    "CarrierTube",
    "GantryMotion",
    "HandlingSpec",
    "MotionSpec",
    "PickPlaceProblem",
    "Plan",
    "PlannerWorker",
    "ProblemError",
    "RouteProblem",
    "Tube",
    "move_time_s",
    "parse_problem",
    "plan",
    "reference_move_time_s",
    "time_matrix_ticks",
]
