"""The `plan` command's exit codes and output, and planning off the event loop."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controllerd.planner import PlannerWorker
from controllerd.planner.cli import add_parser, main, run

from .conftest import MOTION, rack_job, random_points, route, route_cost


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_plan_prints_the_route_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    points = random_points(20, seed=1)
    path = _write(tmp_path, {"motion": MOTION, "start": [0, 0], "points": points})
    assert main([str(path), "--budget-ms", "20", "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"order", "cost_s", "elapsed_ms"} <= out.keys()
    assert sorted(out["order"]) == list(range(20))
    assert out["cost_s"] == pytest.approx(route_cost(route(points), out["order"]))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"start": [0, 0], "points": []}, "motion: Field required"),
        ({"motion": MOTION, "start": [0, 0], "points": [[0, "nan"]]}, "points[0][1]"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    assert main([str(_write(tmp_path, content))]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_add_parser_wires_a_plan_subcommand(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="controllerd")
    add_parser(parser.add_subparsers(dest="command"))
    path = _write(tmp_path, {"motion": MOTION, "start": [0, 0], "points": [[1, 1]]})
    args = parser.parse_args(["plan", str(path), "--budget-ms", "5"])
    assert args.command == "plan"
    assert run(args) == 0


async def test_worker_plans_off_the_event_loop() -> None:
    problem = route(random_points(600, seed=2))
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    async with PlannerWorker() as worker:
        assert await worker.ready()
        assert worker.pid is not None
        assert worker.pid != os.getpid()
        async with asyncio.TaskGroup() as group:
            beat = group.create_task(heartbeat(), name="heartbeat")
            result = await worker.plan(problem, budget_ms=300, seed=1)
            beat.cancel()
        job = rack_job(tubes=30, racks=8, slots=3, limit_s=150.0, seed=1)
        batches = await worker.plan_rack_batches(job, budget_ms=50, seed=1)
    assert sorted(result.order) == list(range(600))
    assert sorted(batches.order) == list(range(30))
    # The loop kept running while the worker planned (a blocked loop would not tick at all).
    assert ticks >= 5


def test_controllerd_plan_command_prints_the_documented_json(tmp_path: Path) -> None:
    """The real command (`controllerd plan`, through controllerd.cli) in its own process."""
    points = random_points(30, seed=4)
    path = _write(tmp_path, {"motion": MOTION, "start": [0, 0], "points": points})
    command = [sys.executable, "-m", "controllerd", "plan", str(path), "--budget-ms", "30"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # docs/planner.md: order, cost_s, elapsed_ms, plus iterations and warm.
    assert out.keys() == {"order", "cost_s", "elapsed_ms", "iterations", "warm"}
    assert sorted(out["order"]) == list(range(30))
    assert out["cost_s"] == pytest.approx(route_cost(route(points), out["order"]), rel=1e-12)
    assert out["warm"] is True
    assert isinstance(out["iterations"], int)

    bad = _write(tmp_path, {"motion": MOTION, "start": [0, 0], "points": [[1, 2], [3]]})
    refused = subprocess.run(
        [sys.executable, "-m", "controllerd", "plan", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr == f"{bad}: points[1][1]: Field required\n"
