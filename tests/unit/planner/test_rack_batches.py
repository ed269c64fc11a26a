"""Rack-batch plans: every tube once, ≤ K racks a trip, exposure within the limit, honest cost."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllerd.planner import (
    ProblemError,
    RackBatchPlan,
    RackBatchProblem,
    parse_problem,
    plan_rack_batches,
)
from controllerd.planner._rack_batches import _STALL_ITERATIONS
from controllerd.planner.cli import main

from .conftest import rack_job, rack_job_data, rack_job_recomputed, walk_s

AXIS_FAST = {"v_mm_s": 800.0, "a_mm_s2": 4000.0}


def assert_valid(problem: RackBatchProblem, result: RackBatchPlan) -> None:
    """The checks every plan must pass, recomputed without the planner's code."""
    assert sorted(result.order) == list(range(len(problem.tubes)))
    assert result.ids == [problem.tubes[t].id for t in result.order]
    rack_of = {tube.id: tube.rack for tube in problem.tubes}
    for batch in result.batches:
        assert 1 <= len(batch.racks) <= problem.capacity
        assert len(set(batch.racks)) == len(batch.racks)
        assert batch.tubes == [problem.tubes[t].id for t in batch.order]
        assert {rack_of[t] for t in batch.tubes} <= set(batch.racks)
    total, exposures = rack_job_recomputed(problem, result.batches)
    assert result.cost_s == pytest.approx(total, rel=1e-9)
    for batch, recomputed in zip(result.batches, exposures, strict=True):
        assert batch.exposure_s == pytest.approx(recomputed, rel=1e-9)
        assert max(recomputed) <= problem.exposure_limit_s + 1e-6
    assert result.exposure_violations == 0
    assert result.fetches == sum(len(b.racks) for b in result.batches)
    assert result.batches[-1].end_s == pytest.approx(result.cost_s, rel=1e-9)


def test_whole_job_plan_is_valid_and_reproducible() -> None:
    problem = rack_job(tubes=60, racks=14, slots=4, limit_s=120.0, seed=1)
    result = plan_rack_batches(problem, budget_ms=None, seed=3, max_iterations=30)
    assert_valid(problem, result)
    assert result.iterations == 30
    again = plan_rack_batches(problem, budget_ms=None, seed=3, max_iterations=30)
    assert again.model_dump(exclude={"elapsed_ms"}) == result.model_dump(exclude={"elapsed_ms"})


def test_every_rack_is_fetched_once_when_the_limit_allows() -> None:
    problem = rack_job(tubes=30, racks=8, slots=3, limit_s=600.0, seed=2)
    result = plan_rack_batches(problem, budget_ms=0)
    assert_valid(problem, result)
    used = {tube.rack for tube in problem.tubes}
    assert sorted(r for b in result.batches for r in b.racks) == sorted(used)


def test_a_rack_too_slow_for_one_trip_is_fetched_again() -> None:
    data = rack_job_data(tubes=12, racks=1, slots=2, limit_s=25.0, seed=3)
    problem = parse_problem(data)
    assert isinstance(problem, RackBatchProblem)
    result = plan_rack_batches(problem, budget_ms=0)
    assert_valid(problem, result)
    assert result.fetches >= 2  # 12 tubes at ≥ 2.3 s each cannot fit one 25 s trip


def test_single_tube_job_costs_fetch_pick_return_by_hand() -> None:
    data = rack_job_data(tubes=1, racks=1, slots=1, limit_s=100.0, seed=4)
    data["racks"][0].update(angle_deg=90.0, level_mm=2000.0)  # 90° at 30°/s², lift at the port
    data["tubes"][0].update(position=[0.0, 0.0], destination=[500.0, 0.0])
    data["store"] = {**data["store"], "rotation": {"v_deg_s": 30.0, "a_deg_s2": 15.0}}
    problem = parse_problem(data)
    assert isinstance(problem, RackBatchProblem)
    result = plan_rack_batches(problem, budget_ms=0)
    rotate = 90.0 / 30.0 + 30.0 / 15.0  # cruise profile: d ≥ v²/a = 60°
    fetch = rotate + 4.0 + 0.0 + 6.0  # position, extract, lift (none), transfer
    move = 500.0 / 800.0 + 800.0 / 4000.0  # home (500, 0) ↔ slot (0, 0) along x
    pick = 2 * move + 2.3  # home → tube, tube → destination (= home), plus handling
    back = 6.0 + 4.0  # transfer, insert (the carousel is already there, no lift travel)
    assert result.cost_s == pytest.approx(fetch + pick + back, rel=1e-12)
    assert result.batches[0].exposure_s == pytest.approx([pick], rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    tubes=st.integers(min_value=0, max_value=25),
    racks=st.integers(min_value=1, max_value=8),
    slots=st.integers(min_value=1, max_value=4),
    limit_s=st.floats(min_value=12.0, max_value=300.0),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_random_jobs_give_valid_plans(
    tubes: int, racks: int, slots: int, limit_s: float, seed: int
) -> None:
    try:
        problem = rack_job(tubes=tubes, racks=racks, slots=slots, limit_s=limit_s, seed=seed)
    except ProblemError as exc:
        assert "impossible exposure limit" in str(exc)  # a far tube alone exceeds a low limit
        return
    result = plan_rack_batches(problem, budget_ms=1000, seed=seed, max_iterations=10)
    if tubes == 0:
        assert result.batches == []
        assert result.cost_s == 0.0
        return
    assert_valid(problem, result)
    assert result.fcfs.fetches >= len({t.rack for t in problem.tubes})


def test_first_come_first_served_fetches_on_demand() -> None:
    data = rack_job_data(tubes=3, racks=2, slots=1, limit_s=300.0, seed=5)
    for tube, rack in zip(data["tubes"], ["R0", "R1", "R0"], strict=True):
        tube["rack"] = rack
    problem = parse_problem(data)
    assert isinstance(problem, RackBatchProblem)
    result = plan_rack_batches(problem, budget_ms=0)
    assert result.fcfs.fetches == 3  # R0, R1, R0 again: one slot, requests interleaved
    assert result.fcfs_by_rack.fetches == 2
    assert result.fetches == 2
    assert result.cost_s < result.fcfs.cost_s


def _tweak(**changes: Any) -> dict[str, Any]:
    data = rack_job_data(tubes=4, racks=2, slots=2, limit_s=120.0, seed=6)
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_tweak(exposure_limit_s=2.0), "exposure_limit_s: Value error, impossible exposure"),
        (_tweak(exposure_limit_s=0), "exposure_limit_s: Input should be greater than 0"),
        (_tweak(station={"slots": []}), "station.slots: List should have at least 1 item"),
        (_tweak(racks=[]), "tube 'T0' names unknown rack"),
        (
            _tweak(racks=[{"id": "R0", "angle_deg": 0, "level_mm": 0}] * 2),
            "racks: Value error, duplicate rack id 'R0'",
        ),
        (
            _tweak(store={"rotation": {"v_deg_s": -1, "a_deg_s2": 1}}),
            "store.rotation.v_deg_s: Input should be greater than 0",
        ),
    ],
)
def test_bad_jobs_are_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_problem(data)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_impossible_limit_exits_2_naming_the_tube(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(_tweak(exposure_limit_s=2.0)))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "impossible exposure limit: tube 'T0' of rack" in err
    assert "exposure_limit_s 2 s" in err


def test_cli_prints_the_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(rack_job_data(tubes=20, racks=6, slots=3, limit_s=150, seed=7)))
    assert main([str(path), "--budget-ms", "50", "--seed", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"batches", "order", "ids", "cost_s", "fcfs", "fcfs_by_rack"} <= out.keys()
    assert {"racks", "tubes", "exposure_s", "pick_s"} <= out["batches"][0].keys()
    assert sorted(out["order"]) == list(range(20))


def _once_each_plans(problem: RackBatchProblem) -> Iterator[list[SimpleNamespace]]:
    """Every plan that fetches each rack once: rack orders, cuts into trips of ≤ K racks, and
    each trip's tubes in their quickest pick order (which also gives the least exposure)."""
    tubes_of: dict[str, list[int]] = {}
    for t, tube in enumerate(problem.tubes):
        tubes_of.setdefault(tube.rack, []).append(t)
    slots = problem.station.slots
    motion = problem.motion.limits()

    def pick_s(racks: tuple[str, ...], order: tuple[int, ...]) -> float:
        stops = [problem.start]
        for t in order:
            tube = problem.tubes[t]
            slot = slots[racks.index(tube.rack)]
            stops += [(slot[0] + tube.position[0], slot[1] + tube.position[1]), tube.destination]
        return walk_s([*stops, problem.start], motion)

    def trip(racks: tuple[str, ...]) -> SimpleNamespace:
        tubes = [t for rack in racks for t in tubes_of[rack]]
        order = min(itertools.permutations(tubes), key=lambda o: pick_s(racks, o))
        return SimpleNamespace(racks=list(racks), tubes=[problem.tubes[t].id for t in order])

    def cuts(racks: tuple[str, ...]) -> Iterator[list[tuple[str, ...]]]:
        if not racks:
            yield []
        for size in range(1, min(problem.capacity, len(racks)) + 1):
            for rest in cuts(racks[size:]):
                yield [racks[:size], *rest]

    for racks in itertools.permutations(sorted(tubes_of)):
        for trips in cuts(racks):
            yield [trip(t) for t in trips]


@pytest.mark.parametrize(
    ("tubes", "racks", "slots", "limit_s", "seed"),
    [(5, 3, 2, 600.0, 1), (5, 3, 2, 40.0, 2), (6, 4, 2, 60.0, 3), (5, 4, 3, 600.0, 4)],
)
def test_tiny_jobs_match_brute_force(
    tubes: int, racks: int, slots: int, limit_s: float, seed: int
) -> None:
    """No plan that fetches each rack once is shorter (a plan fetching a rack twice may be)."""
    problem = rack_job(tubes=tubes, racks=racks, slots=slots, limit_s=limit_s, seed=seed)
    best = float("inf")
    for batches in _once_each_plans(problem):
        total, exposures = rack_job_recomputed(problem, batches)  # type: ignore[arg-type]
        if max(max(e) for e in exposures) <= limit_s:
            best = min(best, total)
    assert best < float("inf")  # the instance has such a plan
    result = plan_rack_batches(problem, budget_ms=None, seed=1, max_iterations=300)
    assert_valid(problem, result)
    assert result.cost_s <= best + 1e-6


def test_a_rack_is_fetched_twice_when_that_is_shorter() -> None:
    """Racks cost nothing to move here and the limit lets no two whole racks share a trip: a
    rack's tubes split over two trips (say R's, one trip with Q and one with S) save the gantry
    a trip from home."""
    free = {"v_deg_s": 1000.0, "a_deg_s2": 1e6}
    data: dict[str, Any] = {
        "kind": "rack_batches",
        "motion": {"x": AXIS_FAST, "y": AXIS_FAST},
        "start": [300.0, 0.0],
        "handling": {"pick_s": 5.0},
        "store": {
            "rotation": free,
            "lift": {"v_mm_s": 1000.0, "a_mm_s2": 1e6},
            "port_level_mm": 0.0,
            "handle_s": 0.0,
            "transfer_s": 0.0,
        },
        "station": {"slots": [[0.0, 0.0], [20.0, 0.0]]},
        "exposure_limit_s": 17.5,  # three tubes per trip (5 s each, plus moves), not four
        "racks": [{"id": r, "angle_deg": 0.0, "level_mm": 0.0} for r in ("Q", "R", "S")],
        "tubes": [
            {"id": f"{rack}{i}", "rack": rack, "position": [9.0 * i, 0.0], "destination": [0, 30]}
            for rack, count in (("Q", 2), ("R", 2), ("S", 2))
            for i in range(count)
        ],
    }
    problem = parse_problem(data)
    assert isinstance(problem, RackBatchProblem)
    once_each = float("inf")
    for batches in _once_each_plans(problem):
        total, exposures = rack_job_recomputed(problem, batches)  # type: ignore[arg-type]
        if max(max(e) for e in exposures) <= problem.exposure_limit_s:
            once_each = min(once_each, total)
    result = plan_rack_batches(problem, budget_ms=None, seed=1, max_iterations=200)
    assert_valid(problem, result)
    assert result.fetches == 4  # three racks, one of them fetched twice
    assert len(result.batches) == 2
    assert result.cost_s < once_each - 0.1


def test_the_search_ends_when_perturbations_stop_paying() -> None:
    """No time limit and a cap far away: the search still ends, after `_STALL_ITERATIONS`
    perturbations in a row without a shorter job, with the plan that capping it there gives (a
    small job's plan is ready long before its budget)."""
    problem = rack_job(tubes=20, racks=6, slots=4, limit_s=120.0, seed=1)
    cap = 20 * _STALL_ITERATIONS
    result = plan_rack_batches(problem, budget_ms=None, seed=1, max_iterations=cap)
    assert_valid(problem, result)
    assert _STALL_ITERATIONS <= result.iterations < cap
    capped = plan_rack_batches(problem, budget_ms=None, seed=1, max_iterations=result.iterations)
    assert capped.model_dump(exclude={"elapsed_ms"}) == result.model_dump(exclude={"elapsed_ms"})
