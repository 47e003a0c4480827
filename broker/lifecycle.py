"""The lifecycle every resource of this package shares: ``async with`` opens and closes it.

``open()`` acquires (a connection, a subscription, a child process, an actor's tasks) and
returns the resource; ``aclose()`` releases it, always does its best, and may be called
again. ``async with resource:`` is ``open()`` then ``aclose()``, whatever happens inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncResource"]


class AsyncResource(ABC):
    @abstractmethod
    async def open(self) -> Self:
        """Acquire what the resource needs; returns the resource."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what ``open()`` acquired; safe to call twice."""

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
