"""The problem file: pydantic models of every problem form, and the plan that answers it.

Forms (JSON objects, told apart by `kind`; a file without `kind` is a route, so the plain route
form every other tool reads stays valid):
- `route`: visit points from a start, returning to it or ending anywhere (symmetric TSP);
- `pick_place`: move tubes from a source to a destination position each (asymmetric);
- `carrier`: collect tubes with a gripper holding at most `capacity`, unloading at `output`.

Every number must be finite; speeds and accelerations positive; fixed times non-negative; tube
ids unique. `docs/planner.md` documents the forms with examples. The `rack_batches` form lives in
`_rack_model`, and `_parse.parse_problem` tells the forms apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controllerd.planner._motion import AxisLimits, GantryMotion

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Point = tuple[FiniteFloat, FiniteFloat]
"""`[x_mm, y_mm]` in the gantry's frame."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AxisSpec(_Strict):
    """One gantry axis."""

    v_mm_s: PositiveFloat = Field(description="Top speed, mm/s.")
    a_mm_s2: PositiveFloat = Field(description="Acceleration (and deceleration), mm/s².")


class MotionSpec(_Strict):
    """The gantry's two axes; they move at once and the slower one sets the move time."""

    x: AxisSpec
    y: AxisSpec

    def limits(self) -> GantryMotion:
        """The motion model's plain form."""
        return GantryMotion(
            x=AxisLimits(v_mm_s=self.x.v_mm_s, a_mm_s2=self.x.a_mm_s2),
            y=AxisLimits(v_mm_s=self.y.v_mm_s, a_mm_s2=self.y.a_mm_s2),
        )


class HandlingSpec(_Strict):
    """Fixed times per tube, added to the move times."""

    pick_s: Seconds = Field(default=0.0, description="Gripping a tube.")
    place_s: Seconds = Field(default=0.0, description="Releasing a tube.")
    scan_s: Seconds = Field(default=0.0, description="Reading a tube's barcode.")

    @property
    def per_tube_s(self) -> float:
        """Fixed time one tube costs."""
        return self.pick_s + self.place_s + self.scan_s


class RouteProblem(_Strict):
    """Visit every point once from `start`; the order is free."""

    kind: Literal["route"] = "route"
    motion: MotionSpec
    start: Point = Field(description="Where the gantry is, mm.")
    points: list[Point] = Field(description="Positions to visit, mm.")
    return_to_start: bool = Field(default=True, description="End at `start` (else anywhere).")


class Tube(_Strict):
    """One tube to move from `source` to `destination`."""

    id: str = Field(min_length=1, description="Unique within the problem (e.g. the barcode).")
    source: Point
    destination: Point


class CarrierTube(_Strict):
    """One tube to collect at `position`."""

    id: str = Field(min_length=1, description="Unique within the problem (e.g. the barcode).")
    position: Point


def _unique_ids(items: list[Any]) -> list[Any]:
    """Validator: every tube's `id` differs."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"duplicate tube id '{item.id}'")
        seen.add(item.id)
    return items


class PickPlaceProblem(_Strict):
    """Move each tube from its source to its destination: source → destination → next source."""

    kind: Literal["pick_place"]
    motion: MotionSpec
    start: Point
    tubes: list[Tube]
    return_to_start: bool = True
    handling: HandlingSpec = HandlingSpec()

    _ids = field_validator("tubes")(_unique_ids)


class CarrierProblem(_Strict):
    """Collect tubes with a gripper holding up to `capacity`; unload all at `output` when full.

    The gantry starts at `start`, ends at `output` after the last unload, and then goes back to
    `start` when `return_to_start`.
    """

    kind: Literal["carrier"]
    motion: MotionSpec
    start: Point
    output: Point = Field(description="The output rack, where the gripper unloads (the depot).")
    capacity: int = Field(ge=1, description="Tubes the gripper holds at once.")
    tubes: list[CarrierTube]
    return_to_start: bool = True
    handling: HandlingSpec = Field(
        default=HandlingSpec(),
        description="pick_s and scan_s per tube at its position, place_s per tube at the output.",
    )

    _ids = field_validator("tubes")(_unique_ids)


class ProblemError(ValueError):
    """The problem file is invalid; `problems` lists each one as `field.path: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Plan(BaseModel):
    """The answer to a problem; JSON output drops the fields that are None."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: list[int] = Field(description="Indices into `points` or `tubes`, in visiting order.")
    cost_s: float = Field(description="Total time, recomputed from the order (moves + fixed).")
    elapsed_ms: float = Field(description="Wall time spent planning.")
    ids: list[str] | None = Field(default=None, description="Tube ids in `order` (tube forms).")
    trips: list[list[int]] | None = Field(
        default=None, description="Carrier: tube indices per gripper load, in order."
    )
    iterations: int = Field(default=0, description="Search iterations run (reproducibility).")
    warm: bool = Field(
        default=True,
        description="False for a quick numpy-only plan answered while the worker was starting.",
    )
