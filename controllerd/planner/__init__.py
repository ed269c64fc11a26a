"""Tube-picking planner: in which order the gantry visits, picks and carries tubes.

`parse_problem` validates a problem (route, pick-and-place, carrier or rack-batch form, see
`docs/planner.md`); `plan` (route, pick-and-place, carrier) and `plan_rack_batches` (a whole
job's rack trips) solve it within a time budget in the calling thread, and `PlannerWorker` does
the same in a warmed-up worker process for asyncio code. The command
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
)
from controllerd.planner._motion import (
    TICKS_PER_S,
    AxisLimits,
    GantryMotion,
    move_time_s,
    reference_move_time_s,
    time_matrix_ticks,
)
from controllerd.planner._parse import AnyProblem, parse_problem
from controllerd.planner._planner import DEFAULT_BUDGET_MS, plan, plan_rack_batches
from controllerd.planner._rack_model import (
    JobFigures,
    LiftSpec,
    RackBatch,
    RackBatchPlan,
    RackBatchProblem,
    RackTube,
    RotationSpec,
    StationSpec,
    StoredRack,
    StoreSpec,
)
from controllerd.planner._worker import PlannerWorker

__all__ = [
    "DEFAULT_BUDGET_MS",
    "TICKS_PER_S",
    "AnyProblem",
    "AxisLimits",
    "AxisSpec",
    "CarrierProblem",
    "CarrierTube",
    "GantryMotion",
    "HandlingSpec",
    "JobFigures",
    "LiftSpec",
    "MotionSpec",
    "PickPlaceProblem",
    "Plan",
    "PlannerWorker",
    "ProblemError",
    "RackBatch",
    "RackBatchPlan",
    "RackBatchProblem",
    "RackTube",
    "RotationSpec",
    "RouteProblem",
    "StationSpec",
    "StoreSpec",
    "StoredRack",
    "Tube",
    "move_time_s",
    "parse_problem",
    "plan",
    "plan_rack_batches",
    "reference_move_time_s",
    "time_matrix_ticks",
]
