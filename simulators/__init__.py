"""Simulators of the room's devices: real Modbus servers with physics and fault injection.

`SimulatedRoom` serves every device of a room config that has a `simulation` block; faults are
injected with `SimulatedRoom.inject` in-process, or `inject` through a running simulator's
control socket (what `simulators inject` does). See docs/simulators.md.
"""

from simulators._clock import SimClock
from simulators._control import inject, status
from simulators._device import SimulatedDevice
from simulators._errors import ControlError, FaultError, ScenarioError, SimulatorError
from simulators._faults import FAULTS, FAULTS_BY_KIND
from simulators._room import Endpoint, SimulatedRoom
from simulators._scenario import Scenario, ScenarioStep, load_scenario, parse_scenario
from simulators.physics import FreezerModel, ProbeModel

__all__ = [
    "FAULTS",
    "FAULTS_BY_KIND",
    "ControlError",
    "Endpoint",
    "FaultError",
    "FreezerModel",
    "ProbeModel",
    "Scenario",
    "ScenarioError",
    "ScenarioStep",
    "SimClock",
    "SimulatedDevice",
    "SimulatedRoom",
    "SimulatorError",
    "inject",
    "load_scenario",
    "parse_scenario",
    "status",
]
