"""The ``history`` query: one page of a context's write history, read from the streams.

The actor answers its other queries from memory. This one reads the context's writes from
the write stream, and the capacity rejections the actor announced for it from the events
stream, and folds them as the client's ``history()`` does (``actors.core.timeline``), so both
give the same entries. It is I/O inside a request handler: each request runs in a task of
its own, at most ``_READERS`` at a time, so the actor's write intake and its other queries go
on meanwhile, and a failure is that request's error reply.

Bounded in memory and in reply size: the writes are pulled in small batches and folded as
they come (nothing is kept but the one context's state and the page), only up to the
sequence the actor has applied, and a page stops before the entry that would make the reply
larger than the server's max_payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.micro.request import Request

from actors.core.fold import StoredWrite
from actors.core.timeline import Recorded, Stepper, history_entry
from actors.runtime.actor import ActorStopped
from actors.runtime.replies import reply_error
from broker import EVENTS_STREAM, WRITES_STREAM, BusClient
from broker.delivery import js_position
from contracts import (
    HEADER_RECORDED_TIME,
    HEADER_WRITER,
    ContextNotFoundError,
    Decoders,
    ErrorCode,
    HistoryPage,
    HistoryRequest,
    PayloadTooLargeError,
    StoreTimeoutError,
    WriteRejected,
    encode,
    error_filter,
    published_subject,
    query_tenant,
    write_filter,
)
from contracts.framing import read_part
from contracts.history import HistoryEntry

__all__ = ["HistoryQuery"]

log = logging.getLogger("ctxstore.actor.history")

_READERS: Final = 4  # history reads at a time; more requests wait their turn
_BATCH: Final = 64  # writes per pull: a bound on what one read holds at once
_WIDEST_SEQ: Final = 2**64 - 1  # a stream sequence is a uint64


class HistoryQuery:
    """Serves ``ctxstore.query.<tenant>.history``.

    ``applied()`` is how far the actor has applied the write stream; ``reach(seq)`` waits
    until it has applied ``seq`` and raises an exception with an ``ErrorCode`` ``code`` and
    a ``message`` if it does not in time; ``spawn`` runs a coroutine as a task the actor
    owns (raising ``ActorStopped`` once it is stopping)."""

    def __init__(
        self,
        nc: BusClient,
        *,
        max_write: int,
        applied: Callable[[], int],
        reach: Callable[[int], Awaitable[None]],
        spawn: Callable[..., object],
        read_timeout: float,
        partitioned: bool = False,
    ) -> None:
        """``partitioned``: the write stream stores each write with its partition."""
        self._partitioned = partitioned
        self._nc = nc
        self._max_write = max_write  # the store's limit on a write, as the fold applies it
        self._applied = applied
        self._reach = reach
        self._spawn = spawn
        self._read_timeout = read_timeout
        self._readers = asyncio.Semaphore(_READERS)

    async def handle(self, req: Request) -> None:
        try:
            tenant = query_tenant(req.subject)
            body = Decoders.history.decode(req.data or b"{}")
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            await reply_error(req, ErrorCode.INVALID, f"invalid request: {exc}")
            return
        try:
            self._spawn(self._answer(req, tenant, body), name=f"query:{req.subject}")
        except ActorStopped:
            await reply_error(req, ErrorCode.INTERNAL, "the store is stopping", status=503)

    async def _answer(self, req: Request, tenant: str, body: HistoryRequest) -> None:
        try:
            await self._reach(body.min_seq)
            async with self._readers:
                data = await self.page(tenant, body)
        except Exception as exc:
            code, message = _coded(exc)
            if code is ErrorCode.INTERNAL:
                log.exception("history of %s/%s failed", tenant, body.evolution_id)
            await reply_error(req, code, message)
        else:
            await _send(req.respond(data))

    async def page(self, tenant: str, body: HistoryRequest) -> bytes:
        """The encoded ``HistoryPage`` for ``body``: its size never exceeds the server's
        max_payload."""
        eid = body.evolution_id
        up_to = self._applied()
        # The actor's rejection events go out on this connection: have the server take them
        # before the events stream is read.
        await self._nc.flush(timeout=math.ceil(self._read_timeout))
        js = self._nc.jetstream(timeout=self._read_timeout)
        capacity = await self._capacity_rejections(js, tenant, eid)
        budget = self._nc.max_payload
        empty = HistoryPage(evolution_id=eid, entries=[], next_seq=_WIDEST_SEQ, applied_seq=up_to)
        size = len(encode(empty))
        stepper = Stepper(tenant, eid, max_write=self._max_write)
        entries: list[HistoryEntry] = []
        next_seq: int | None = None
        seen = False
        async with contextlib.aclosing(
            self._read(js, WRITES_STREAM, write_filter(tenant, eid), up_to)
        ) as messages:
            async for msg in messages:
                seen = True
                rec = _recorded(msg, capacity, self._partitioned)
                step = stepper.step(rec)
                seq = rec.write.seq
                if seq < body.from_seq:
                    continue
                if len(entries) == body.limit:
                    next_seq = seq
                    break
                entry = history_entry(step)
                if entry is None:  # a chunk: its write's entry comes at its last chunk
                    continue
                cost = len(encode(entry)) + (1 if entries else 0)  # and a comma
                if size + cost > budget:
                    next_seq = seq
                    break
                entries.append(entry)
                size += cost
        if not seen:
            raise ContextNotFoundError(f"no context {eid} in tenant {tenant}")
        if not entries and next_seq is not None:
            # Else the next page would be this one. An entry holds at most about 9 KB (a
            # kind token of up to 4 KiB, in its kind and its reason; a 256-character
            # writer): only a server with a max_payload below that gets here.
            raise PayloadTooLargeError(
                f"the history entry at seq {next_seq} does not fit in a reply of "
                f"{budget} bytes (the server's max_payload)"
            )
        page = HistoryPage(evolution_id=eid, entries=entries, next_seq=next_seq, applied_seq=up_to)
        return encode(page)

    async def _capacity_rejections(
        self, js: JetStreamContext, tenant: str, eid: str
    ) -> dict[int, str]:
        """Writes of this context the actor refused because the store was full: a decision
        the fold cannot make from the context's own writes (see ``actors.core.timeline``)."""
        info = await js.stream_info(EVENTS_STREAM)
        found: dict[int, str] = {}
        async with contextlib.aclosing(
            self._read(js, EVENTS_STREAM, error_filter(tenant, eid), info.state.last_seq)
        ) as events:
            async for msg in events:
                try:
                    event = Decoders.event.decode(msg.data)
                except (msgspec.ValidationError, msgspec.DecodeError):
                    continue
                if isinstance(event, WriteRejected) and event.code == ErrorCode.CAPACITY:
                    found[event.seq] = event.reason
        return found

    async def _read(
        self, js: JetStreamContext, stream: str, subject_filter: str, up_to: int
    ) -> AsyncGenerator[Msg, None]:
        """The messages of ``stream`` under ``subject_filter`` up to sequence ``up_to``, in
        order, pulled ``_BATCH`` at a time by a consumer of this read's own."""
        consumer = await js.add_consumer(
            stream,
            ConsumerConfig(
                description="store actor: a history query",
                filter_subject=subject_filter,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                # Removed by the server if this read dies without deleting it.
                inactive_threshold=max(self._read_timeout * 2, 5.0),
                mem_storage=True,
            ),
        )
        try:
            if consumer.num_pending == 0:
                return
            sub = await js.pull_subscribe_bind(consumer=consumer.name, stream=stream)
            try:
                while True:
                    try:
                        batch = await sub.fetch(batch=_BATCH, timeout=self._read_timeout)
                    except nats.errors.TimeoutError:
                        raise StoreTimeoutError(
                            f"reading {subject_filter} from {stream} stalled"
                        ) from None
                    for msg in batch:
                        meta = msg.metadata
                        if meta.sequence.stream > up_to:
                            return
                        yield msg
                        if meta.sequence.stream >= up_to or meta.num_pending == 0:
                            return
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        finally:
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, consumer.name)


def _recorded(msg: Msg, capacity: dict[int, str], partitioned: bool) -> Recorded:
    # As actors.client.history reads a write, so that both histories are equal.
    seq, stamp, _ = js_position((msg.reply or "").encode())
    headers = msg.headers or {}
    write = StoredWrite.received(
        seq,
        stamp,
        published_subject(msg.subject, partitioned),
        msg.data,
        headers.get(HEADER_WRITER),
        headers.get(HEADER_RECORDED_TIME),
        read_part(headers.get),
    )
    reason = capacity.get(seq)
    return Recorded(write=write, stored_at=msg.metadata.timestamp, capacity_reason=reason)


def _coded(exc: Exception) -> tuple[ErrorCode, str]:
    """The error reply for what stopped a history read."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if isinstance(code, ErrorCode) and isinstance(message, str):
        return code, message
    if isinstance(exc, StoreTimeoutError | TimeoutError | nats.errors.TimeoutError):
        return ErrorCode.TIMEOUT, f"history read timed out: {exc}"
    return ErrorCode.INTERNAL, f"history read failed: {exc!r}"


async def _send(reply: Awaitable[None]) -> None:
    # A reply that cannot be sent (the connection is closing or reconnecting) is the
    # requester's timeout, never a failure of the actor.
    try:
        await reply
    except Exception as exc:
        log.warning("history reply not sent: %r", exc)
