"""The store's queries: request-reply endpoints of a NATS micro service (``ctxstore``).

Each request is decoded by its typed decoder, waits (bounded) until the store has applied
the stream up to the request's ``min_seq``, and is answered from the state. Whatever goes
wrong while serving one request becomes that request's error reply (bounded in size); it
never stops the actor. Replies too large for one message go in chunks to requesters that
ask for them (``accept_chunks``), else as a ``too_large`` error.

In a partitioned store each actor answers for its own partition's contexts, and gets every
other query to the partition it concerns (``actors.store.routing``). Its ``min_seq`` fence
is "seen", not "applied": sequences are the whole stream's, and the partition's consumer
never sees the others' writes, so a read waits until the actor has applied every write of
its partition up to ``min_seq``, as JetStream says (the first write of the partition after
what it applied, ``next_by_subj``).

Contexts are held as encoded JSON (``actors.core.held``): a reply is built from those bytes
without decoding them. Replies are cached per context version and view (a context held
compressed is decompressed once for many reads), within a byte budget so that large
contexts cannot double the store's memory.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from actors.core.fold import StoreState, summarize
from actors.core.held import HeldContext, comparison_reply, context_reply
from actors.runtime.actor import Actor
from actors.runtime.replies import fits, reply, reply_error
from actors.store.history_query import HistoryQuery
from actors.store.observer import QueryObserver
from actors.store.routing import Router, merge_lists, merge_stats
from broker import WRITES_STREAM, BusClient
from contracts import (
    ContextList,
    ContextNotFoundError,
    Decoders,
    ErrorCode,
    OutcomeReply,
    Query,
    RequestError,
    StoreTimeoutError,
    StoreUnavailableError,
    SubjectError,
    encode,
    partition_filter,
    query_filter,
    query_tenant,
)
from contracts.schema import WIRE_VERSION, endpoint_metadata, service_metadata

__all__ = ["CACHE_BYTES", "MAX_WAITING", "SERVICE_NAME", "Queries"]

log = logging.getLogger("ctxstore.queries")

SERVICE_NAME: Final = "ctxstore"
CACHE_BYTES: Final = 64 * 1024 * 1024  # encoded replies kept, all views together
MAX_WAITING: Final = 10_000  # reads waiting for a sequence at once; more are refused
_ABOUT_ONE: Final = frozenset({Query.GET, Query.COMPARE, Query.EXPORT, Query.HISTORY})
R = TypeVar("R", bound=msgspec.Struct)
_RELAY_MARGIN_S: Final = 2.0  # a partition may wait out the read wait, and then answer
Handler = Callable[[Request], Awaitable[None]]
_REQUESTS: Final[dict[Query, msgspec.json.Decoder[Any]]] = {
    Query.GET: Decoders.get,
    Query.LIST: Decoders.list,
    Query.COMPARE: Decoders.compare,
    Query.EXPORT: Decoders.export,
    Query.OUTCOME: Decoders.outcome_request,
    Query.HISTORY: Decoders.history,
    Query.STATS: Decoders.stats,
}


class Queries:
    """The query endpoints of one actor, reading ``state()`` (the actor swaps its state on a
    rebuild, so it is read at each request)."""

    def __init__(
        self,
        nc: BusClient,
        owner: Actor,
        state: Callable[[], StoreState],
        *,
        read_wait: float,
        observer: QueryObserver,
        partition: int | None = None,
        partitions: int = 1,
    ) -> None:
        """``partition``: of a partitioned store of ``partitions``, the one whose contexts
        ``state()`` holds (None: the store is not partitioned)."""
        self._nc = nc
        self._observer = observer
        self._owner = owner
        self._state = state
        self._read_wait = read_wait
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._cache: OrderedDict[tuple[str, str, Query], tuple[int, bytes]] = OrderedDict()
        self._cached_bytes = 0
        self._service: Service | None = None
        self._partition = partition
        self._router = (
            None
            if partition is None
            else Router(
                nc,
                partition=partition,
                partitions=partitions,
                patience=read_wait + _RELAY_MARGIN_S,
            )
        )
        self._passed = 0  # partitioned: every write of the partition up to here is applied

    async def start(self) -> None:
        self._service = await add_service(
            self._nc,
            name=SERVICE_NAME,
            version=WIRE_VERSION,
            description="SharedContextStore queries",
            metadata=service_metadata(),
        )
        for op, handler in self._endpoints().items():
            local = self._observed(op, handler)
            if self._partition is None:
                await self._service.add_endpoint(
                    name=op.value,
                    subject=query_filter(op),
                    handler=local,
                    metadata=endpoint_metadata(op),
                )
                continue
            k = self._partition
            await self._service.add_endpoint(
                name=op.value,
                subject=query_filter(op),
                handler=self._routed(op, local, store_wide=True),
                metadata=endpoint_metadata(op),
            )
            await self._service.add_endpoint(
                name=f"{op.value}-p{k}",
                subject=query_filter(op, k),
                handler=self._routed(op, local, store_wide=False),
                metadata=endpoint_metadata(op, k),
            )

    async def stop(self) -> None:
        for _, _, fut in self._waiters:
            fut.cancel()
        self._waiters.clear()
        if self._service is not None:
            try:
                await self._service.stop()
            except Exception as exc:
                log.warning("stopping the query service: %r", exc)

    # -- read-your-writes ------------------------------------------------------------------

    def seen(self) -> int:
        """Every write this actor applies, up to this sequence, is applied: its state's
        ``applied_seq``, or further in a partitioned store (JetStream said there was no write
        of the partition between)."""
        return max(self._state().applied_seq, self._passed)

    def forget_seen(self) -> None:
        """The stream was replaced: what was seen of the old one says nothing of the new."""
        self._passed = 0

    def wake(self) -> None:
        """Answer the reads waiting for a sequence the state has now reached."""
        applied = self._state().applied_seq
        while self._waiters and self._waiters[0][0] <= applied:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def reach(self, seq: int) -> None:
        """Until the actor has seen ``seq`` (``seen()``); ``StoreTimeoutError`` after the read
        wait."""
        if seq <= self.seen():
            return
        try:
            async with asyncio.timeout(self._read_wait):
                while seq > self.seen():
                    target = seq
                    if self._partition is not None:
                        own = await self._next_own(self._state().applied_seq + 1)
                        if own is None or own > seq:
                            self._passed = max(self._passed, seq if own is None else own - 1)
                            return
                        target = own
                    await self._applied(target)
        except TimeoutError:
            raise StoreTimeoutError(
                f"the store has applied up to seq {self.seen()}, not {seq}, after "
                f"{self._read_wait}s"
            ) from None

    async def _applied(self, seq: int) -> None:
        """Until the state has applied ``seq`` (bound it yourself)."""
        if seq <= self._state().applied_seq:
            return
        if len(self._waiters) >= MAX_WAITING:
            raise StoreTimeoutError(f"{MAX_WAITING} reads are waiting already; try again")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._tiebreak), fut))
        await fut

    async def _next_own(self, start: int) -> int | None:
        """The sequence of the partition's first write at or after ``start`` (None: none is
        stored yet), as the stream's leader has it: a write acknowledged to its writer is
        there, which a replica that lags might not say."""
        assert self._partition is not None
        js = self._nc.jetstream(timeout=self._read_wait)
        try:
            msg = await js.get_msg(
                WRITES_STREAM, start, subject=partition_filter(self._partition), next=True
            )
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise StoreTimeoutError(f"JetStream did not say where seq {start} is: {exc!r}") from exc
        return int(msg.seq or start)

    # -- endpoints -------------------------------------------------------------------------

    def _endpoints(self) -> dict[Query, Callable[[Request], Awaitable[None]]]:
        return {
            Query.GET: self._endpoint(Decoders.get, self._get),
            Query.LIST: self._endpoint(Decoders.list, self._list),
            Query.COMPARE: self._endpoint(Decoders.compare, self._compare),
            Query.EXPORT: self._endpoint(Decoders.export, self._export),
            Query.OUTCOME: self._endpoint(Decoders.outcome_request, self._outcome),
            Query.HISTORY: HistoryQuery(
                self._nc,
                max_write=self._state().limits.max_write,
                applied=self.seen,
                reach=self.reach,
                spawn=self._owner.spawn,
                read_timeout=self._read_wait,
                partitioned=self._partition is not None,
            ).handle,
            Query.STATS: self._endpoint(Decoders.stats, self._stats),
        }

    def _routed(self, op: Query, local: Handler, *, store_wide: bool) -> Handler:
        """A partitioned store's endpoint: ``local`` answers what this partition holds; the
        rest goes to the partition it concerns, or to all (``store_wide``: on the store's
        subject; else a partition's, where only another partition's context is passed on)."""
        router = self._router
        assert router is not None
        decoder = _REQUESTS[op]

        async def handle(req: Request) -> None:
            try:
                tenant = query_tenant(req.subject)
                body = decoder.decode(req.data or b"{}")
            except (msgspec.ValidationError, msgspec.DecodeError, SubjectError):
                await local(req)  # it says what is wrong with the request
                return
            if op in _ABOUT_ONE:
                eid = body.evolution_id
                here = (
                    router.owner(tenant, eid) == router.partition
                    if eid is not None
                    else not store_wide  # a partition's own newest context
                )
            elif op is Query.OUTCOME:
                here = not store_wide or self._state().outcome(body.seq) is not None
            else:
                here = not store_wide
            if here:
                await local(req)
                return
            try:
                self._owner.spawn(self._route(req, op, tenant, body, local), name="ctxstore-route")
            except RuntimeError:  # the actor is stopping
                await reply_error(req, ErrorCode.INTERNAL, "the store is stopping", status=503)

        return handle

    async def _route(self, req: Request, op: Query, tenant: str, body: Any, local: Handler) -> None:
        """Relay ``req`` to its partition, or gather it from all; any failure is its reply."""
        router = self._router
        assert router is not None
        try:
            match op:
                case Query.LIST | Query.STATS:
                    replies = await router.gather(tenant, op, body)
                    merged = merge_lists(replies) if op is Query.LIST else merge_stats(replies)
                    await reply(
                        req,
                        merged,
                        max_payload=self._nc.max_payload,
                        accept_chunks=body.accept_chunks,
                    )
                case Query.OUTCOME:
                    owner = None
                    if self._state().outcome(body.seq) is None:
                        owner = await router.owner_of_seq(body.seq)
                    if owner is None or owner == router.partition:
                        await local(req)
                    else:
                        await router.relay(req, tenant, op, owner)
                case _ if body.evolution_id is None:  # the newest context, wherever it is
                    eid = await router.newest(tenant, body.min_seq)
                    named = encode(msgspec.structs.replace(body, evolution_id=eid))
                    await router.relay(req, tenant, op, router.owner(tenant, eid), named)
                case _:
                    await router.relay(req, tenant, op, router.owner(tenant, body.evolution_id))
        except RequestError as exc:
            await reply_error(req, exc.code, exc.message)
        except StoreTimeoutError as exc:
            await reply_error(req, ErrorCode.TIMEOUT, str(exc))
        except StoreUnavailableError as exc:
            await reply_error(req, ErrorCode.INTERNAL, str(exc), status=503)
        except Exception as exc:
            log.exception("routing a query on %s failed", req.subject[:200])
            await reply_error(req, ErrorCode.INTERNAL, f"internal error: {exc!r}")

    def _observed(
        self, op: Query, handler: Callable[[Request], Awaitable[None]]
    ) -> Callable[[Request], Awaitable[None]]:
        received = self._observer.query_received

        async def handle(req: Request) -> None:
            received(op)
            await handler(req)

        return handle

    def _endpoint(
        self,
        decoder: msgspec.json.Decoder[R],
        answer: Callable[[str, Any], bytes],
    ) -> Callable[[Request], Awaitable[None]]:
        async def respond(req: Request, tenant: str, body: Any, wait_for: int) -> None:
            # Everything that can fail for this request is caught here: an error reply.
            try:
                await self.reach(wait_for)
                data = answer(tenant, body)
            except RequestError as exc:
                await reply_error(req, exc.code, exc.message)
            except StoreTimeoutError as exc:
                await reply_error(req, ErrorCode.TIMEOUT, str(exc))
            except Exception as exc:
                log.exception("query on %s failed", req.subject[:200])
                await reply_error(req, ErrorCode.INTERNAL, f"internal error: {exc!r}")
            else:
                await reply(
                    req,
                    data,
                    max_payload=self._nc.max_payload,
                    accept_chunks=getattr(body, "accept_chunks", False),
                )

        async def handle(req: Request) -> None:
            try:
                tenant = query_tenant(req.subject)
                body = decoder.decode(req.data or b"{}")
            except (msgspec.ValidationError, msgspec.DecodeError, SubjectError) as exc:
                await reply_error(req, ErrorCode.INVALID, f"invalid request: {exc}")
                return
            wait_for = max(getattr(body, "min_seq", 0), getattr(body, "seq", 0))
            if wait_for <= self.seen() or not self._owner.running:
                await respond(req, tenant, body, wait_for)
                return
            # Waiting for the writer's sequence must not hold up other requests.
            try:
                self._owner.spawn(respond(req, tenant, body, wait_for), name="ctxstore-query")
            except RuntimeError:  # the actor is stopping
                await reply_error(req, ErrorCode.INTERNAL, "the store is stopping", status=503)

        return handle

    def _context(self, tenant: str, evolution_id: str | None) -> HeldContext:
        ctx = self._state().held(tenant, evolution_id)
        if ctx is None:
            what = f"context {evolution_id}" if evolution_id else "context"
            raise ContextNotFoundError(f"no {what} in tenant {tenant}")
        return ctx

    def _encoded(
        self, ctx: HeldContext, view: Query, render: Callable[[HeldContext], bytes]
    ) -> bytes:
        key = (ctx.tenant, ctx.evolution_id, view)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == ctx.version:
            self._cache.move_to_end(key)
            return cached[1]
        data = render(ctx)
        if cached is not None:
            self._cached_bytes -= len(cached[1])
        self._cache[key] = (ctx.version, data)
        self._cache.move_to_end(key)
        self._cached_bytes += len(data)
        while self._cached_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, (_, old) = self._cache.popitem(last=False)
            self._cached_bytes -= len(old)
        return data

    def _get(self, tenant: str, body: Any) -> bytes:
        ctx = self._context(tenant, body.evolution_id)
        return self._encoded(ctx, Query.GET, context_reply)

    def _export(self, tenant: str, body: Any) -> bytes:
        data = self._get(tenant, body)
        if body.accept_chunks or fits(len(data), self._nc.max_payload):
            self._observer.context_exported()  # else the requester asks again, for chunks
        return data

    def _stats(self, tenant: str, body: Any) -> bytes:
        actor = self._service.id if self._service is not None else ""
        return encode(self._observer.figures(actor))

    def _list(self, tenant: str, body: Any) -> bytes:
        state = self._state()
        summaries = sorted(
            (summarize(c) for c in state.of_tenant(tenant)),
            key=lambda s: (s.created_at, s.version),
        )
        return encode(ContextList(contexts=summaries, applied_seq=self.seen()))

    def _compare(self, tenant: str, body: Any) -> bytes:
        ctx = self._context(tenant, body.evolution_id)
        return self._encoded(ctx, Query.COMPARE, comparison_reply)

    def _outcome(self, tenant: str, body: Any) -> bytes:
        outcome = self._state().outcome(body.seq)
        if outcome is None or outcome.tenant not in (tenant, ""):
            raise ContextNotFoundError(
                f"the outcome of seq {body.seq} is no longer known: the store remembers the "
                "outcomes of its latest writes only"
            )
        return encode(
            OutcomeReply(
                seq=outcome.seq,
                applied=outcome.applied,
                evolution_id=outcome.evolution_id,
                version=outcome.version,
                code=None if outcome.code is None else outcome.code.value,
                reason=outcome.reason,
            )
        )
