"""The one numba decorator every planner kernel uses: fixed options, typed for mypy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba as nb

_F = TypeVar("_F", bound=Callable[..., Any])


def jit(fn: _F) -> _F:
    """numba's njit with our fixed options, typed so that mypy keeps checking call sites."""
    return cast(_F, nb.njit(cache=True, nogil=True)(fn))


def jit_inline(fn: _F) -> _F:
    """`jit`, and inlined into other kernels at numba IR level (`inline="always"`).

    Only for the local-search moves, each called from one place in the local search: inlined there
    they cost no more compile time and the repair after a kick is about 10 % faster (a move
    called as a function passes a dozen arrays per call, once per node scanned). Inlining the
    tour primitives too (called from many places) gained nothing and doubled the cold compile.
    """
    return cast(_F, nb.njit(cache=True, nogil=True, inline="always")(fn))
