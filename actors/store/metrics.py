"""The store's Prometheus metrics: ``StoreMetrics`` observes an actor (``actors.store.observer``)
and ``MetricsServer`` serves them over HTTP (``ctxstore serve --metrics-port``).

Each ``StoreMetrics`` has a registry of its own, not prometheus_client's global one, so several
actors in one process never share or collide. Its figures are plain ints and bucket counts,
turned into metric families when the registry is collected (a scrape, or the ``stats``
query): prometheus_client's metric objects take a lock and a few calls per observation. On
the bench's writes (evolutions of 10 writes, 4 of them stage writes) the observer costs the
actor about 1.7 us of CPU per write (with prometheus_client's objects: about 2.3 us): 0.2
counting, about 0.7 encoding each finished context once to measure its size, the rest
timing phase transitions. In the running actor its CPU per write rose from about 34 us to
about 37 us (medians of three sets of alternated bench runs).

What the figures mean, where the store's data do not say it by themselves:

- **Imports**: bundles are re-published by clients, so the store counts an import where it
  sees one in the write log: a context created by an ``import`` write, or by a create that
  carries a ``Ctxstore-Recorded-Time`` earlier than its stream time (a re-published write,
  as ``ctxstore import`` and ``ctxstore replay`` publish them).
- **Exports**: a bundle is built by its client from the write stream; the store counts the
  ``export`` queries it answers with a context (the Python client asks one per bundle, and
  the wire contract tells other clients to).
- **Phase durations**: how long a context stayed in a stage, by the stream's timestamps:
  from the write that moved it into the stage (its create, for ``initialized``) to the stage
  write that moved it on, labelled by the stage it left. Only transitions this actor saw
  live: not re-published writes (their times are another store's history), and not the
  first one after a restart for a context that was mid-stage then.
- **Context size**: the size of a context's JSON (as ``get`` returns it) when it finishes
  (a stage write makes its status completed or failed), or when it is imported finished.
- **Lag**: the stream's last sequence minus the sequence applied; the last sequence is the
  latest of what the leader's deliveries say (sequence plus pending) and of a stream info
  read every ``STREAM_POLL_S`` seconds (a stalled actor gets no deliveries). A partition's
  actor counts its own partition's writes not applied yet: what its deliveries say is
  pending, and what its partition's durable consumer says every ``STREAM_POLL_S``.
- Counters count from the actor's start, writes only those applied live: a replay at
  start-up is its own figure (``ctxstore_replayed_writes_total``), else each restart would
  count the whole history again. Every actor counts the writes it applies, leader and
  standbys alike: for store-wide write figures read one actor (the leader), not a sum.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Final, Literal, TypeVar, cast
from wsgiref.simple_server import WSGIServer

import msgspec
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from actors.core.fold import Applied, Outcome, Rejected, StoredWrite, StoreState
from actors.core.held import HeldContext, context_reply
from actors.store.observer import QueryObserver, StoreObserver
from actors.store.retention import TTL_WRITER
from broker import WRITES_STREAM
from contracts import (
    ActorRole,
    ConfigError,
    ErrorCode,
    FamilyType,
    MetricFamily,
    MetricSample,
    Query,
    Stage,
    StatsReply,
    Status,
    WriteKind,
    WriteSubject,
)

__all__ = ["METRIC_NAMES", "STREAM_POLL_S", "MetricsServer", "StoreMetrics"]

log = logging.getLogger("ctxstore.metrics")

STREAM_POLL_S: Final = 1.0

# Metric family names (counters get ``_total`` on their samples).
CONTEXTS_CREATED: Final = "ctxstore_contexts_created"
CONTEXTS_REMOVED: Final = "ctxstore_contexts_removed"
CONTEXTS: Final = "ctxstore_contexts"
CONTEXT_SIZE: Final = "ctxstore_context_size_bytes"
PHASE_DURATION: Final = "ctxstore_phase_duration_seconds"
WRITES_APPLIED: Final = "ctxstore_writes_applied"
WRITES_REJECTED: Final = "ctxstore_writes_rejected"
QUERIES: Final = "ctxstore_queries"
EXPORTS: Final = "ctxstore_bundle_exports"
IMPORTS: Final = "ctxstore_bundle_imports"
APPLIED_SEQ: Final = "ctxstore_applied_seq"
STREAM_LAST_SEQ: Final = "ctxstore_stream_last_seq"
LAG: Final = "ctxstore_lag_writes"
REPLAY_DURATION: Final = "ctxstore_replay_duration_seconds"
REPLAYED: Final = "ctxstore_replayed_writes"
SNAPSHOT_DURATION: Final = "ctxstore_snapshot_duration_seconds"
SNAPSHOT_FAILURES: Final = "ctxstore_snapshot_failures"
LEADER: Final = "ctxstore_leader"
LEADERSHIPS: Final = "ctxstore_leadership_acquired"

METRIC_NAMES: Final = (
    CONTEXTS_CREATED,
    CONTEXTS_REMOVED,
    CONTEXTS,
    CONTEXT_SIZE,
    PHASE_DURATION,
    WRITES_APPLIED,
    WRITES_REJECTED,
    QUERIES,
    EXPORTS,
    IMPORTS,
    APPLIED_SEQ,
    STREAM_LAST_SEQ,
    LAG,
    REPLAY_DURATION,
    REPLAYED,
    SNAPSHOT_DURATION,
    SNAPSHOT_FAILURES,
    LEADER,
    LEADERSHIPS,
)
"""Every metric family a ``StoreMetrics`` exposes."""

Removal = Literal["deleted", "expired", "pruned"]
_Label = TypeVar("_Label", str, WriteKind, ErrorCode, Query)
_REMOVALS: Final[tuple[Removal, ...]] = ("deleted", "expired", "pruned")
# Enum members looked up once: an attribute of an enum class costs a call per access (hot path).
_CREATE: Final = WriteKind.CREATE
_STAGE: Final = WriteKind.STAGE
_DELETE: Final = WriteKind.DELETE
_FINISHED: Final = frozenset({Status.COMPLETED, Status.FAILED})
# The codes the fold rejects writes with (timeout and internal are the queries').
_WRITE_REJECTIONS: Final = (
    ErrorCode.INVALID,
    ErrorCode.TOO_LARGE,
    ErrorCode.NOT_FOUND,
    ErrorCode.CONFLICT,
    ErrorCode.CAPACITY,
)
# Writes that can create, move or finish a context: the others (but delete) only count.
_LIFECYCLE: Final = frozenset({_CREATE, WriteKind.IMPORT, _STAGE})

_KIB: Final = 1024
_SIZE_BUCKETS: Final = tuple(float(_KIB * 4**i) for i in range(8))  # 1 KiB .. 16 MiB
_PHASE_BUCKETS: Final = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_REPLAY_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SNAPSHOT_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Histogram:
    """Observations counted per bucket, and their sum. A bucket's count is of the values at
    most its bound (Prometheus' ``le``); the last one is +Inf."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative counts by bound, as prometheus_client takes them, and the sum. Read
        from copies: the event loop's thread may observe while another thread collects."""
        counts, total = list(self.counts), self.total
        cumulative, seen = [], 0
        for bound, count in zip((*self.bounds, None), counts, strict=True):
            seen += count
            cumulative.append(("+Inf" if bound is None else repr(float(bound)), float(seen)))
        return cumulative, total


class _Progress(msgspec.Struct, gc=False):
    """Where one context is, as far as this actor saw it live. Not tracked by the garbage
    collector (it holds no container), like the contexts: one per context."""

    stage: Stage
    since: datetime | None  # when it entered ``stage``; None: not seen live
    finished: bool


class StoreMetrics(StoreObserver, QueryObserver):
    """A store actor's figures (a ``StoreObserver`` and a ``QueryObserver``), in a registry of
    their own (``registry``). ``attach`` gives it the state to read the applied sequence and
    the number of contexts from; an actor that replaces another (``LocalStack`` after a
    server restart) attaches the same metrics again, and its counters go on."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self._state: Callable[[], StoreState | None] = lambda: None
        self._role: ActorRole = "starting"
        self._stream_last = 0
        self._backlog: int | None = None  # a partition's actor: its writes not applied yet
        self._created = 0
        self._removed: dict[str, int] = dict.fromkeys(_REMOVALS, 0)
        # Every label value there is, from the start: a series that appears only with its
        # first increment hides that increment from rate().
        self._applied: dict[WriteKind, int] = dict.fromkeys(WriteKind, 0)
        self._rejected: dict[ErrorCode, int] = dict.fromkeys(_WRITE_REJECTIONS, 0)
        self._queries: dict[Query, int] = dict.fromkeys(Query, 0)
        self._exports = 0
        self._imports = 0
        self._replayed = 0
        self._snapshot_failures = 0
        self._leaderships = 0
        self._progress: dict[tuple[str, str], _Progress] = {}
        self._context_size = _Histogram(_SIZE_BUCKETS)
        self._phase_duration = {stage: _Histogram(_PHASE_BUCKETS) for stage in Stage}
        self._replay_duration = _Histogram(_REPLAY_BUCKETS)
        self._snapshot_duration = _Histogram(_SNAPSHOT_BUCKETS)

    def attach(self, state: Callable[[], StoreState], *, partitioned: bool = False) -> None:
        """Read the applied sequence and the contexts held from ``state()`` (called at each
        collection, possibly from the HTTP server's thread: it must only read).
        ``partitioned``: the actor applies one partition's writes (its lag is theirs)."""
        self._state = state
        self._role = "starting"
        self._backlog = 0 if partitioned else None

    # -- StoreObserver ---------------------------------------------------------------------

    def write_applied(self, outcome: Outcome, pending: int | None = None) -> None:
        write = outcome.write
        if pending is not None:
            if self._backlog is not None:  # the partition's pending, not the stream's
                self._backlog = pending
            else:
                self._stream_last = write.seq + pending
        match outcome:
            case Applied(kind=kind):
                self._applied[kind] += 1
                if outcome.pruned:
                    self._pruned(outcome.pruned)
                if kind in _LIFECYCLE and outcome.context is not None:
                    self._moved(kind, outcome.context, write)
                elif kind is _DELETE:
                    self._deleted(write)
            case Rejected(code=code):
                self._rejected[code] = self._rejected.get(code, 0) + 1

    def replay_done(self, writes: int, seconds: float) -> None:
        self._replayed += writes
        self._replay_duration.observe(seconds)

    def snapshot_saved(self, seconds: float) -> None:
        self._snapshot_duration.observe(seconds)

    def snapshot_failed(self) -> None:
        self._snapshot_failures += 1

    def role_changed(self, role: ActorRole) -> None:
        if role == "leader" and self._role != "leader":
            self._leaderships += 1
        self._role = role

    def stream_seen(self, last_seq: int) -> None:
        """The write stream's last sequence, as a stream info said."""
        self._stream_last = last_seq

    async def follow_stream(
        self, js: JetStreamContext, every: float = STREAM_POLL_S, durable: str | None = None
    ) -> None:
        """Read the stream's last sequence every ``every`` seconds, for ever: what the lag is
        measured against when no delivery says it (an idle or stalled actor); and, for a
        partition's actor, what its partition's ``durable`` consumer has pending."""
        while True:
            try:
                info = await js.stream_info(WRITES_STREAM)
                if durable is not None and self._backlog is not None:
                    consumer = await js.consumer_info(WRITES_STREAM, durable)
                    self._backlog = int(consumer.num_pending or 0)
            except Exception as exc:  # a monitoring read must never stop the actor
                log.debug("reading the write stream's info failed: %r", exc)
            else:
                self.stream_seen(int(info.state.last_seq))
            await asyncio.sleep(every)

    # -- QueryObserver ---------------------------------------------------------------------

    def query_received(self, op: Query) -> None:
        self._queries[op] += 1

    def context_exported(self) -> None:
        self._exports += 1

    def figures(self, actor: str) -> StatsReply:
        state = self._state()
        return StatsReply(
            actor=actor,
            role=self._role,
            applied_seq=0 if state is None else state.applied_seq,
            metrics=[_family(metric) for metric in self.registry.collect()],
        )

    # -- the figures -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """Every figure, read now: this is the registry's one collector."""
        state = self._state()
        applied = 0 if state is None else state.applied_seq
        contexts = 0 if state is None else len(state.contexts)
        stream_last = max(self._stream_last, applied)
        yield _counter(
            CONTEXTS_CREATED, "Contexts created (create and import writes applied).", self._created
        )
        yield _labelled(
            CONTEXTS_REMOVED,
            "Contexts removed: deleted, expired (TTL) or pruned (max_contexts).",
            "reason",
            self._removed,
        )
        yield GaugeMetricFamily(CONTEXTS, "Contexts the store holds, all tenants.", contexts)
        yield _labelled(WRITES_APPLIED, "Writes applied, by kind.", "kind", self._applied)
        yield _labelled(
            WRITES_REJECTED,
            "Writes rejected, by reason (the error code).",
            "reason",
            self._rejected,
        )
        yield _labelled(QUERIES, "Query requests received, by operation.", "op", self._queries)
        yield _counter(EXPORTS, "Export queries answered with a context.", self._exports)
        yield _counter(IMPORTS, "Contexts created by an import or a replay.", self._imports)
        yield GaugeMetricFamily(APPLIED_SEQ, "The last stream sequence applied.", applied)
        yield GaugeMetricFamily(
            STREAM_LAST_SEQ, "The write stream's last sequence, as last seen.", stream_last
        )
        yield GaugeMetricFamily(
            LAG,
            "Writes in the stream not applied yet (last sequence - applied; a partition's "
            "actor: its partition's).",
            stream_last - applied if self._backlog is None else self._backlog,
        )
        yield _counter(REPLAYED, "Writes applied by replays (start-up, rebuild).", self._replayed)
        yield _counter(SNAPSHOT_FAILURES, "Snapshots that failed to save.", self._snapshot_failures)
        yield GaugeMetricFamily(
            LEADER,
            "1 while this actor leads the store, 0 on standby or starting.",
            1 if self._role == "leader" else 0,
        )
        yield _counter(LEADERSHIPS, "Times this actor took the lead.", self._leaderships)
        yield _histogram(
            CONTEXT_SIZE,
            "Size of a context's JSON when its evolution finishes (status completed or "
            "failed) or when it is imported finished.",
            {(): self._context_size},
        )
        yield _histogram(
            PHASE_DURATION,
            "Time a context spent in a stage (phase label): from the write that moved it "
            "there, or its create, to the stage write that moved it on; stream timestamps.",
            {(stage.value,): h for stage, h in self._phase_duration.items()},
            label="phase",
        )
        yield _histogram(
            REPLAY_DURATION,
            "Rebuilding the state at start-up or after the stream was replaced: loading the "
            "snapshot and replaying the writes after it.",
            {(): self._replay_duration},
        )
        yield _histogram(
            SNAPSHOT_DURATION, "Saving a snapshot of the state.", {(): self._snapshot_duration}
        )

    # -- what a write did to its context ----------------------------------------------------

    def _moved(self, kind: WriteKind, ctx: HeldContext, write: StoredWrite) -> None:
        key = (ctx.tenant, ctx.evolution_id)
        live = write.time >= write.stored_time  # else re-published by an import or replay
        if kind is _STAGE:
            self._stage(key, ctx, write, live)
            return
        self._created += 1
        if kind is _CREATE and live:
            self._progress[key] = _Progress(ctx.current_phase, write.time, finished=False)
            return
        self._imports += 1
        finished = ctx.status in _FINISHED
        if finished:
            self._context_size.observe(len(context_reply(ctx)))
        self._progress[key] = _Progress(ctx.current_phase, None, finished)

    def _stage(
        self, key: tuple[str, str], ctx: HeldContext, write: StoredWrite, live: bool
    ) -> None:
        before = self._progress.get(key)
        stage, finished = ctx.current_phase, ctx.status in _FINISHED
        since = write.time if live else None
        if before is not None and before.stage is stage:
            since = before.since  # no transition: still in the stage it entered then
        elif before is not None and before.since is not None and live:
            seconds = (write.time - before.since).total_seconds()
            self._phase_duration[before.stage].observe(max(seconds, 0.0))
        if finished and (before is None or not before.finished):
            self._context_size.observe(len(context_reply(ctx)))
        if before is None:
            self._progress[key] = _Progress(stage, since, finished)
        else:
            before.stage, before.since, before.finished = stage, since, finished

    def _deleted(self, write: StoredWrite) -> None:
        self._removed["expired" if write.writer == TTL_WRITER else "deleted"] += 1
        found = WriteSubject.try_parse(write.subject)
        if found is not None:
            self._progress.pop((found.tenant, found.evolution_id), None)

    def _pruned(self, gone: Iterable[HeldContext]) -> None:
        for ctx in gone:
            self._removed["pruned"] += 1
            self._progress.pop((ctx.tenant, ctx.evolution_id), None)


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value)


def _labelled(
    name: str,
    documentation: str,
    label: str,
    values: Mapping[_Label, int],
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    # A copy (atomic under the GIL): the event loop's thread increments while the HTTP
    # server's thread reads. The keys are fixed from the start.
    for key, value in dict(values).items():
        family.add_metric([str(key)], value)
    return family


def _histogram(
    name: str,
    documentation: str,
    series: Mapping[tuple[str, ...], _Histogram],
    label: str | None = None,
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=[] if label is None else [label])
    for labels, histogram in series.items():
        buckets, total = histogram.buckets()
        family.add_metric(list(labels), buckets, total)
    return family


def _family(metric: Metric) -> MetricFamily:
    return MetricFamily(
        name=metric.name,
        type=cast(FamilyType, metric.type),
        help=metric.documentation,
        samples=[
            MetricSample(name=s.name, labels=dict(s.labels), value=s.value) for s in metric.samples
        ],
    )


class MetricsServer:
    """``/metrics`` of a registry over HTTP: prometheus_client's server, in a thread of its
    own (it answers while the event loop is busy, and reads only what a collection reads)."""

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose, for port 0)."""
        return int(self._server.server_port) if self._server is not None else self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(
                self._port, addr=self._host, registry=self._registry
            )
        except (OSError, OverflowError) as exc:  # taken, unknown host, port out of range
            why = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"cannot serve metrics on {self._host}:{self._port}: {why}") from None

    async def aclose(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)  # waits for the serving loop to end
        server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
