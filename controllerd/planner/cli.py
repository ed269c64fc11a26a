"""`controllerd plan FILE [--budget-ms N] [--seed S]`: plan a problem file, print the plan as JSON.

Exit status: 0 with the plan on stdout; 2 with one `FILE: field.path: message` line per problem
on stderr when the file cannot be read, is not JSON, or is not a valid problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from controllerd.planner._model import ProblemError
from controllerd.planner._parse import parse_problem
from controllerd.planner._planner import DEFAULT_BUDGET_MS, plan, plan_rack_batches
from controllerd.planner._rack_model import RackBatchProblem

EXIT_INVALID = 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `plan` command on an `argparse` subparsers object and return its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="plan a pick list offline and print the plan as JSON",
        description="Plan a route, pick-and-place, carrier or rack-batch problem "
        "(see docs/planner.md).",
    )
    configure_parser(parser)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to `parser`."""
    parser.add_argument("file", type=Path, help="problem file (JSON)")
    parser.add_argument(
        "--budget-ms",
        type=float,
        default=DEFAULT_BUDGET_MS,
        help=f"planning time budget in ms (default {DEFAULT_BUDGET_MS:g})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--max-iterations",
        type=int,
        default=None,
        help="stop the search after this many perturbations (reproducible runs)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    path: Path = args.file
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"{path}: not valid JSON: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        problem = parse_problem(data)
    except ProblemError as exc:
        for problem_text in exc.problems:
            print(f"{path}: {problem_text}", file=sys.stderr)
        return EXIT_INVALID
    if args.budget_ms < 0:
        print("--budget-ms: must be ≥ 0", file=sys.stderr)
        return EXIT_INVALID
    if args.max_iterations is not None and args.max_iterations < 0:
        print("--max-iterations: must be ≥ 0", file=sys.stderr)
        return EXIT_INVALID
    # Load the compiled kernels before the clock starts: the budget is search time.
    from controllerd.planner import _kernels

    _kernels.warm_up()
    options: dict[str, Any] = {
        "budget_ms": args.budget_ms,
        "seed": args.seed,
        "max_iterations": args.max_iterations,
    }
    result = (
        plan_rack_batches(problem, **options)
        if isinstance(problem, RackBatchProblem)
        else plan(problem, **options)
    )
    print(result.model_dump_json(exclude_none=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (`python -m controllerd.planner`)."""
    parser = argparse.ArgumentParser(prog="controllerd plan")
    configure_parser(parser)
    return run(parser.parse_args(argv))
