"""Simulated devices of one kind that a room serves together: entered as one, found by id."""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

M = TypeVar("M", bound=AbstractAsyncContextManager[Any])


class Fleet(Generic[M]):
    """`members` by device id; entering the fleet enters every member (and undoes on error)."""

    def __init__(self, members: dict[str, M]) -> None:
        self.members = members
        self._stack: contextlib.AsyncExitStack | None = None

    def __bool__(self) -> bool:
        return bool(self.members)

    def get(self, device_id: str) -> M | None:
        return self.members.get(device_id)

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            for member in self.members.values():
                await stack.enter_async_context(member)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
