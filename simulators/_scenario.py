"""Fault scenarios: faults injected and cleared on a schedule of simulated seconds.

A scenario file is TOML with `[[steps]]`, each `at_s` (simulated seconds since the simulator
started), `device`, `fault` and optional `clear`; each step does exactly what
`simulators inject DEVICE FAULT [--clear]` does. Steps run in `at_s` order (ties in file order).
Not covered: repeating schedules, random schedules, conditions on the room's state.
"""

from __future__ import annotations

import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators._clock import SimClock
from simulators._errors import ScenarioError

_log = structlog.get_logger("simulators.scenario")


class ScenarioStep(BaseModel):
    """One scheduled injection (or clearing) of a fault."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float = Field(ge=0, description="Simulated seconds since start.")
    device: str = Field(min_length=1, description="Id of a simulated device.")
    fault: str = Field(min_length=1, description="A fault name (see simulators._faults).")
    clear: bool = Field(default=False, description="Clear the fault instead of injecting it.")


class Scenario(BaseModel):
    """A whole scenario file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[ScenarioStep, ...] = Field(default=(), description="The schedule.")

    def ordered(self) -> list[ScenarioStep]:
        """The steps in the order they run."""
        return sorted(self.steps, key=lambda step: step.at_s)


def _location(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def parse_scenario(data: object, *, source: str = "<scenario>") -> Scenario:
    """Validate parsed TOML (ScenarioError naming every problem with its path)."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ScenarioError(f"{source}: " + "; ".join(problems)) from exc


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (ScenarioError when it cannot be used)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    return parse_scenario(data, source=str(path))


Injector = Callable[[str, str, bool], Awaitable[None]]


async def run_scenario(scenario: Scenario, *, clock: SimClock, inject: Injector) -> None:
    """Run every step at its simulated time, then return."""
    for step in scenario.ordered():
        await clock.sleep_until(step.at_s)
        _log.info(
            "scenario step", at_s=step.at_s, device=step.device, fault=step.fault, clear=step.clear
        )
        await inject(step.device, step.fault, step.clear)
