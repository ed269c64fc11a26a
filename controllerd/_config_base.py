"""Building blocks of the config models, shared by every device kind's model.

A device kind's model subclasses `DeviceBase` and adds its `kind` literal, its `driver` block and
whatever else it needs; `controllerd.config` lists it in `DEVICE_KINDS` and the union.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from controllerd._strict import Strict, check_id
from controllerd.alarms._rules import DeviceAlarms

__all__ = ["DeviceBase", "Strict", "check_id"]


class DeviceBase(Strict):
    """What every `[[devices]]` entry has, whatever its kind."""

    id: str = Field(description="Unique device id: an MQTT topic level.")
    name: str = Field(default="", description="Human description (location, model).")
    poll_interval_s: float = Field(default=5.0, ge=0.05, le=3600, description="Poll period.")
    alarms: DeviceAlarms | None = Field(
        default=None,
        description="Alarm rules (docs/alarms.md); without it the kind's defaults apply.",
    )

    _id = field_validator("id")(check_id)

    def stale_limits(self) -> dict[str, float]:
        """Value name -> seconds unchanged after which the value counts as stale (frozen)."""
        return {}

    def read_budget_s(self) -> float:
        """Longest one read may take with its retries: the watchdog's and comm-loss's yardstick."""
        return 10.0

    def describe(self) -> str:
        """One line for `check-config`: the kind, the link and the values."""
        return str(getattr(self, "kind", "device"))
