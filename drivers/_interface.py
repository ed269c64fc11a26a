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
