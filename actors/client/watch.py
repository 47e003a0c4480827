"""Watching applied writes live: ``async for event in store.watch(...)``.

Reads the actor's ``WriteApplied`` events from the events stream (``ctxstore.event.<tenant>.
<id>.<kind>``) with an ordered consumer. The ordered consumer recreates itself from the last
sequence it delivered after a reconnect or a server restart (its heartbeat notices a lost
consumer within about two seconds here), and the watcher drops anything at or below the last
stream sequence and write sequence it has yielded, so events come in order with no gap and
no duplicate.

When nats-py gives up on the connection (an outage past its reconnect attempts), the watch
subscribes again on the client's new connection, from the stream sequence after the last
event it saw, waiting for the server for as long as it takes (close the watch to stop).

Starting point: ``from_start`` replays every recorded event first (the events stream keeps
them for its max age); otherwise the watch starts after the last event stored when it opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Final

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from broker import EVENTS_STREAM
from broker.nats_errors import nats_errors, store_error
from contracts import Decoders, WriteApplied, event_filter
from contracts.errors import StoreTimeoutError, StoreUnavailableError

__all__ = ["Watch"]

log = logging.getLogger("ctxstore.watch")

_HEARTBEAT_S: Final = 0.5
_RESUME_WAIT_S: Final = 0.25
_RESUME_WAIT_MAX_S: Final = 5.0


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
        self._opened = False
        self._last_stream_seq = 0
        self._last_write_seq = 0
        self._closed = False
        self._next: asyncio.Future[Any] | None = None

    async def open(self) -> Watch:
        """Subscribe now (otherwise the first ``__anext__`` does): events stored after this
        call are seen even if iteration starts later."""
        if self._sub is not None or self._closed:
            return self
        with nats_errors(f"watching {self.subject}"):
            await self._subscribe()
        return self

    async def _subscribe(self) -> None:
        nc = await self._connection()
        js = nc.jetstream()
        if self._opened or self.from_start:
            # Resumed (or from the start): right after the last event this watch saw.
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._last_stream_seq + 1,
            )
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
        self._opened = True

    async def _resume(self) -> None:
        """The connection is gone for good (nats-py gave up on it): subscribe again on the
        client's new one, after the last event seen, for as long as the server stays away."""
        self._sub = None
        wait = _RESUME_WAIT_S
        while not self._closed:
            try:
                with nats_errors(f"watching {self.subject}"):
                    await self._subscribe()
                return
            except (StoreUnavailableError, StoreTimeoutError) as exc:
                log.info("watch on %s waits for the server: %s", self.subject, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, _RESUME_WAIT_MAX_S)

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WriteApplied:
        if self._closed:
            raise StopAsyncIteration
        await self.open()
        while True:
            if self._sub is None:
                await self._resume()
                if self._closed:
                    raise StopAsyncIteration
            self._next = asyncio.ensure_future(self._sub.next_msg(timeout=None))
            try:
                msg = await self._next
            except nats.errors.ConnectionClosedError:
                if self._closed:
                    raise StopAsyncIteration from None
                self._sub = None
                continue
            except (asyncio.CancelledError, nats.errors.Error) as exc:
                if self._closed:  # aclose() while waiting
                    raise StopAsyncIteration from None
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise store_error(exc, f"watching {self.subject}") or exc from exc
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
