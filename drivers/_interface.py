"""The driver interface: what the device logic above sees of any device, real or simulated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Reading:
    """One poll's result: engineering values by name, and values the device could not measure."""

    values: Mapping[str, float]
    #: value name -> why it has no valid reading (a sensor's open-circuit code, …)
    faults: Mapping[str, str] = field(default_factory=dict)
    #: value name -> the device's own words on that value's state (a tube store's fault text
    #: beside its `state_code`); a value with nothing to say is absent
    texts: Mapping[str, str] = field(default_factory=dict)


_new = object.__new__
# The slots' own setters: what the frozen dataclass's `__init__` reaches through
# `object.__setattr__`, without its keyword handling and the `texts` factory.
_set_values = Reading.__dict__["values"].__set__
_set_faults = Reading.__dict__["faults"].__set__
_set_texts = Reading.__dict__["texts"].__set__


def new_reading(values: Mapping[str, float], faults: Mapping[str, str]) -> Reading:
    """`Reading(values=values, faults=faults)`, built at a third of its cost: a poll path
    builds one per device read."""
    reading: Reading = _new(Reading)
    _set_values(reading, values)
    _set_faults(reading, faults)
    _set_texts(reading, {})
    return reading


@runtime_checkable
class Driver(Protocol):
    """A handful of async methods; transports differ, the device logic above does not."""

    @property
    def device_id(self) -> str:
        """The device this driver talks to."""
        ...

    async def connect(self) -> None:
        """Open the link (idempotent); raises a DriverError naming the cause."""
        ...

    async def close(self) -> None:
        """Release the link; safe to call twice."""
        ...

    async def read(self) -> Reading:
        """Read every mapped value once; raises a DriverError when the device did not answer."""
        ...

    async def write(self, name: str, value: float) -> None:
        """Write one named value; raises InvalidRequest before sending anything doubtful."""
        ...
