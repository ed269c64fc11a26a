"""The base of every config model: strict, immutable, with topic-safe ids."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

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
