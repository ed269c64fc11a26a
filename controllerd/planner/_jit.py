"""The one numba decorator every planner kernel uses: fixed options, typed for mypy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba as nb

_F = TypeVar("_F", bound=Callable[..., Any])


def jit(fn: _F) -> _F:
    """numba's njit with our fixed options, typed so that mypy keeps checking call sites."""
    return cast(_F, nb.njit(cache=True, nogil=True)(fn))
