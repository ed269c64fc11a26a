"""`parse_problem`: tell the problem forms apart by `kind` and validate one, naming bad fields."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from controllerd.planner._model import CarrierProblem, PickPlaceProblem, ProblemError, RouteProblem
from controllerd.planner._rack_model import RackBatchProblem

AnyProblem = RouteProblem | PickPlaceProblem | CarrierProblem | RackBatchProblem
_KINDS = ("route", "pick_place", "carrier", "rack_batches")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("kind", "route")
        return kind if isinstance(kind, str) else "route"
    return str(getattr(value, "kind", "route"))


Problem = Annotated[
    Annotated[RouteProblem, Tag("route")]
    | Annotated[PickPlaceProblem, Tag("pick_place")]
    | Annotated[CarrierProblem, Tag("carrier")]
    | Annotated[RackBatchProblem, Tag("rack_batches")],
    Discriminator(
        _kind,
        custom_error_type="unknown_kind",
        custom_error_message="'kind' must be 'route', 'pick_place', 'carrier' or 'rack_batches'",
    ),
]

_ADAPTER: TypeAdapter[Problem] = TypeAdapter(Problem)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in _KINDS:
            path += f".{part}" if path else part
    return path or "(top level)"


def parse_problem(data: object) -> AnyProblem:
    """Validate decoded JSON into a problem, or raise `ProblemError` naming each bad field."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ProblemError(
            [f"{_field_path(err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from exc
