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

``Watch`` yields applied writes; ``OutcomeWatch`` yields rejected ones too (``WriteRejected``,
on ``ctxstore.error...``), for readers of a context's whole audit trail such as the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, ClassVar, Final, Generic, Self, TypeVar, cast

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from broker import EVENTS_STREAM
from broker.lifecycle import AsyncResource
from broker.nats_errors import nats_errors, store_error
from contracts import Decoders, WriteApplied, WriteRejected, event_filter, outcome_filter
from contracts.errors import StoreTimeoutError, StoreUnavailableError

__all__ = ["OutcomeWatch", "Watch"]

log = logging.getLogger("ctxstore.watch")

_HEARTBEAT_S: Final = 0.5
_RESUME_WAIT_S: Final = 0.25
_RESUME_WAIT_MAX_S: Final = 5.0


E = TypeVar("E", bound=WriteApplied | WriteRejected)


class _EventWatch(AsyncResource, AsyncIterator[E], Generic[E]):
    """An async iterator of write outcomes. Close it with ``aclose()`` or ``async with``."""

    _FILTER: ClassVar[Callable[[str | None, str | None], str]]
    _YIELDS: ClassVar[tuple[type[WriteApplied | WriteRejected], ...]]

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
        self.subject = type(self)._FILTER(tenant, evolution_id)
        self.phases = None if phases is None else frozenset(str(p) for p in phases)
        self.from_start = from_start
        self._sub: Any = None
        self._opened = False
        self._last_stream_seq = 0
        self._last_write_seq = 0
        self._closed = False
        self._next: asyncio.Future[Any] | None = None

    async def open(self) -> Self:
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

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> E:
        if self._closed:
            raise StopAsyncIteration
        await self.open()
        while True:
            msg = await self._next_message()
            if msg is None:
                continue  # the connection was closed under it: resume on a new one
            event = self._event(msg)
            if event is not None:
                return event

    async def _next_message(self) -> Msg | None:
        """The next message of the consumer; None when it must be resumed first."""
        if self._sub is None:
            await self._resume()
            if self._closed:
                raise StopAsyncIteration
        self._next = asyncio.ensure_future(self._sub.next_msg(timeout=None))
        try:
            msg: Msg = await self._next
        except nats.errors.ConnectionClosedError:
            if self._closed:
                raise StopAsyncIteration from None
            self._sub = None
            return None
        except (asyncio.CancelledError, nats.errors.Error) as exc:
            if self._closed:  # aclose() while waiting
                raise StopAsyncIteration from None
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise store_error(exc, f"watching {self.subject}") or exc from exc
        finally:
            self._next = None
        return msg

    def _event(self, msg: Msg) -> E | None:
        """The event a message carries, if it is new and wanted."""
        stream_seq = msg.metadata.sequence.stream
        if stream_seq <= self._last_stream_seq:
            return None  # redelivered after a consumer reset
        self._last_stream_seq = stream_seq
        try:
            event = Decoders.event.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if not isinstance(event, self._YIELDS) or event.seq <= self._last_write_seq:
            return None  # the same write announced twice (an actor restart)
        self._last_write_seq = event.seq
        if self.phases is not None and event.kind not in self.phases:
            return None
        return cast(E, event)

    async def aclose(self) -> None:
        self._closed = True
        if self._next is not None:
            self._next.cancel()
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


class Watch(_EventWatch[WriteApplied]):
    """Applied writes (``WriteApplied``), in order."""

    _FILTER = staticmethod(event_filter)
    _YIELDS = (WriteApplied,)


class OutcomeWatch(_EventWatch[WriteApplied | WriteRejected]):
    """Every judged write, in stream order: ``WriteApplied`` or ``WriteRejected`` (with its
    code and reason)."""

    _FILTER = staticmethod(outcome_filter)
    _YIELDS = (WriteApplied, WriteRejected)
