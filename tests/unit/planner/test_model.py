"""Problem validation: every bad field is named."""

from __future__ import annotations

from typing import Any

import pytest

from controllerd.planner import PickPlaceProblem, ProblemError, RouteProblem, parse_problem

from .conftest import MOTION


def _route(**changes: Any) -> dict[str, Any]:
    return {"motion": MOTION, "start": [0, 0], "points": [[1, 2], [3, 4]], **changes}


def test_route_form_without_kind() -> None:
    problem = parse_problem(_route())
    assert isinstance(problem, RouteProblem)
    assert problem.return_to_start is True


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"start": [0, 0], "points": []}, "motion: Field required"),
        (_route(points=[[1, float("nan")]]), "points[0][1]"),
        (_route(start=[float("inf"), 0]), "start[0]"),
        (_route(motion={"x": {"v_mm_s": -5, "a_mm_s2": 1}, "y": MOTION["y"]}), "motion.x.v_mm_s"),
        (_route(motion={"x": {"v_mm_s": 5, "a_mm_s2": 0}, "y": MOTION["y"]}), "motion.x.a_mm_s2"),
        (_route(speed=3), "speed: Extra inputs"),
        (_route(kind="teleport"), "'kind' must be"),
        (_route(points=[[1, 2, 3]]), "points[0]"),
        (
            {
                "kind": "pick_place",
                "motion": MOTION,
                "start": [0, 0],
                "tubes": [
                    {"id": "A", "source": [0, 0], "destination": [1, 1]},
                    {"id": "A", "source": [2, 0], "destination": [1, 3]},
                ],
            },
            "tubes: Value error, duplicate tube id 'A'",
        ),
        (
            {
                "kind": "carrier",
                "motion": MOTION,
                "start": [0, 0],
                "output": [0, 0],
                "capacity": 0,
                "tubes": [],
            },
            "capacity",
        ),
        (
            {
                "kind": "pick_place",
                "motion": MOTION,
                "start": [0, 0],
                "tubes": [],
                "handling": {"pick_s": -1},
            },
            "handling.pick_s",
        ),
    ],
)
def test_invalid_problems_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ProblemError) as info:
        parse_problem(data)
    assert any(field in problem for problem in info.value.problems), info.value.problems


def test_pick_place_defaults() -> None:
    problem = parse_problem({"kind": "pick_place", "motion": MOTION, "start": [0, 0], "tubes": []})
    assert isinstance(problem, PickPlaceProblem)
    assert problem.handling.per_tube_s == 0.0
