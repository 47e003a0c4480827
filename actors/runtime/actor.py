"""The actor lifecycle every long-running part of the store shares.

``start()`` runs the actor in a task of its own and returns once ``on_start`` has finished
(or raises what made it fail); ``aclose()`` stops it and waits; ``wait()`` waits for it to
stop, and raises what made it fail if a task it owns did. Every task the actor starts
with ``spawn`` belongs to its task group and is cancelled when it stops, so nothing outlives
it; ``on_stop`` then releases what ``on_start`` acquired.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import Coroutine
from typing import Any, Self

from actors.runtime.cancel import cancel_until_done
from broker.lifecycle import AsyncResource

__all__ = ["Actor", "ActorStopped"]


class ActorStopped(RuntimeError):
    """Work was handed to an actor that is not running."""


class Actor(AsyncResource):
    actor_name = "actor"

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._owned: set[asyncio.Task[Any]] = set()

    @abstractmethod
    async def on_start(self) -> None:
        """Acquire and start everything; the actor is ready when this returns."""

    @abstractmethod
    async def on_stop(self) -> None:
        """Release what ``on_start`` acquired; runs after every owned task has ended."""

    @property
    def running(self) -> bool:
        return self._group is not None and not self._stop.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the actor owns (cancelled when it stops)."""
        if self._group is None:
            coro.close()
            raise ActorStopped(f"{self.actor_name} is not running")
        task = self._group.create_task(coro, name=name)
        self._owned.add(task)
        task.add_done_callback(self._owned.discard)
        return task

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{self.actor_name} was already started")
        self._runner = asyncio.create_task(self._run(), name=self.actor_name)
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            ready.cancel()
            await self._runner  # raises what stopped it

    async def open(self) -> Self:
        """``start()``: for ``async with``."""
        await self.start()
        return self

    async def wait(self) -> None:
        """Until the actor has stopped, by ``aclose()`` or because a task it owns failed;
        raises that failure (an ``ExceptionGroup``)."""
        if self._runner is not None:
            await asyncio.shield(self._runner)

    async def aclose(self) -> None:
        """Stop, and wait until stopped; raises what stopped the actor, if a task failed."""
        self._stop.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def _cancel_owned(self) -> None:
        """Cancel every owned task, until each has ended (see ``actors.runtime.cancel``)."""
        while self._owned:  # a task being cancelled may spawn another
            await cancel_until_done(list(self._owned))

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self.on_start()
                self._ready.set()
                await self._stop.wait()
                await self._cancel_owned()
        finally:
            self._group = None
            await self.on_stop()
