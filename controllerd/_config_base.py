"""Building blocks of the config models, shared by every device kind's model.

A device kind's model subclasses `DeviceBase` and adds its `kind` literal, its `driver` block and
whatever else it needs; `controllerd.config` lists it in `DEVICE_KINDS` and the union.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ID_RULE = "lower-case letters, digits, '-' and '_', starting with a letter or digit"


def check_id(value: str) -> str:
    """An id that is safe as an MQTT topic level (pydantic validator)."""
    if not _ID.match(value):
        raise ValueError(
            f"'{value}' is not a valid id ({_ID_RULE}; it becomes an MQTT topic level)"
        )
    return value


class Strict(BaseModel):
    """Every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceBase(Strict):
    """What every `[[devices]]` entry has, whatever its kind."""

    id: str = Field(description="Unique device id: an MQTT topic level.")
    name: str = Field(default="", description="Human description (location, model).")
    poll_interval_s: float = Field(default=5.0, ge=0.05, le=3600, description="Poll period.")

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
