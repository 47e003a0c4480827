"""Watching applied writes live: ``async for event in store.watch(...)``.

Reads the actor's ``WriteApplied`` events from the events stream (``ctxstore.event.<tenant>.
<id>.<kind>``) with an ordered consumer. The ordered consumer recreates itself from the last
sequence it delivered after a reconnect or a server restart (its heartbeat notices a lost
consumer within about two seconds here), and the watcher drops anything at or below the last
stream sequence and write sequence it has yielded, so events come in order with no gap and
no duplicate.

Starting point: ``from_start`` replays every recorded event first (the events stream keeps
them for its max age); otherwise the watch starts after the last event stored when it opens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Final

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from broker import EVENTS_STREAM
from contracts import Decoders, WriteApplied, event_filter

__all__ = ["Watch"]

_HEARTBEAT_S: Final = 0.5


class Watch(AsyncIterator[WriteApplied]):
    """An async iterator of applied writes. Close it with ``aclose()`` or ``async with``."""

    def __init__(
        self,
        connection: Callable[[], Awaitable[Client]],
        tenant: str,
        evolution_id: str | None = None,
        *,
        phases: Iterable[str] | None = None,
        from_start: bool = False,
    ) -> None:
        self._connection = connection
        self.subject = event_filter(tenant, evolution_id)
        self.phases = None if phases is None else frozenset(str(p) for p in phases)
        self.from_start = from_start
        self._sub: Any = None
        self._last_stream_seq = 0
        self._last_write_seq = 0
        self._closed = False
        self._next: asyncio.Future[Any] | None = None

    async def open(self) -> Watch:
        """Subscribe now (otherwise the first ``__anext__`` does): events stored after this
        call are seen even if iteration starts later."""
        if self._sub is not None or self._closed:
            return self
        nc = await self._connection()
        js = nc.jetstream()
        if self.from_start:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        else:
            info = await js.stream_info(EVENTS_STREAM)
            self._last_stream_seq = info.state.last_seq
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=info.state.last_seq + 1,
            )
        self._sub = await js.subscribe(
            self.subject,
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            idle_heartbeat=_HEARTBEAT_S,
            config=config,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        return self

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WriteApplied:
        if self._closed:
            raise StopAsyncIteration
        await self.open()
        while True:
            self._next = asyncio.ensure_future(self._sub.next_msg(timeout=None))
            try:
                msg = await self._next
            except (asyncio.CancelledError, nats.errors.Error):
                if self._closed:  # aclose() while waiting
                    raise StopAsyncIteration from None
                raise
            finally:
                self._next = None
            stream_seq = msg.metadata.sequence.stream
            if stream_seq <= self._last_stream_seq:
                continue  # redelivered after a consumer reset
            self._last_stream_seq = stream_seq
            try:
                event = Decoders.event.decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
            if not isinstance(event, WriteApplied) or event.seq <= self._last_write_seq:
                continue  # the same write announced twice (an actor restart)
            self._last_write_seq = event.seq
            if self.phases is not None and event.kind not in self.phases:
                continue
            return event

    async def aclose(self) -> None:
        self._closed = True
        if self._next is not None:
            self._next.cancel()
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def __aenter__(self) -> Watch:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
