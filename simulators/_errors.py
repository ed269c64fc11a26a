"""The simulators' exception tree: every error raised on purpose is a SimulatorError."""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error the simulators raise on purpose."""


class FaultError(SimulatorError):
    """A fault that cannot be injected: unknown device, unknown fault, or one the kind lacks."""

    def __init__(self, message: str, *, device: str, fault: str) -> None:
        super().__init__(message)
        self.device = device
        self.fault = fault


class ScenarioError(SimulatorError):
    """A scenario file that cannot be used; the message names the file and every problem."""


class ControlError(SimulatorError):
    """The control endpoint refused a request, or could not be reached."""
