"""The store actor: the single writer of all context state.

It rebuilds its state from the write stream, then applies new writes from its durable
consumer in stream order, publishes an event for each, and answers queries through a NATS
micro service (``$SRV.PING|INFO|STATS`` discovery works). Every task it runs belongs to the
task group of ``run()``; ``aclose()`` stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from actors.core.fold import (
    Applied,
    Limits,
    Outcome,
    Rejected,
    StoreState,
    compare,
    summarize,
)
from actors.runtime.actor import Actor
from actors.runtime.replies import respond_error
from actors.store.history_query import HistoryQuery
from actors.store.retention import TTL_WRITER, expire, expired, sweep_interval
from actors.store.snapshots import LoadResult, Snapshots
from actors.store.stored import delivered_write
from broker import (
    ACTOR_DURABLE,
    EVENTS_STREAM,
    WRITES_STREAM,
    BusClient,
    RawHandler,
    StoreConfig,
    provision,
)
from broker.delivery import ACK, NO_RESPONDERS, DeliveryError, Puller
from contracts import (
    PRUNED_KIND,
    ContextList,
    ContextPruned,
    Decoders,
    ErrorCode,
    EvolutionContext,
    OutcomeReply,
    Query,
    WriteApplied,
    WriteRejected,
    encode,
    error_subject,
    event_subject,
    event_subject_of,
    query_filter,
    query_tenant,
    write_filter,
)
from contracts.schema import WIRE_VERSION, endpoint_metadata, service_metadata

__all__ = ["StoreActor"]

log = logging.getLogger("ctxstore.actor")

ENCODED_CACHE_SIZE = 1024
_PULL_EXPIRES_S = 1.0
_PULL_BYTES = 8 << 20
_RESTORE_WAIT_S = 0.5
_FREEZE_EVERY = 10_000
_REPLAY_IDLE_S = 60.0  # the server removes a recovery consumer left behind by a crash
SERVICE_NAME = "ctxstore"
SERVICE_VERSION = WIRE_VERSION
R = TypeVar("R", bound=msgspec.Struct)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. Replay builds a large, acyclic state: each
    collection the allocations trigger walks all of it, which cost more than the fold itself
    (10,000 contexts: 26 us per write without collections, 58-72 us with them)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _freeze_survivors() -> None:
    """Collect, then move what survives out of the collector's sight (``gc.freeze()``).

    The state is a large acyclic structure that only grows by replacement: a full
    collection walks all of it, so with a fixed cadence of collections the collector's cost
    per write grows with the store. Frozen objects are still freed by reference counting
    when a write replaces them; only a cycle among them would outlive its last reference.
    Called every ``max(_FREEZE_EVERY, contexts)`` writes: the collection walks only what
    was made since the last freeze."""
    gc.collect()
    gc.freeze()


class _QueryError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StoreActor(Actor):
    """``async with StoreActor(nc, config) as actor:`` runs it until the block ends."""

    actor_name = "ctxstore-actor"

    def __init__(
        self,
        nc: BusClient,
        config: StoreConfig,
        *,
        fetch_batch: int = 512,
        read_wait: float = 5.0,
        owns_process: bool = False,
    ) -> None:
        """``owns_process``: nothing else of note lives in this process (``ctxstore serve``),
        so the actor may freeze what it holds out of the garbage collector's sight
        (``gc.freeze()``, which cannot tell the actor's objects from anyone else's)."""
        super().__init__()
        if not isinstance(nc, BusClient):
            raise TypeError("StoreActor needs a connection from broker.connect (a BusClient)")
        self._nc = nc
        self._config = config
        self._fetch_batch = fetch_batch
        self._read_wait = read_wait
        # Room for two of the largest writes per pull request, so every request progresses.
        self._pull_bytes = max(_PULL_BYTES, 2 * config.max_payload + 65_536)
        self.state = StoreState(Limits(config.max_payload, config.max_contexts))
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._replies: OrderedDict[tuple[str, str, Query], tuple[int, bytes]] = OrderedDict()
        self._service: Service | None = None
        self.recovered_writes = 0
        # Recovery announces the writes it replays past what was announced before (a crash
        # can leave applied writes unannounced): how many it announced.
        self.reannounced = 0
        self.snapshots: Snapshots | None = None
        self.snapshot_loaded: LoadResult | None = None  # what start-up made of the snapshots
        self._stream_created: datetime | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._frozen_at = 0  # applied_seq at the last _freeze_survivors()
        self._owns_process = owns_process

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        """Recover (before answering anything), then consume and serve."""
        js = self._nc.jetstream()
        await provision(js, self._config)
        snapshots = Snapshots(js, self._config)
        self.snapshots = snapshots if snapshots.enabled else None
        await self._recover()
        self._service = await add_service(
            self._nc,
            name=SERVICE_NAME,
            version=SERVICE_VERSION,
            description="SharedContextStore queries",
            metadata=service_metadata(),
        )
        for op, handler in self._endpoints().items():
            await self._service.add_endpoint(
                name=op.value,
                subject=query_filter(op),
                handler=handler,
                metadata=endpoint_metadata(op),
            )
        self.spawn(self._consume(), name="ctxstore-consume")
        if self._config.ttl_seconds is not None:
            self.spawn(self._expire_loop(), name="ctxstore-ttl")
        # The endpoints' subscriptions are live on the server only after a flush: ready
        # means a query sent now is answered.
        await self._nc.flush()
        log.info("store actor ready at seq %d", self.state.applied_seq)

    async def on_stop(self) -> None:
        for _, _, fut in self._waiters:
            fut.cancel()
        if self._service is not None:
            with contextlib.suppress(Exception):
                await self._service.stop()

    # -- the write path ----------------------------------------------------------------

    async def _recover(self) -> None:
        """Replay the stream up to its last sequence now, before answering anything."""
        js = self._nc.jetstream()
        info = await js.stream_info(WRITES_STREAM)
        last = info.state.last_seq
        self._stream_created = info.created
        if self.snapshots is not None and self.state.applied_seq == 0:
            loaded = await self.snapshots.load(self.state.limits, info.created, last)
            self.snapshot_loaded = loaded
            if loaded.state is not None:
                self.state = loaded.state
                log.info("loaded %s (seq %d)", loaded.name, self.state.applied_seq)
        if last <= self.state.applied_seq or info.state.messages == 0:
            return
        start = max(self.state.applied_seq + 1, info.state.first_seq)
        announced = await self._announced_up_to()
        # An ephemeral pull consumer read by a raw subscription: the same intake as live
        # writes, so replay costs what applying costs (an ordered push consumer through
        # nats-py's callbacks spent more per message on the client than on the fold).
        consumer = await js.add_consumer(
            WRITES_STREAM,
            ConsumerConfig(
                description="store actor recovery",
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                ack_policy=AckPolicy.NONE,
                filter_subject=write_filter(),
                inactive_threshold=_REPLAY_IDLE_S,
                mem_storage=True,
            ),
        )
        try:
            if consumer.num_pending:  # TTL or purges may have left nothing past ``start``
                with _collector_paused():
                    await self._replay(consumer.name, last, announced)
                    # Frozen without a collection first: with the collector paused the
                    # whole replayed state is young, and a collection would walk all of it
                    # (0.2 s for 10,000 contexts). Replay makes no cycles of its own.
                    if self._owns_process:
                        gc.freeze()
                self._frozen_at = self.state.applied_seq
        finally:
            with contextlib.suppress(Exception):
                await js.delete_consumer(WRITES_STREAM, consumer.name)
        log.info("recovered %d writes up to seq %d", self.recovered_writes, last)

    async def _announced_up_to(self) -> int:
        """A sequence up to which every write was announced: the durable consumer's ack
        floor (the actor acks after announcing), or the write of the last stored event."""
        js = self._nc.jetstream()
        floor = 0
        with contextlib.suppress(Exception):
            ci = await js.consumer_info(WRITES_STREAM, ACTOR_DURABLE)
            floor = ci.ack_floor.stream_seq or 0 if ci.ack_floor is not None else 0
        with contextlib.suppress(Exception):
            events = await js.stream_info(EVENTS_STREAM)
            if events.state.last_seq:
                raw = await js.get_msg(EVENTS_STREAM, events.state.last_seq)
                floor = max(floor, Decoders.event.decode(raw.data or b"").seq)
        return floor

    def _maybe_freeze(self) -> None:
        if not self._owns_process:
            return
        applied, contexts = self.state.applied_seq, len(self.state.contexts)
        if applied - self._frozen_at < max(_FREEZE_EVERY, contexts):
            return
        self._frozen_at = applied
        _freeze_survivors()

    def _maybe_snapshot(self) -> None:
        snapshots, created = self.snapshots, self._stream_created
        if snapshots is None or created is None or not self.running:
            return
        if self._snapshot_task is not None or not snapshots.due(
            self.state.applied_seq, len(self.state.contexts)
        ):
            return

        async def save() -> None:
            try:
                await snapshots.save(self.state, created)
            except Exception:
                log.exception("snapshot at seq %d failed", self.state.applied_seq)
            finally:
                self._snapshot_task = None

        self._snapshot_task = self.spawn(save(), name="ctxstore-snapshot")

    async def _expire_loop(self) -> None:
        ttl = self._config.ttl_seconds
        assert ttl is not None
        js = self._nc.jetstream()
        while True:
            await asyncio.sleep(sweep_interval(ttl))
            for ctx in expired(list(self.state.contexts.values()), ttl):
                try:
                    seq = await expire(js, ctx, ttl, self._reach)
                except Exception as exc:
                    log.warning("expiring %s failed: %r", ctx.evolution_id, exc)
                    continue
                if seq is not None:  # deleted and purged: say so
                    await self._announce_pruned(
                        ctx,
                        seq=seq,
                        time=datetime.now(UTC),
                        writer=TTL_WRITER,
                        reason=f"ttl: no write for more than {ttl:g}s",
                    )

    async def _replay(self, consumer: str, last: int, announced: int) -> None:
        """Apply every write the recovery consumer delivers, up to ``last``."""

        async def on_write(
            subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            write, pending = delivered_write(subject, reply, data, headers)
            outcome = self.state.apply(write)
            self.recovered_writes += 1
            if outcome is not None and write.seq > announced:
                await self._announce(outcome)
                self.reannounced += 1
            if write.seq >= last or pending == 0:
                puller.stop()

        async with self._puller(consumer, on_write) as puller:
            while not puller.stopped:
                async with asyncio.timeout(_PULL_EXPIRES_S + self._read_wait):
                    if await puller.pull() == NO_RESPONDERS:
                        raise DeliveryError("the recovery consumer is gone")

    def _puller(self, consumer: str, handle: RawHandler) -> Puller:
        return Puller(
            self._nc,
            WRITES_STREAM,
            consumer,
            handle,
            batch=self._fetch_batch,
            max_bytes=self._pull_bytes,
            expires=_PULL_EXPIRES_S,
        )

    async def _consume(self) -> None:
        """Pull writes in batches from the durable consumer onto a raw subscription.

        Each write is applied as it arrives, in stream order, inside the connection's read
        loop (``Puller``). The consumer acks "all up to", so one ack at the end of each
        burst covers it; a crash before it only brings the burst again, and applied
        sequences are skipped. A write the fold fails on (a bug: bad input becomes a
        rejection) stops the actor rather than being skipped: it is not acked, so a restart
        applies it."""
        nc = self._nc
        unacked: bytes | None = None  # the ack subject of the last write not yet acked

        async def burst_done() -> None:
            nonlocal unacked
            if unacked is not None:
                await nc.publish(unacked.decode(), ACK)
                unacked = None
            self._wake_readers()
            self._maybe_snapshot()
            self._maybe_freeze()

        async def on_write(
            subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            nonlocal unacked
            try:
                write, pending = delivered_write(subject, reply, data, headers)
            except DeliveryError:
                log.error("not a JetStream delivery on the actor's inbox: %r", subject)
                return
            try:
                outcome = self.state.apply(write)
                if outcome is not None:
                    await self._announce(outcome)
            except Exception:
                log.exception("applying seq %d failed: stopping", write.seq)
                raise
            unacked = reply
            if pending == 0:
                await burst_done()

        async with self._puller(ACTOR_DURABLE, on_write) as puller:
            while not self._stop.is_set():
                self._maybe_snapshot()  # the time cadence, when no write comes
                try:
                    # A request lost to a reconnect never ends: ask again after its expiry.
                    async with asyncio.timeout(_PULL_EXPIRES_S + 0.5):
                        code = await puller.pull()
                except (
                    TimeoutError,
                    nats.errors.ConnectionClosedError,
                    nats.errors.ConnectionReconnectingError,
                ) as exc:
                    if puller.stopped:
                        raise  # from a write that failed, not from a lost request
                    if not isinstance(exc, TimeoutError):
                        await asyncio.sleep(0.2)  # reconnecting: nothing to pull from yet
                    continue
                await burst_done()  # the batch came whole, or the request ended
                if code == NO_RESPONDERS:  # the consumer is gone (deleted, lost with a server)
                    await self._restore_consumer()

    async def _restore_consumer(self) -> None:
        """Provision the durable consumer again. It delivers the stream from its start: the
        writes already applied are skipped by sequence, before any decoding."""
        log.warning("the actor's consumer is gone: creating it again")
        await asyncio.sleep(_RESTORE_WAIT_S)  # not in a hot loop if JetStream is not ready
        try:
            await provision(self._nc.jetstream(), self._config)
        except Exception as exc:
            log.warning("provisioning failed (%r); retrying", exc)

    async def _announce(self, outcome: Outcome) -> None:
        # No Nats-Msg-Id: the actor announces each write once (recovery announces only past
        # the last stored event), and the header cost the actor and the server per event.
        write = outcome.write
        match outcome:
            case Applied(context=ctx, tenant=tenant, kind=kind):
                evolution_id = ctx.evolution_id if ctx else write.subject.split(".")[3]
                event: WriteApplied | WriteRejected = WriteApplied(
                    tenant=tenant,
                    evolution_id=evolution_id,
                    kind=kind.value,
                    seq=write.seq,
                    time=write.time,
                    writer=write.writer,
                    version=write.seq,
                    status=ctx.status if ctx else None,
                    current_phase=ctx.current_phase if ctx else None,
                    size=len(write.data),
                )
                subject = event_subject_of(write.subject)
                for gone in outcome.pruned:
                    await self._announce_pruned(
                        gone,
                        seq=write.seq,
                        time=write.time,
                        writer=write.writer,
                        reason=f"max_contexts: room for {evolution_id}",
                        created_by=evolution_id,
                    )
            case Rejected(tenant=tenant, evolution_id=evolution_id, kind=kind):
                event = WriteRejected(
                    tenant=tenant or "_",
                    evolution_id=evolution_id or "_",
                    kind=kind or "_",
                    seq=write.seq,
                    time=write.time,
                    writer=write.writer,
                    code=outcome.code.value,
                    reason=outcome.reason,
                )
                kind_token = kind if kind.isidentifier() else "invalid"
                subject = error_subject(event.tenant, event.evolution_id, kind_token)
                log.info("rejected seq %d: %s", write.seq, outcome.reason)
        await self._nc.publish(subject, encode(event))

    async def _announce_pruned(
        self,
        gone: EvolutionContext,
        *,
        seq: int,
        time: datetime,
        writer: str | None,
        reason: str,
        created_by: str | None = None,
    ) -> None:
        """A context left the store by pruning (max_contexts) or expiry (TTL)."""
        pruned = ContextPruned(
            tenant=gone.tenant,
            evolution_id=gone.evolution_id,
            kind=PRUNED_KIND,
            seq=seq,
            time=time,
            writer=writer,
            reason=reason,
            created_by=created_by,
            version=gone.version,
            status=gone.status,
            created_at=gone.created_at,
        )
        log.info("pruned %s/%s: %s", gone.tenant, gone.evolution_id, reason)
        await self._nc.publish(
            event_subject(gone.tenant, gone.evolution_id, PRUNED_KIND),
            encode(pruned),
        )

    # -- reads -------------------------------------------------------------------------

    def _wake_readers(self) -> None:
        applied = self.state.applied_seq
        while self._waiters and self._waiters[0][0] <= applied:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def _reach(self, seq: int) -> None:
        if seq <= self.state.applied_seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._tiebreak), fut))
        try:
            async with asyncio.timeout(self._read_wait):
                await fut
        except TimeoutError:
            raise _QueryError(
                ErrorCode.TIMEOUT,
                f"the store has applied up to seq {self.state.applied_seq}, "
                f"not {seq}, after {self._read_wait}s",
            ) from None

    def _endpoints(self) -> dict[Query, Callable[[Request], Awaitable[None]]]:
        return {
            Query.GET: self._endpoint(Decoders.get, self._get),
            Query.LIST: self._endpoint(Decoders.list, self._list),
            Query.COMPARE: self._endpoint(Decoders.compare, self._compare),
            Query.EXPORT: self._endpoint(Decoders.export, self._get),
            Query.OUTCOME: self._endpoint(Decoders.outcome_request, self._outcome),
            Query.HISTORY: HistoryQuery(
                self._nc,
                max_payload=self._config.max_payload,
                applied=lambda: self.state.applied_seq,
                reach=self._reach,
                spawn=self.spawn,
                read_timeout=self._read_wait,
            ).handle,
        }

    def _endpoint(
        self,
        decoder: msgspec.json.Decoder[R],
        answer: Callable[[str, R], bytes],
    ) -> Callable[[Request], Awaitable[None]]:
        async def respond(req: Request, tenant: str, body: R) -> None:
            try:
                await self._reach(getattr(body, "min_seq", 0))
                data = answer(tenant, body)
            except _QueryError as exc:
                await respond_error(req, exc.code, exc.message)
            except Exception as exc:
                log.exception("query on %s failed", req.subject)
                await respond_error(req, ErrorCode.INTERNAL, f"internal error: {exc!r}")
            else:
                await req.respond(data)

        async def handle(req: Request) -> None:
            try:
                tenant = query_tenant(req.subject)
                body = decoder.decode(req.data or b"{}")
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
                await respond_error(req, ErrorCode.INVALID, f"invalid request: {exc}")
                return
            if getattr(body, "min_seq", 0) <= self.state.applied_seq or not self.running:
                await respond(req, tenant, body)
            else:
                # Waiting for the writer's sequence must not hold up other requests.
                self.spawn(respond(req, tenant, body), name=f"query:{req.subject}")

        return handle

    def _context(self, tenant: str, evolution_id: str | None) -> EvolutionContext:
        ctx = self.state.get(tenant, evolution_id)
        if ctx is None:
            what = f"context {evolution_id}" if evolution_id else "any context"
            raise _QueryError(ErrorCode.NOT_FOUND, f"no {what} in tenant {tenant}")
        return ctx

    def _encoded(self, ctx: EvolutionContext, view: Query, render: Callable[[], Any]) -> bytes:
        # Each version is encoded once per view (the context, its comparison) however often
        # it is read; only the most recently read are kept, so the cache cannot double the
        # store's memory.
        key = (ctx.tenant, ctx.evolution_id, view)
        cached = self._replies.get(key)
        if cached is not None and cached[0] == ctx.version:
            self._replies.move_to_end(key)
            return cached[1]
        data = encode(render())
        self._replies[key] = (ctx.version, data)
        self._replies.move_to_end(key)
        if len(self._replies) > ENCODED_CACHE_SIZE:
            self._replies.popitem(last=False)
        return data

    def _get(self, tenant: str, body: Any) -> bytes:
        ctx = self._context(tenant, body.evolution_id)
        return self._encoded(ctx, Query.GET, lambda: ctx)

    def _list(self, tenant: str, body: Any) -> bytes:
        summaries = sorted(
            (summarize(c) for c in self.state.of_tenant(tenant)),
            key=lambda s: (s.created_at, s.version),
        )
        return encode(ContextList(contexts=summaries, applied_seq=self.state.applied_seq))

    def _compare(self, tenant: str, body: Any) -> bytes:
        ctx = self._context(tenant, body.evolution_id)
        return self._encoded(ctx, Query.COMPARE, lambda: compare(ctx))

    def _outcome(self, tenant: str, body: Any) -> bytes:
        rejected = self.state.rejection(body.seq)
        if rejected is not None:
            return encode(
                OutcomeReply(
                    seq=body.seq,
                    applied=False,
                    evolution_id=rejected.evolution_id,
                    version=rejected.context.version if rejected.context else 0,
                    code=rejected.code.value,
                    reason=rejected.reason,
                )
            )
        return encode(OutcomeReply(seq=body.seq, applied=True, evolution_id="", version=body.seq))
