"""Alarms the ISA-18.2 way: rules, detectors, the state model and the engine.

See docs/alarms.md for the rules, the state model, the ids and the commands. The engine is in
`controllerd.alarms.engine` (not re-exported: the config models import the rules from here, and
the engine imports the config).
"""

from controllerd.alarms._rules import (
    KIND_DEFAULTS,
    SEVERITY_RANK,
    DeviceAlarms,
    DiscreteRule,
    LimitRule,
    RateRule,
    Severity,
    SuppressRule,
    ValueAlarms,
    rules_for,
)
from controllerd.alarms._state import AlarmCommandError, AlarmState, Event

__all__ = [
    "KIND_DEFAULTS",
    "SEVERITY_RANK",
    "AlarmCommandError",
    "AlarmState",
    "DeviceAlarms",
    "DiscreteRule",
    "Event",
    "LimitRule",
    "RateRule",
    "Severity",
    "SuppressRule",
    "ValueAlarms",
    "rules_for",
]
