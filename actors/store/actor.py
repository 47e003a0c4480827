"""The store actor: the single writer of all context state.

It rebuilds its state from the write stream (from a snapshot, then the writes after it),
answers queries (``actors.store.queries``), and then plays one of two roles:

- **leader** (it holds the lease, ``actors.store.lease``): consumes the durable consumer,
  applies each write in stream order, announces it (an event per write), acks it, takes
  snapshots and expires contexts (TTL). Exactly one actor per store leads.
- **standby**: follows the write stream with a consumer of its own and applies every write
  to its own state, so its state stays current and it answers reads (a read replica: a read
  fenced by ``min_seq`` is answered once it has applied that far, like the leader's). It
  announces and acks nothing. When the lease is free (the leader stopped or died) it takes
  it and leads from where its state is: it announces the writes it applied as a standby
  that nobody announced, and recreates the durable consumer from its next sequence.

In a partitioned store (``CONTEXT_STORE_PARTITIONS`` = P > 1) each actor plays these roles
for one partition (``partition``): it reads only that partition's writes (the stream stores
each with its partition), through a durable consumer, a lease and snapshots of the
partition's own, and answers for the partition's contexts (``actors.store.routing`` gets
other queries to their partition). Partitions lead, stand by and take over independently.

A write the fold cannot apply (a bug: bad input is a rejection, never an exception) stops
the actor rather than being skipped: it is not acked, so a restart applies it. Anything that
fails while serving one request is that request's error reply. Every task the actor runs
belongs to its task group; ``aclose()`` stops them all and hands the lease over.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec
import nats.errors
import nats.js
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from actors.core.chunks import to_drop
from actors.core.fold import Applied, Held, Limits, Outcome, Rejected, StoredWrite, StoreState
from actors.core.held import HeldContext
from actors.runtime.actor import Actor
from actors.runtime.cancel import cancel_until_done
from actors.store.lease import MARGIN as _LEASE_MARGIN_S
from actors.store.lease import Lease, lease_key
from actors.store.metrics import StoreMetrics
from actors.store.queries import Queries
from actors.store.retention import TTL_WRITER, expire, sweep_interval
from actors.store.snapshots import LoadResult, Snapshots
from actors.store.trim import trimmed_before
from broker import (
    EVENTS_STREAM,
    WRITES_STREAM,
    BusClient,
    StoreConfig,
    actor_consumer_config,
    actor_durable,
    provision,
    take_over_consumer,
)
from broker.delivery import ACK, NO_RESPONDERS
from broker.intake import (
    ConsumerGap,
    ConsumerPosition,
    Delivery,
    Handle,
    Intake,
    choose_intake,
    open_intake,
)
from broker.publish import publish
from contracts import (
    HEADER_MSG_ID,
    HEADER_WRITE_ABORT,
    HEADER_WRITE_ID,
    HEADER_WRITER,
    PRUNED_KIND,
    UNKNOWN_TOKEN,
    ConfigError,
    ContextPruned,
    ContextStoreError,
    Decoders,
    StoreUnavailableError,
    WriteApplied,
    WriteRejected,
    WriteSubject,
    encode,
    error_subject,
    event_subject,
    event_subject_of,
    names_one_context,
    partition_filter,
    published_subject,
    write_filter,
)

__all__ = ["Role", "StoreActor"]

log = logging.getLogger("ctxstore.actor")

Role = Literal["starting", "leader", "standby"]
# Plain functions: called for every write of a replay, where a coroutine each costs a lot.
_OnWrite = Callable[[StoredWrite, Intake], None]
_Burst = Callable[[], Awaitable[None]]
Announcement = tuple[str, bytes]  # subject, event

_PULL_EXPIRES_S: Final = 1.0
_PULL_BYTES: Final = 8 << 20
_REPLAY_BATCH: Final = 16_384  # writes asked for per pull request while recovering
_REPLAY_BYTES: Final = 32 << 20
_FREEZE_EVERY: Final = 10_000
_REPLAY_IDLE_S: Final = 60.0  # the server removes a consumer left behind by a crash
_LEASE_POLL_S: Final = 0.5
_JETSTREAM_PATIENCE_S: Final = 30.0
# JetStream requests on the way to (and in) a failover: a server that died leaves its raft
# groups leaderless for 4-9 s, and a request in one of them is not answered at all. Asked
# again after this, not after nats-py's 5 s, so the actor notices within a poll when the
# group answers again. (Every request retried on this path is idempotent.)
_FAILOVER_TIMEOUT_S: Final = 1.0
_FLOOR_EVERY_S: Final = 2.0  # a standby's look at what its leader announced
_REFUSALS: Final = 3  # JetStream refusing to make the actor's consumer, times running
# Events of writes applied but not announced (by recovery, or by a standby), kept to announce
# when this actor leads; a standby drops those its leader announced meanwhile.
_KEPT_UNANNOUNCED: Final = 100_000
CHUNKS_WRITER: Final = "ctxstore-actor"  # the writer of the aborts of unfinished writes


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
    when a write replaces them; only a cycle among them would outlive its last reference."""
    gc.collect()
    gc.freeze()


class LeadershipLost(Exception):
    """The lease ran out under a leader: it must stop acting on writes."""


class StreamReplaced(Exception):
    """The write stream was deleted and created again: the state must be rebuilt."""


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
        lease_ttl: float = 3.0,
        state: StoreState | None = None,
        metrics: StoreMetrics | None = None,
        partition: int = 0,
    ) -> None:
        """``owns_process``: nothing else of note lives in this process (``ctxstore serve``),
        so the actor may freeze what it holds out of the garbage collector's sight
        (``gc.freeze()``, which cannot tell the actor's objects from anyone else's).
        ``state``: the (empty) state to fold into; by default a ``StoreState``.
        ``metrics``: where it counts what it does; by default metrics of its own.
        ``partition``: which of ``config.partitions`` this actor serves (0 to P - 1)."""
        super().__init__()
        if not isinstance(nc, BusClient):
            raise TypeError("StoreActor needs a connection from broker.connect (a BusClient)")
        if not 0 <= partition < config.partitions:
            raise ConfigError(
                f"partition {partition} does not exist: the store has {config.partitions} "
                f"(CONTEXT_STORE_PARTITIONS), numbered from 0"
            )
        # None: the store is not partitioned (every name as it always was).
        self.partition: int | None = partition if config.partitions > 1 else None
        self._durable = actor_durable(self.partition)
        self._filter = write_filter() if self.partition is None else partition_filter(partition)
        self._nc = nc
        self._config = config
        self._fetch_batch = fetch_batch
        # Room for two of the largest writes per pull request, so every request progresses.
        self._pull_bytes = max(_PULL_BYTES, 2 * config.max_payload + 65_536)
        self.state = state or StoreState(Limits(config.max_write, config.partition_max_contexts))
        self.metrics = metrics or StoreMetrics()
        self.metrics.attach(lambda: self.state, partitioned=self.partition is not None)
        self.queries = Queries(
            nc,
            self,
            lambda: self.state,
            read_wait=read_wait,
            observer=self.metrics,
            partition=self.partition,
            partitions=config.partitions,
        )
        self.lease = Lease(
            # A renewal answered after the TTL's margin is of no use; a standby's look at the
            # key is asked again soon after an unanswered one (see _FAILOVER_TIMEOUT_S).
            nc.jetstream(timeout=max(lease_ttl / 3, lease_ttl - 2 * _LEASE_MARGIN_S)),
            reads=nc.jetstream(timeout=_FAILOVER_TIMEOUT_S),
            ttl=lease_ttl,
            memory=config.backend == "memory",
            replicas=config.replicas,
            key=lease_key(self.partition),
        )
        self.role: Role = "starting"
        self._role_changed = asyncio.Event()
        self.recovered_writes = 0
        # Writes announced because nobody had announced them: after a crash, by recovery;
        # after a takeover, those the new leader applied as a standby.
        self.reannounced = 0
        self.snapshots: Snapshots | None = None
        self.snapshot_loaded: LoadResult | None = None  # what start-up made of the snapshots
        self._stream_created: datetime | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._frozen_at = 0  # applied_seq at the last _freeze_survivors()
        self._owns_process = owns_process
        self._intake_kind: Literal["raw", "public"] = "raw"
        self._announced = 0  # every write up to this one was announced
        self._unannounced: deque[tuple[int, list[Announcement]]] = deque(maxlen=_KEPT_UNANNOUNCED)
        self.takeovers = 0
        self.dropped_writes = 0  # unfinished chunked writes this actor dropped (aborts sent)
        self._chunk_sweep: asyncio.Task[None] | None = None
        # Unfinished writes may hold this much before the oldest are dropped.
        self.chunk_budget = 2 * config.max_write
        self._position = ConsumerPosition()  # on the durable consumer this actor made
        self._asked_from: int | None = None  # a consumer asked for, its making unconfirmed

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        """Recover (before answering anything), serve reads, then lead or stand by."""
        self._intake_kind = await choose_intake(self._nc)
        js = self._nc.jetstream()
        await self._until_jetstream_answers()
        await provision(js, self._config)
        snapshots = Snapshots(
            js, self._config, nc=self._nc, intake=self._intake_kind, partition=self.partition
        )
        self.snapshots = snapshots if snapshots.enabled else None
        await self._recover_observed()
        await self.queries.start()
        self.spawn(
            self.metrics.follow_stream(
                js, durable=None if self.partition is None else self._durable
            ),
            name="ctxstore-metrics-stream",
        )
        # Settle the role before ready: a lone actor is leading (and has announced what
        # recovery found unannounced) by the time it says it serves.
        leading = await self._try_to_lead(starting=True)
        self.spawn(self._play_roles(leading), name="ctxstore-roles")
        # The endpoints' subscriptions are live on the server only after a flush: ready
        # means a query sent now is answered.
        await self._nc.flush()
        log.info("store actor ready at seq %d", self.state.applied_seq)

    async def _until_jetstream_answers(self) -> None:
        """Until JetStream answers: a server just (re)started recovers its streams first,
        and its API times out meanwhile. Bounded: a JetStream that never comes is an error."""
        js = self._nc.jetstream(timeout=2.0)
        deadline = asyncio.get_running_loop().time() + _JETSTREAM_PATIENCE_S
        while True:
            try:
                await js.account_info()
                return
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError) as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise StoreUnavailableError(
                        f"JetStream did not answer within {_JETSTREAM_PATIENCE_S:g}s: {exc!r}"
                    ) from exc
                await asyncio.sleep(0.25)

    async def on_stop(self) -> None:
        await self.queries.stop()
        await self.lease.release()

    async def wait_role(self, role: Role) -> None:
        """Until this actor plays ``role`` (bound it yourself)."""
        while self.role != role:
            self._role_changed.clear()
            await self._role_changed.wait()

    def _set_role(self, role: Role) -> None:
        if role != self.role:
            log.info("store actor is now %s at seq %d", role, self.state.applied_seq)
        self.role = role
        self.metrics.role_changed(role)
        self._role_changed.set()

    async def _play_roles(self, leading: bool) -> None:
        while True:
            if leading:
                await self._lead()
            else:
                self._set_role("standby")
                await self._stand_by()
            leading = await self._try_to_lead()

    async def _try_to_lead(self, *, starting: bool = False) -> bool:
        """Take the lease (and the lead) if it is free. Taking the lead fails while JetStream
        elects leaders after a server died: the lease is kept (renewed) meanwhile and the
        lead taken again, until it succeeds or the lease is lost. JetStream refusing it
        (an answer, not silence) a few times running is another matter: at start that is
        raised; later this actor stands by and asks again."""
        if not await self.lease.acquire():
            return False
        lost = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                keeper = group.create_task(self.lease.keep(lost), name="ctxstore-lease-taking")
                try:
                    leading = await self._take_lead_until(lost, raise_refusal=starting)
                finally:
                    await cancel_until_done([keeper])
        except BaseException:
            await self.lease.release()
            raise
        if not leading:
            await self.lease.release()
        return leading

    async def _take_lead_until(self, lost: asyncio.Event, *, raise_refusal: bool) -> bool:
        refusals = 0
        while not lost.is_set():
            try:
                await self._take_lead()
                return True
            except nats.js.errors.ServiceUnavailableError as exc:  # no JetStream leader yet
                log.warning("taking the lead failed (%s): trying again", exc)
            except nats.js.errors.APIError as exc:
                refusals += 1
                if refusals >= _REFUSALS:
                    if raise_refusal:
                        raise
                    log.warning("taking the lead refused (%s): standing by", exc)
                    return False
                log.warning("taking the lead refused (%s): trying again", exc)
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                log.warning("taking the lead failed (%r): trying again", exc)
            await asyncio.sleep(_FAILOVER_TIMEOUT_S / 4)
        log.warning("the lease was lost while taking the lead: standing by")
        return False

    # -- recovery ----------------------------------------------------------------------

    async def _recover_observed(self) -> None:
        began, writes = time.perf_counter(), self.recovered_writes
        await self._recover()
        self.metrics.replay_done(self.recovered_writes - writes, time.perf_counter() - began)

    async def _recover(self) -> None:
        """Load the newest snapshot and replay the stream after it up to its last sequence
        now, before answering anything."""
        # The collector paused throughout: a snapshot's contexts and a replayed state are
        # large and acyclic, and each collection their allocations trigger walks all of it
        # (decoding a snapshot of 100,000 real contexts: 0.56 s paused, 0.75 s not).
        with _collector_paused():
            replayed = await self._load_and_replay()
            # Frozen without a collection first: with the collector paused the whole
            # replayed state is young, and a collection would walk all of it (0.2 s for
            # 10,000 contexts). Replay makes no cycles of its own.
            if replayed and self._owns_process:
                gc.freeze()
        if replayed:
            self._frozen_at = self.state.applied_seq

    async def _load_and_replay(self) -> bool:
        """Whether writes were replayed."""
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
        cut = trimmed_before(info.config)
        if cut > self.state.applied_seq + 1:  # the writes before it are gone: never guess
            raise StoreUnavailableError(
                f"the write stream was trimmed before seq {cut} and no snapshot covering it "
                f"loaded (state at seq {self.state.applied_seq}); restore a snapshot"
            )
        if last <= self.state.applied_seq or info.state.messages == 0:
            return False
        self._announced = await self._announced_up_to(strict=False)

        def on_write(write: StoredWrite, stop: Intake) -> None:
            self._apply_unannounced(write)
            self.recovered_writes += 1
            if write.seq >= last:
                stop.stop()

        await self._read_stream(self.state.applied_seq + 1, on_write, until=last)
        log.info("recovered %d writes up to seq %d", self.recovered_writes, last)
        return True

    def _apply_unannounced(self, write: StoredWrite) -> Outcome | None:
        """Apply a write nobody may have announced yet (recovery, standby): keep its events
        for when this actor leads."""
        outcome = self.state.apply(write)
        if outcome is not None and write.seq > self._announced:
            self._unannounced.append((write.seq, self._events(outcome)))
        return outcome

    async def _announce_kept(self) -> None:
        """Announce what was applied without being announced, past the stored events."""
        self._announced = await self._announced_up_to()
        if self.partition is not None:
            self._announced = max(self._announced, await self._announced_in_events())
        kept = [a for seq, events in self._unannounced if seq > self._announced for a in events]
        self._unannounced.clear()
        for subject, event in kept:
            await self._nc.publish(subject, event)
        self.reannounced += len(kept)

    async def _announced_up_to(self, *, strict: bool = True) -> int:
        """A sequence up to which every write was announced: the durable consumer's ack
        floor (the leader acks after announcing), or the write of the last stored event.
        ``strict``: a request that fails (JetStream electing a leader) raises, rather than
        count as "nothing announced" (which would announce again what was announced)."""
        js = self._nc.jetstream(timeout=_FAILOVER_TIMEOUT_S)
        floor = 0
        unanswered: list[Exception] = []
        try:
            ci = await js.consumer_info(WRITES_STREAM, self._durable)
            floor = ci.ack_floor.stream_seq or 0 if ci.ack_floor is not None else 0
        except nats.js.errors.NotFoundError:
            pass
        except (nats.errors.Error, TimeoutError) as exc:  # e.g. a consumer electing a leader
            unanswered.append(exc)
        if self.partition is not None:
            # The events stream is every partition's: its last event may be another's, past
            # writes of this one nobody announced. (Taking the lead looks further:
            # ``_announced_in_events``.)
            if strict and unanswered:
                raise unanswered[0]
            return floor
        try:
            events = await js.stream_info(EVENTS_STREAM)
            if events.state.last_seq:
                raw = await js.get_msg(EVENTS_STREAM, events.state.last_seq)
                floor = max(floor, Decoders.event.decode(raw.data or b"").seq)
        except (nats.js.errors.NotFoundError, msgspec.DecodeError):
            pass  # no event, or not one of ours: the ack floor says it
        except (nats.errors.Error, TimeoutError) as exc:
            unanswered.append(exc)
        # Either one is a floor: the leader acks after announcing, and the last stored event
        # was announced. With neither, "nothing" would announce again what was announced.
        if strict and len(unanswered) == 2:
            raise unanswered[0]
        return floor

    async def _announced_in_events(self) -> int:
        """A partition's: the last kept write whose event is stored (0: none). A leader
        announces its partition's writes in order, so those announced are a prefix of the
        kept ones: a binary search, asking for the last stored event on each probe's subject
        (one whose write is this context's, or later, says the probe was announced)."""
        probes = [
            (seq, events[0][0])
            for seq, events in self._unannounced
            if seq > self._announced and events and names_one_context(events[0][0])
        ]
        js = self._nc.jetstream(timeout=_FAILOVER_TIMEOUT_S * 2)
        low, high = 0, len(probes)  # probes[:low] announced, probes[high:] not
        while low < high:
            middle = (low + high) // 2
            seq, subject = probes[middle]
            try:
                last = await js.get_last_msg(EVENTS_STREAM, subject)
                announced = Decoders.event.decode(last.data or b"").seq >= seq
            except (nats.js.errors.NotFoundError, msgspec.DecodeError, msgspec.ValidationError):
                announced = False
            if announced:
                low = middle + 1
            else:
                high = middle
        return probes[low - 1][0] if low else 0

    async def _read_stream(
        self,
        start: int,
        on_write: _OnWrite,
        *,
        until: int | None,
    ) -> None:
        """Apply the stream from ``start`` with an ephemeral consumer of this actor's own,
        until ``on_write`` stops it (``until``: the replay's end; None: follow for ever).
        ``StreamReplaced`` if the stream was recreated under it."""
        # A standby asks again soon, rather than wait out nats-py's 5 s in a failover.
        js = self._nc.jetstream() if until is not None else self._nc.jetstream(timeout=2.0)
        consumer = await js.add_consumer(
            WRITES_STREAM,
            ConsumerConfig(
                description="store actor: recovery and standby",
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                ack_policy=AckPolicy.NONE,
                filter_subject=self._filter,
                inactive_threshold=_REPLAY_IDLE_S,
                mem_storage=True,
            ),
        )
        if until is not None and not consumer.num_pending:
            with contextlib.suppress(Exception):
                await js.delete_consumer(WRITES_STREAM, consumer.name)
            return
        try:
            intake: Intake

            def handle(delivery: Delivery) -> None:
                on_write(self.stored(delivery), intake)
                if until is not None and delivery.pending == 0:
                    intake.stop()

            # A replay asks for larger batches: each pull request left the actor idle for
            # 2-3 ms here (the server gathering the batch), and it has nothing to answer
            # meanwhile.
            intake = (
                self._intake(consumer.name, handle)
                if until is None
                else self._intake(
                    consumer.name,
                    handle,
                    batch=max(self._fetch_batch, _REPLAY_BATCH),
                    max_bytes=max(self._pull_bytes, _REPLAY_BYTES),
                )
            )
            unanswered = 0
            async with intake:
                while not intake.stopped:
                    try:
                        async with asyncio.timeout(_PULL_EXPIRES_S + 2.0):
                            code = await intake.pull()
                    except (
                        TimeoutError,
                        nats.errors.ConnectionClosedError,
                        nats.errors.ConnectionReconnectingError,
                    ) as exc:
                        if until is not None:
                            raise
                        # Not even a 408: the consumer was lost with its server (an
                        # ephemeral one has one copy), or is cut off from it. Read on with a
                        # new one: a standby that stops following silently is no standby.
                        if isinstance(exc, TimeoutError):
                            unanswered += 1
                            if unanswered >= 2 or await self._gone(consumer.name):
                                raise RuntimeError("the actor's own consumer is gone") from None
                        continue
                    unanswered = 0
                    self.queries.wake()
                    if code == NO_RESPONDERS:
                        await self._check_stream()
                        raise RuntimeError("the actor's own consumer is gone")
        finally:
            # Not waited on for long: left behind, it goes after _REPLAY_IDLE_S by itself.
            with contextlib.suppress(Exception):
                await self._nc.jetstream(timeout=_FAILOVER_TIMEOUT_S).delete_consumer(
                    WRITES_STREAM, consumer.name
                )

    def _intake(
        self,
        consumer: str,
        handle: Handle,
        position: ConsumerPosition | None = None,
        *,
        batch: int | None = None,
        max_bytes: int | None = None,
    ) -> Intake:
        return open_intake(
            self._nc,
            self._intake_kind,
            WRITES_STREAM,
            consumer,
            handle,
            batch=batch or self._fetch_batch,
            max_bytes=max_bytes or self._pull_bytes,
            expires=_PULL_EXPIRES_S,
            position=position,
        )

    async def _gone(self, consumer: str) -> bool:
        """Whether JetStream says ``consumer`` does not exist (False when it cannot say)."""
        js = self._nc.jetstream(timeout=_FAILOVER_TIMEOUT_S)
        try:
            await js.consumer_info(WRITES_STREAM, consumer)
        except nats.js.errors.NotFoundError:
            return True
        except (nats.errors.Error, TimeoutError):
            pass
        return False

    async def _check_stream(self) -> None:
        """``StreamReplaced`` if the write stream is not the one the state was built from."""
        js = self._nc.jetstream(timeout=_FAILOVER_TIMEOUT_S * 2)
        await provision(js, self._config)  # a deleted stream is created again
        info = await js.stream_info(WRITES_STREAM)
        if info.created != self._stream_created or info.state.last_seq < self.state.applied_seq:
            raise StreamReplaced(
                f"the write stream was created again ({info.created}); the state (seq "
                f"{self.state.applied_seq}) was built from the one created {self._stream_created}"
            )

    async def _rebuild(self) -> None:
        """Start over from the new stream: what the old one held is gone with it."""
        log.warning("the write stream was replaced: rebuilding the state from the new one")
        self.state = StoreState(self.state.limits)
        self.queries.forget_seen()
        self._unannounced.clear()
        self._announced = 0
        js = self._nc.jetstream()
        # Events of the old stream name sequences of the old stream: they would hide the new
        # stream's writes from the announcement floor.
        with contextlib.suppress(Exception):
            await js.purge_stream(EVENTS_STREAM)
        await self._recover_observed()
        self.queries.wake()

    # -- standby -----------------------------------------------------------------------

    async def _stand_by(self) -> None:
        """Follow the stream until the lease is free, then return (to take it)."""

        def on_write(write: StoredWrite, intake: Intake) -> None:
            outcome = self._apply_unannounced(write)
            if outcome is not None:
                self.metrics.write_applied(outcome)

        async def follow() -> None:
            while True:
                try:
                    await self._read_stream(self.state.applied_seq + 1, on_write, until=None)
                except StreamReplaced:
                    await self._rebuild()
                except (RuntimeError, nats.errors.Error, TimeoutError) as exc:
                    log.warning("standby: following the stream failed (%r); again", exc)
                    await asyncio.sleep(_LEASE_POLL_S)

        async with asyncio.TaskGroup() as group:
            follower = group.create_task(follow(), name="ctxstore-standby-follow")
            await self._until_lease_free()
            # A follower that went on (its cancellation swallowed) would keep this actor a
            # standby for ever, applying writes that nobody announces.
            await cancel_until_done([follower])

    async def _until_lease_free(self) -> None:
        """Poll the lease until nobody holds it; meanwhile forget what the leader announced."""
        floor_read = time.monotonic()
        while True:
            await asyncio.sleep(_LEASE_POLL_S)
            try:
                if await self.lease.holder() is None:
                    return
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("standby: reading the lease failed: %r", exc)
                continue
            # What the leader announced, now and then: the lease is what this loop is for,
            # and a request that hangs in a failover must not delay looking at it.
            if time.monotonic() - floor_read >= _FLOOR_EVERY_S:
                floor_read = time.monotonic()
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    self._forget_announced(await self._announced_up_to())

    def _forget_announced(self, floor: int) -> None:
        self._announced = max(self._announced, floor)
        while self._unannounced and self._unannounced[0][0] <= self._announced:
            self._unannounced.popleft()

    # -- leader ------------------------------------------------------------------------

    async def _take_lead(self) -> None:
        """Just took the lease: announce what nobody announced, and take the consumer."""
        await self._announce_kept()
        await self._make_consumer()
        self.takeovers += 1
        self._set_role("leader")

    async def _make_consumer(self) -> None:
        """(Re)create the durable consumer from the next write to apply; its deliveries are
        counted from 1 again."""
        js = self._nc.jetstream(timeout=_FAILOVER_TIMEOUT_S * 2)
        start = self.state.applied_seq + 1
        if self._asked_from == start:
            # Asked for this very consumer before and got no answer: JetStream may be making
            # it (electing its leader). Asked again as it is, which is answered once it
            # exists; deleting it would start its election over.
            try:
                await js.add_consumer(WRITES_STREAM, actor_consumer_config(start, self.partition))
            except nats.js.errors.APIError:  # refused, not unanswered: made anew next time
                self._asked_from = None
                raise
        else:
            self._asked_from = start
            await take_over_consumer(js, start, self.partition)
        self._asked_from = None
        self._position = ConsumerPosition()

    async def _lead(self) -> None:
        """Apply, announce and ack writes until the lease is lost (then return)."""
        lost = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.lease.keep(lost), name="ctxstore-lease"),
                    group.create_task(self._chunks_loop(), name="ctxstore-chunks"),
                    group.create_task(self._consume(), name="ctxstore-consume"),
                ]
                if self._config.ttl_seconds is not None:
                    tasks.append(group.create_task(self._expire_loop(), name="ctxstore-ttl"))
                await lost.wait()
                await cancel_until_done(tasks)  # the group's one cancellation may be swallowed
                raise LeadershipLost()
        except* LeadershipLost:
            log.warning("leadership lost at seq %d: standing by", self.state.applied_seq)

    async def _consume(self) -> None:
        """Pull writes in batches from the durable consumer and apply each in stream order.

        The consumer acks "all up to", so one ack at the end of each burst covers it; a crash
        before it only brings the burst again, and applied sequences are skipped. Each
        write is checked against the lease first: a leader whose lease ran out stops before
        acting on anything."""
        burst = _LeaderBurst(self)
        while True:
            try:
                async with self._intake(self._durable, burst.on_write, self._position) as intake:
                    await self._pull_until_gone(intake, burst.done)
            except StreamReplaced:
                await self._rebuild()
                await self._make_consumer()
            except ConsumerGap as gap:  # delivered elsewhere: read on from our own position
                log.warning(
                    "%s: taking the consumer again from seq %d", gap, self.state.applied_seq + 1
                )
                await self._restore_consumer(gap=True)

    def stored(self, delivery: Delivery) -> StoredWrite:
        """The write a delivery holds, on the subject it was published on (a partitioned
        stream stores it with its partition: the fold, the events and the aborts of
        unfinished writes go by the published subject)."""
        subject = delivery.subject
        return StoredWrite.received(
            delivery.seq,
            delivery.stamp_ns,
            subject if self.partition is None else published_subject(subject, True),
            delivery.data,
            delivery.writer,
            delivery.recorded,
            delivery.part,
        )

    @property
    def announced(self) -> int:
        """Every write up to this sequence was announced."""
        return self._announced

    async def announce(self, outcome: Outcome) -> None:
        await self._announce(outcome)

    async def ack(self, subject: str) -> None:
        """Ack a delivery of the durable consumer, and every one before it."""
        await self._nc.publish(subject, ACK)

    def after_burst(self) -> None:
        """What a leader does once a burst of writes is applied and acked."""
        self.queries.wake()
        self._maybe_snapshot()
        self._maybe_freeze()
        if self.state.chunks.bytes > self.chunk_budget:
            self._sweep_chunks()

    async def _pull_until_gone(self, intake: Intake, burst_done: _Burst) -> None:
        while True:
            self._maybe_snapshot()  # the time cadence, when no write comes
            try:
                # A request lost to a reconnect never ends: ask again after its expiry.
                async with asyncio.timeout(_PULL_EXPIRES_S + 0.5):
                    code = await intake.pull()
            except (
                TimeoutError,
                nats.errors.ConnectionClosedError,
                nats.errors.ConnectionReconnectingError,
            ) as exc:
                if intake.stopped:
                    # A write failed or the lease ran out while the request timed out:
                    # what stopped the intake decides (standing by, or stopping).
                    intake.raise_failure()
                    raise
                if not isinstance(exc, TimeoutError):
                    await asyncio.sleep(0.2)  # reconnecting: nothing to pull from yet
                continue
            await burst_done()  # the batch came whole, or the request ended
            if code == NO_RESPONDERS:  # the consumer is gone, or electing a leader
                await self._restore_consumer(gap=False)
                return

    async def _restore_consumer(self, *, gap: bool) -> None:
        """After deliveries were lost (``gap``): create the durable consumer again, from the
        next sequence to apply. After a pull nobody answered: the same if the consumer is
        gone (deleted, lost with its server); if it still exists (a replicated consumer
        electing a leader after a server died), pull from it again: deleting it then would
        only wait on the election twice. ``StreamReplaced`` when the stream is a new one.
        A failure is logged and left to the next pull (a gap shows again until mended)."""
        try:
            await self._check_stream()
            if not gap and not await self._gone(self._durable):
                log.info("the actor's consumer did not answer (electing a leader?): pulling again")
                await asyncio.sleep(_LEASE_POLL_S)
                return
            next_seq = self.state.applied_seq + 1
            log.warning("creating the actor's consumer again from seq %d", next_seq)
            await self._make_consumer()
        except StreamReplaced:
            raise
        except Exception as exc:
            log.warning("restoring the consumer failed (%r); retrying", exc)
            await asyncio.sleep(_LEASE_POLL_S)  # not in a hot loop while JetStream is not ready

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
        state = self.state

        async def save() -> None:
            began = time.perf_counter()
            try:
                await snapshots.save(state, created)
            except Exception:
                log.exception("snapshot at seq %d failed", state.applied_seq)
                self.metrics.snapshot_failed()
            else:
                self.metrics.snapshot_saved(time.perf_counter() - began)
            finally:
                self._snapshot_task = None

        self._snapshot_task = self.spawn(save(), name="ctxstore-snapshot")

    async def _chunks_loop(self) -> None:
        """Drop the chunked writes whose writer stopped sending (see ``_sweep_chunks``)."""
        every = min(max(self._config.chunk_timeout / 4, 0.05), 10.0)
        while True:
            await asyncio.sleep(every)
            if self.state.chunks.open:
                self._sweep_chunks()

    def _sweep_chunks(self) -> None:
        """Send an abort for each unfinished write that had no chunk for ``chunk_timeout``,
        and for the oldest while they hold more than ``chunk_budget`` bytes. The abort is a
        message in the log (the fold drops the write when it meets it), so a replay, a
        standby and the context's history all drop it at the same point."""
        if self._chunk_sweep is not None or not self.running:
            return
        drops = to_drop(
            self.state.chunks.oldest(),
            now=datetime.now(UTC).timestamp(),
            idle=self._config.chunk_timeout,
            budget=self.chunk_budget,
        )
        if not drops:
            return

        async def send() -> None:
            js = self._nc.jetstream()

            async def jetstream() -> nats.js.JetStreamContext:
                return js

            try:
                for w, reason in drops:
                    headers = {
                        # Swept twice before it applied: stored once.
                        HEADER_MSG_ID: f"abort-{w.first_seq}-{w.write_id}",
                        HEADER_WRITE_ID: w.write_id,
                        HEADER_WRITE_ABORT: reason,
                        HEADER_WRITER: CHUNKS_WRITER,
                    }
                    await publish(jetstream, w.subject, b"", headers, what=reason)
                    self.dropped_writes += 1
                    log.info("%s (%s)", reason, w.subject)
            except ContextStoreError as exc:
                log.warning("dropping an unfinished write failed: %r", exc)
            finally:
                self._chunk_sweep = None

        self._chunk_sweep = self.spawn(send(), name="ctxstore-chunk-sweep")

    async def _expire_loop(self) -> None:
        ttl = self._config.ttl_seconds
        assert ttl is not None
        js = self._nc.jetstream()
        while True:
            await asyncio.sleep(sweep_interval(ttl))
            for ctx in self.state.idle(ttl, datetime.now(UTC)):
                try:
                    seq = await expire(js, ctx, ttl, self.queries.reach)
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

    # -- events ------------------------------------------------------------------------

    async def _announce(self, outcome: Outcome) -> None:
        for subject, event in self._events(outcome):
            await self._nc.publish(subject, event)

    def _events(self, outcome: Outcome) -> list[Announcement]:
        """The events that announce an outcome: the write's, and one per pruned context.
        No Nats-Msg-Id: each write is announced once (a new leader announces only past the
        last stored event), and the header cost the actor and the server per event."""
        write = outcome.write
        match outcome:
            case Applied(context=ctx, tenant=tenant, kind=kind):
                evolution_id = ctx.evolution_id if ctx else _evolution_id(outcome)
                applied = WriteApplied(
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
                return [
                    (event_subject_of(write.subject), encode(applied)),
                    *(
                        _pruned(
                            gone,
                            seq=write.seq,
                            time=write.time,
                            writer=write.writer,
                            reason=f"max_contexts: room for {evolution_id}",
                            created_by=evolution_id,
                        )
                        for gone in outcome.pruned
                    ),
                ]
            case Held():
                return []
            case Rejected(tenant=tenant, evolution_id=evolution_id, kind=kind):
                rejected = WriteRejected(
                    tenant=tenant or UNKNOWN_TOKEN,
                    evolution_id=evolution_id or UNKNOWN_TOKEN,
                    kind=kind or UNKNOWN_TOKEN,
                    seq=write.seq,
                    time=write.time,
                    writer=write.writer,
                    code=outcome.code.value,
                    reason=outcome.reason,
                )
                kind_token = kind if kind.isidentifier() and len(kind) <= 64 else "invalid"
                log.info("rejected seq %d: %s", write.seq, outcome.reason[:200])
                subject = error_subject(rejected.tenant, rejected.evolution_id, kind_token)
                return [(subject, encode(rejected))]

    async def _announce_pruned(
        self,
        gone: HeldContext,
        *,
        seq: int,
        time: datetime,
        writer: str | None,
        reason: str,
        created_by: str | None = None,
    ) -> None:
        """A context left the store by pruning (max_contexts) or expiry (TTL)."""
        log.info("pruned %s/%s: %s", gone.tenant, gone.evolution_id, reason)
        subject, event = _pruned(
            gone, seq=seq, time=time, writer=writer, reason=reason, created_by=created_by
        )
        await self._nc.publish(subject, event)


class _LeaderBurst:
    """What the leader does with each delivery of its durable consumer, and after a burst:
    apply, announce, and ack the burst's last write."""

    def __init__(self, actor: StoreActor) -> None:
        self._actor = actor
        self._unacked: str | None = None  # the ack subject of the last write not yet acked

    async def on_write(self, delivery: Delivery) -> None:
        actor = self._actor
        if not actor.lease.valid:
            raise LeadershipLost()
        write = actor.stored(delivery)
        try:
            outcome = actor.state.apply(write)
        except Exception:
            log.exception("applying seq %d failed: stopping", write.seq)
            raise
        if outcome is not None:
            actor.metrics.write_applied(outcome, delivery.pending)
            if write.seq > actor.announced:
                try:
                    await actor.announce(outcome)
                except Exception:  # an event is derived; its loss is no reason to stop
                    log.exception("announcing seq %d failed", write.seq)
        self._unacked = delivery.ack
        if delivery.pending == 0:
            await self.done()

    async def done(self) -> None:
        """The burst is over: ack it, answer the reads it lets through, and tend the state."""
        if self._unacked is not None:
            await self._actor.ack(self._unacked)
            self._unacked = None
        self._actor.after_burst()


def _pruned(
    gone: HeldContext,
    *,
    seq: int,
    time: datetime,
    writer: str | None,
    reason: str,
    created_by: str | None = None,
) -> Announcement:
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
    return event_subject(gone.tenant, gone.evolution_id, PRUNED_KIND), encode(pruned)


def _evolution_id(outcome: Applied) -> str:
    found = WriteSubject.try_parse(outcome.write.subject)
    return "" if found is None else found.evolution_id
