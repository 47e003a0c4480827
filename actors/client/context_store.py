"""``SharedContextStore``: the client every agent uses.

``store.context(eid)`` gives a ``ContextHandle`` bound to one evolution, with typed reads
and writes; the spec's methods (``get_context``, ``update_phase``, ``store_*``...) are a thin
layer over handles. Those called without ``evolution_id`` use the *current evolution of the
calling task* (a ``contextvars`` variable, per store): ``create_context``,
``import_context``, ``replay`` and ``use`` set it, and nothing else does, so concurrent tasks
sharing one store never write to each other's context, and reads change nothing.

Writes are published to JetStream (durable once acknowledged; each carries a
``Nats-Msg-Id``, reused on retry so it never applies twice), then confirmed by the actor's
event for it (or, if that does not come, by asking the actor), so a rejected write raises.
Reads are NATS requests that carry the last sequence this client wrote: the actor answers
once it has applied that far (read-your-writes). In a partitioned store (its write stream
says how many partitions; read once) a read about one context goes straight to the actors of
its partition, the hash nats-server stores the context's writes by.

Lifecycle: new -> open -> closed. It opens on ``async with`` or on first use, and a closed
client stays closed. With no NATS URL (argument, config or ``NATS_URL``), it uses the local
store directory's server, started for it if none runs (see ``actors.client.local``).
When nats-py gives up on the connection (an outage longer than its few reconnect attempts,
or a server that closed it), the next call connects anew: a client heals by itself. Every
failure is one of ``contracts.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, overload

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from actors.client.confirmations import Confirmations
from actors.client.handle import ContextHandle, WriteReceipt, write_body
from actors.client.local import attach_local_server, default_home
from broker import WRITES_STREAM, StoreConfig, connect, stream_partitions
from broker.chunks import request_in_chunks
from broker.home import FileLock
from broker.lifecycle import AsyncResource
from broker.nats_errors import nats_errors, store_error
from broker.publish import publish_write
from broker.redact import redact
from contracts import (
    HEADER_CHUNK,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    HEADER_MSG_ID,
    HEADER_REPLY_BYTES,
    HEADER_WRITER,
    CompareRequest,
    Comparison,
    ContextList,
    ContextSummary,
    CreateContext,
    Decoders,
    EvolutionContext,
    ExportRequest,
    GetRequest,
    ListRequest,
    OutcomeRequest,
    Query,
    Stage,
    StatsReply,
    StatsRequest,
    Status,
    SubjectError,
    Write,
    WriteApplied,
    WriteKind,
    WriteRejected,
    check_token,
    encode,
    kind_filter,
    partition_of,
    query_subject,
    write_filter,
    write_subject,
)
from contracts.bundle import BUNDLE_FORMAT

if TYPE_CHECKING:
    # Imported where used: a client that only reads and writes contexts (``ctxstore list``,
    # an agent) never loads history, bundles or watches.
    from actors.client.watch import OutcomeWatch, Watch
    from actors.core.bundles import Published, ReplayResult
    from actors.core.timeline import Timeline
    from contracts.bundle import Bundle
from contracts.errors import (
    ConfigError,
    ConflictError,
    ContextNotFoundError,
    ContextStoreError,
    InvalidWriteError,
    PayloadTooLargeError,
    StoreClosedError,
    StoreTimeoutError,
    StoreUnavailableError,
    error_for,
    service_error,
)
from contracts.history import ContextDiff, HistoryEntry

__all__ = [
    "EXPORT_FORMAT",
    "ContextHandle",
    "SharedContextStore",
    "WriteReceipt",
    "get_context_store",
    "new_evolution_id",
]

EXPORT_FORMAT: Final = BUNDLE_FORMAT
_NO_RESPONDERS_ATTEMPTS: Final = 3
# How long a confirmed write waits for its event before asking the actor: long enough for a
# busy actor, short enough that a missed event costs little.
_EVENT_GRACE_S: Final = 0.5
# Connected to a cluster (the connection knows other servers): how long a write waits for
# its stream to have a leader again after a server died (an election takes a few seconds).
_FAILOVER_S: Final = 15.0
_LAYOUT_RETRY_S: Final = 10.0  # after the write stream's partitions could not be read
# A caller's idempotency key travels in a header: printable ASCII, no spaces.
_IDEMPOTENCY_KEY: Final = re.compile(r"[!-~]{1,128}")

# The current evolution of each store, for the running task (and the tasks it starts, which
# copy it). Copied on write: a task's change never shows in another task.
_CURRENT: ContextVar[Mapping[int, str]] = ContextVar(
    "ctxstore_current_evolution", default=MappingProxyType({})
)
_STORE_KEYS = itertools.count()


def new_evolution_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"evo-{stamp}-{uuid.uuid4().hex[:12]}"


class SharedContextStore(AsyncResource):
    """The shared context of evolutions, over NATS.

    ``backend``, ``max_contexts``, ``enable_compression``, ``export_path``, ``ttl``,
    ``max_payload`` and ``max_write`` configure the local server this client starts (no URL
    given, none running) and the client's own checks; a server already running, local or remote, has
    its own configuration.

    Every write method takes ``expected_version=`` (write only if the context is still at
    that version, else ``ConflictError`` with ``current_version``; the server enforces it)
    and ``idempotency_key=``: a key naming this write. The client already retries a lost
    acknowledgement with the same ``Nats-Msg-Id``; a key lets the *caller* retry too, e.g.
    after a ``StoreTimeoutError`` (a write that timed out may have been applied): a retry
    with the same key, to the same context and kind of write, within the write stream's
    duplicate window (120 s, ``broker.DUPLICATE_WINDOW_S``), is stored once (the receipt
    says ``duplicate``) and reports the outcome of the first. After the window the retry is
    a new write: a phase write replaces the phase again (same data, a new version and
    history entry), a stage update logs its error again. A guarded write (a create, or one
    with ``expected_version``) is recognised as long as it is the last write of what it
    guards, and its late retry otherwise raises ``ConflictError``: pass ``expected_version``
    with the key to make a retry, however late, never apply twice.
    """

    def __init__(
        self,
        nats_url: str | None = None,
        *,
        backend: Literal["memory", "file"] | None = None,
        max_contexts: int | None = None,
        enable_compression: bool | None = None,
        export_path: str | Path | None = None,
        ttl: float | None = None,
        max_payload: int | None = None,
        max_write: int | None = None,
        tenant: str | None = None,
        name: str | None = None,
        timeout: float | None = None,
        confirm_writes: bool = True,
        home: Path | None = None,
        config: StoreConfig | None = None,
    ) -> None:
        overrides: dict[str, Any] = dict(
            nats_url=nats_url,
            backend=backend,
            max_contexts=max_contexts,
            compression=enable_compression,
            export_path=export_path,
            ttl_seconds=ttl,
            max_payload=max_payload,
            max_write=max_write,
            tenant=tenant,
            request_timeout=timeout,
        )
        if config is not None:
            given = {k: v for k, v in overrides.items() if v is not None}
            config = config.replace(**given)
        else:
            config = StoreConfig.build(None, **overrides)
        self.config: Final = config
        self.name: Final = name or f"ctxstore-client-{uuid.uuid4().hex[:8]}"
        self.confirm_writes = confirm_writes
        self._home = home or default_home()
        self._state: Literal["new", "open", "closed"] = "new"
        self._nc: Client | None = None
        self._url: str | None = None
        self._confirmations: Confirmations | None = None
        self._local: FileLock | None = None  # registered as a user of the local server
        self._open_lock = asyncio.Lock()
        self._reconnect_failed: tuple[float, str] | None = None
        self._last_seq = 0
        self._latest_ack = 0  # the sequence of the latest acknowledgement, max or not
        self._key: Final = next(_STORE_KEYS)
        # The store's partitions, as its write stream says (None: not known yet); and when
        # reading them last failed (asked again only after _LAYOUT_RETRY_S).
        self._partitions: int | None = None
        self._layout_failed = -_LAYOUT_RETRY_S

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._state == "closed"

    @property
    def current_evolution_id(self) -> str | None:
        """The calling task's current evolution on this store (see ``use``), or None."""
        return _CURRENT.get().get(self._key)

    @property
    def last_seq(self) -> int:
        """The stream sequence of this client's latest write."""
        return self._last_seq

    @property
    def url(self) -> str | None:
        """The URL of the server this client is connected to now (one of ``servers``)."""
        if self._nc is None or self._nc.connected_url is None:
            return None
        return str(self._nc.connected_url.geturl())

    @property
    def servers(self) -> str | None:
        """Every server this client may use, as ``NATS_URL`` gives them (comma-separated),
        once open: what another connection for the same store should be given."""
        return self._url

    async def open(self) -> SharedContextStore:
        async with self._open_lock:
            if self._state == "closed":
                raise StoreClosedError("this SharedContextStore was closed; create a new one")
            if self._state == "open":
                return self
            url = self.config.nats_url
            try:
                if url is None:
                    url, self._local = await attach_local_server(self._home, self.config)
                self._nc = await connect(url, name=self.name, auth=self.config.auth)
                self._confirmations = Confirmations(self._nc, self.config.tenant)
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                self._close_local()
                raise StoreUnavailableError(
                    f"cannot reach NATS at {redact(str(url))}: {redact(repr(exc))}"
                ) from exc
            except BaseException:
                self._close_local()
                raise
            self._url = url
            self._state = "open"
            return self

    async def aclose(self) -> None:
        """Close the connection (and stop using the local server, if it used it)."""
        self._state = "closed"
        nc, self._nc = self._nc, None
        confirmations, self._confirmations = self._confirmations, None
        if confirmations is not None:
            await confirmations.aclose()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()
        self._close_local()

    def _close_local(self) -> None:
        local, self._local = self._local, None
        if local is not None:
            local.release()

    async def _client(self) -> Client:
        """The connection, opened on first use, and made anew once nats-py gave up on it."""
        nc = self._nc
        if self._state == "open" and nc is not None and not nc.is_closed:
            return nc
        if self._state != "open":
            await self.open()
            assert self._nc is not None
            return self._nc
        assert nc is not None
        return await self._reconnect(nc)

    async def _reconnect(self, dead: Client) -> Client:
        """Replace ``dead``, which nats-py closed for good (an outage past its reconnect
        attempts, or a server that dropped it). Callers that were waiting while an attempt
        failed share its failure rather than each trying again."""
        asked = time.monotonic()
        async with self._open_lock:
            if self._state == "closed":
                raise StoreClosedError("this SharedContextStore was closed; create a new one")
            current = self._nc
            if current is not None and current is not dead and not current.is_closed:
                return current  # another caller reconnected meanwhile
            failed = self._reconnect_failed
            if failed is not None and failed[0] >= asked:
                raise StoreUnavailableError(failed[1])
            old, self._confirmations = self._confirmations, None
            if old is not None:
                await old.aclose()
            try:
                fresh = await connect(str(self._url), name=self.name, auth=self.config.auth)
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                message = f"cannot reach NATS at {redact(str(self._url))}: {redact(repr(exc))}"
                self._reconnect_failed = (time.monotonic(), message)
                raise StoreUnavailableError(message) from exc
            if self.is_closed:  # closed while connecting
                await fresh.close()
                raise StoreClosedError("this SharedContextStore was closed; create a new one")
            self._nc = fresh
            self._confirmations = Confirmations(fresh, self.config.tenant)
            self._reconnect_failed = None
            return fresh

    async def _jetstream(self) -> JetStreamContext:
        return (await self._client()).jetstream(timeout=self.config.request_timeout)

    # -- handles and the current evolution ---------------------------------------------

    def context(self, evolution_id: str) -> ContextHandle:
        """A handle on one evolution's context: ``await store.context(eid).get()``."""
        try:
            check_token(evolution_id, "evolution_id")
        except SubjectError as exc:
            raise InvalidWriteError(str(exc)) from None
        return ContextHandle(self, evolution_id)

    def use(self, evolution_id: str) -> ContextHandle:
        """Make ``evolution_id`` the current evolution of the calling task (and of the tasks
        it starts from now on): the one the spec's methods act on when called without an id.
        Returns its handle."""
        handle = self.context(evolution_id)
        self._make_current(handle.evolution_id)
        return handle

    def _make_current(self, evolution_id: str) -> None:
        _CURRENT.set(MappingProxyType({**_CURRENT.get(), self._key: evolution_id}))

    def _current(self, evolution_id: str | None) -> ContextHandle:
        """The handle a write goes to: the id given, else the task's current one."""
        eid = evolution_id if evolution_id is not None else self.current_evolution_id
        if eid is None:
            raise ContextStoreError(
                "no evolution_id given, and this task has no current context: create one, "
                "pass evolution_id=, or call store.use(evolution_id)"
            )
        return self.context(eid)

    def _chosen(self, evolution_id: str | None) -> ContextHandle | None:
        """The handle a read goes to: the id given, else the task's current one, else None
        (the tenant's newest context, which the read does not make current)."""
        if evolution_id is None and self.current_evolution_id is None:
            return None
        return self._current(evolution_id)

    async def _newest(self) -> ContextHandle:
        return self.context((await self._get(None)).evolution_id)

    # -- the spec's API: writes ----------------------------------------------------------

    async def create_context(
        self,
        target_path: str | os.PathLike[str],
        focus_areas: list[str] | None = None,
        *,
        evolution_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Create a context and make it the task's current one; returns its id. An existing
        id is refused (``ConflictError``). With ``idempotency_key``, name the id too: a
        retry must create the same context."""
        if idempotency_key is not None and evolution_id is None:
            raise InvalidWriteError(
                "idempotency_key needs an evolution_id: a retry must name the same context"
            )
        handle = self.context(evolution_id if evolution_id is not None else new_evolution_id())
        body = write_body(
            CreateContext, target_path=os.fspath(target_path), focus_areas=focus_areas or []
        )
        await handle.write(body, idempotency_key=idempotency_key)
        self._make_current(handle.evolution_id)
        return handle.evolution_id

    async def update_phase(
        self,
        phase: Stage | str,
        evolution_id: str | None = None,
        *,
        status: Status | str | None = None,
        error: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        """Move the evolution to ``phase`` (sets ``current_phase``; status follows). The
        receipt is true, as the spec's ``bool`` was."""
        return await self._current(evolution_id).update_phase(
            phase,
            status=status,
            error=error,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    async def mark_failed(
        self, error: str, evolution_id: str | None = None, *, idempotency_key: str | None = None
    ) -> WriteReceipt:
        """Mark the context failed, keeping its stage, with ``error`` in its error_log."""
        return await self._current(evolution_id).mark_failed(error, idempotency_key=idempotency_key)

    async def record_activity(
        self,
        agent: str,
        activity: Literal["started", "finished", "failed"],
        detail: str | None = None,
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        """Note in the context (``ctx.agents``) and its history that an agent started,
        finished or failed its work."""
        return await self._current(evolution_id).record_activity(
            agent,
            activity,
            detail,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    async def store_original_analysis(
        self,
        files_analyzed: int,
        metrics: dict[str, Any],
        issues: list[dict[str, Any]],
        improvements: list[dict[str, Any]],
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        return await self._current(evolution_id).store_original_analysis(
            files_analyzed,
            metrics,
            issues,
            improvements,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    async def store_external_research(
        self,
        best_practices: list[str],
        references: list[dict[str, Any]],
        patterns: list[dict[str, Any]],
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        return await self._current(evolution_id).store_external_research(
            best_practices,
            references,
            patterns,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    async def store_improvement_plan(
        self,
        tasks: list[dict[str, Any]],
        priorities: list[str],
        dependencies: dict[str, list[str]],
        estimated_impact: float,
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        return await self._current(evolution_id).store_improvement_plan(
            tasks,
            priorities,
            dependencies,
            estimated_impact,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    async def store_implementation_log(
        self,
        modified_files: list[str],
        changes: list[dict[str, Any]],
        rollback_points: list[dict[str, Any]],
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        return await self._current(evolution_id).store_implementation_log(
            modified_files,
            changes,
            rollback_points,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    async def store_evaluation_results(
        self,
        goals_achieved: list[Any] | dict[str, Any],
        metrics_comparison: dict[str, Any],
        success_rate: float,
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        return await self._current(evolution_id).store_evaluation_results(
            goals_achieved,
            metrics_comparison,
            success_rate,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    # -- the spec's API: reads -----------------------------------------------------------

    async def get_context(
        self, evolution_id: str | None = None, *, at: int | datetime | None = None
    ) -> EvolutionContext:
        """The context (default: the task's current one, else the newest, which this does
        not make current). ``at`` (a stream sequence, or an aware datetime) returns it as it
        was then, rebuilt from the write stream."""
        handle = self._chosen(evolution_id)
        if handle is None:
            if at is None:
                return await self._get(None)
            handle = await self._newest()
        return await handle.get(at=at)

    async def get_comparison_data(self, evolution_id: str | None = None) -> Comparison:
        """before / plan / after / implementation (and research) of one context (default:
        the current one, else the newest). Reads as the spec's dict: ``comparison["plan"]``."""
        handle = self._chosen(evolution_id)
        return await self._compare(None if handle is None else handle.evolution_id)

    async def get_all_contexts(self) -> list[ContextSummary]:
        """Summaries of every context of this tenant, oldest first. Each reads as the spec's
        dict too: ``summary["evolution_id"]``."""
        listing: ContextList = await self._request(
            Query.LIST, ListRequest(min_seq=self._last_seq), Decoders.context_list
        )
        return list(listing.contexts)

    async def stats(self) -> StatsReply:
        """The figures of the store actor that answers (the ``stats`` query): contexts
        created, writes applied and rejected, queries, exports, imports, lag, phase
        durations... the same figures as its Prometheus endpoint, once this client's writes
        are applied."""
        reply: StatsReply = await self._request(
            Query.STATS, StatsRequest(min_seq=self._last_seq), Decoders.stats_reply
        )
        return reply

    async def history(self, evolution_id: str | None = None) -> list[HistoryEntry]:
        """Every write to the context, in stream order, applied or rejected (with why):
        sequence, time, kind (phase), writer, size."""
        return await (self._chosen(evolution_id) or await self._newest()).history()

    async def diff(
        self,
        evolution_id: str | None,
        a: int | datetime,
        b: int | datetime | None = None,
    ) -> ContextDiff:
        """What changed between the context at ``a`` and at ``b`` (default: now), field by
        field; versions are stream sequences, or aware datetimes."""
        return await (self._chosen(evolution_id) or await self._newest()).diff(a, b)

    def watch(
        self,
        evolution_id: str | None = None,
        phases: Iterable[str] | None = None,
        *,
        from_start: bool = False,
    ) -> Watch:
        """Applied writes as they happen: ``async for event in store.watch(): ...``.

        ``evolution_id`` None watches every context of the tenant; ``phases`` keeps only
        those write kinds (phase names, ``stage``, ``create``...); ``from_start`` replays the
        recorded events first. In order, with no gap or duplicate across reconnects and
        outages: a watch whose connection is gone resumes after its last event on the
        client's new connection, waiting for the server as long as it takes."""
        eid = None if evolution_id is None else self.context(evolution_id).evolution_id
        return self._watch(eid, phases, from_start=from_start)

    def watch_outcomes(
        self,
        evolution_id: str | None = None,
        phases: Iterable[str] | None = None,
        *,
        from_start: bool = False,
    ) -> OutcomeWatch:
        """Like ``watch``, and rejected writes too: ``WriteApplied`` or ``WriteRejected``
        (with its code and reason), in stream order; the live form of ``history``."""
        eid = None if evolution_id is None else self.context(evolution_id).evolution_id
        return self._watch(eid, phases, from_start=from_start, rejected=True)

    async def export_context(
        self,
        evolution_id: str | None = None,
        path: str | os.PathLike[str] | None = None,
        *,
        encrypt: bool = False,
    ) -> str:
        """Write the context's bundle (the context, every write with its sequence, time,
        writer and raw body, and a hash chain; see ``contracts.bundle``) to one file, gzip
        when compression is on; returns its path. Default: the current context, else the
        newest."""
        handle = self._chosen(evolution_id)
        eid = None if handle is None else handle.evolution_id
        return await self._export(eid, path, encrypt=encrypt)

    async def import_context(
        self,
        file_path: str | os.PathLike[str],
        *,
        evolution_id: str | None = None,
        replace: bool = False,
    ) -> str:
        """Load a bundle and make its context the task's current one; returns its id. Its
        writes are re-published in order, so the context and its history equal the
        recording's. An existing id is kept unless ``replace=True``; pass ``evolution_id``
        to import under another id. A malformed, truncated or tampered file raises
        ``BundleError`` and writes nothing."""
        from actors.client.bundles import read_bundle
        from actors.core.bundles import check_consistent, ensure_imported

        bundle = read_bundle(file_path, self.config.key)
        check_consistent(bundle, max_write=self.config.max_write)
        handle = self.context(evolution_id if evolution_id is not None else bundle.evolution_id)
        published, ctx = await self._publish_bundle(bundle, handle, replace=replace)
        ensure_imported(ctx, bundle, published)
        self._make_current(handle.evolution_id)
        return handle.evolution_id

    async def replay(
        self, file_path: str | os.PathLike[str], *, evolution_id: str | None = None
    ) -> ReplayResult:
        """Re-apply a recorded evolution's writes under a fresh id (made the task's current
        one) and compare the result with the recording, field by field
        (``result.identical``)."""
        from actors.client.bundles import read_bundle
        from actors.core.bundles import ReplayResult, as_recorded
        from actors.core.timeline import diff_contexts

        bundle = read_bundle(file_path, self.config.key)
        handle = self.context(evolution_id if evolution_id is not None else new_evolution_id())
        published, ctx = await self._publish_bundle(bundle, handle, replace=False)
        changes = diff_contexts(bundle.context, as_recorded(ctx, bundle, published), ignore=())
        self._make_current(handle.evolution_id)
        return ReplayResult(
            evolution_id=handle.evolution_id, context=ctx, recorded=bundle.context, changes=changes
        )

    # -- what handles run on -------------------------------------------------------------

    async def _write(
        self,
        evolution_id: str,
        body: Write,
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        data = self._encode_write(body)
        kind = WriteKind(str(body.__struct_config__.tag))
        headers = {
            HEADER_MSG_ID: _msg_id(self.config.tenant, evolution_id, kind, idempotency_key),
            HEADER_WRITER: self.name,
        }
        role = self.config.role
        if kind is WriteKind.CREATE:
            # "0" = only if the create subject is empty: the server refuses a second create.
            headers[HEADER_EXPECTED_LAST_SUBJECT_SEQ] = "0"
            if role is not None:  # over every role's create subject of this id, as stored
                headers[HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = kind_filter(
                    self.config.tenant, evolution_id, kind, await self._store_partitions()
                )
        if expected_version is not None:
            headers.update(_guard(self.config.tenant, evolution_id, expected_version))
        nc = await self._client()
        confirmations = self._confirmations if self.confirm_writes else None
        if confirmations is not None:
            with nats_errors(f"listening for the outcome of writes to {evolution_id}"):
                await confirmations.listen(evolution_id)
        try:
            ack = await publish_write(
                self._jetstream,
                write_subject(self.config.tenant, evolution_id, kind, role),
                data,
                headers,
                max_payload=self._message_limit(nc),
                what=f"the {kind} write to {evolution_id}",
                failover=_FAILOVER_S if len(nc.servers) > 1 else 0.0,
            )
        except ConflictError as exc:
            raise await self._conflict(exc, evolution_id, kind, expected_version) from None
        self._last_seq = max(self._last_seq, ack.seq)
        self._latest_ack = ack.seq
        receipt = WriteReceipt(evolution_id, ack.seq, bool(ack.duplicate))
        if self.confirm_writes:
            await self._confirm(ack.seq, evolution_id, None if ack.duplicate else confirmations)
        return receipt

    def _encode_write(self, body: Write) -> bytes:
        try:
            data = encode(body)
            Decoders.write.decode(data)  # constructors do not validate; the decoder does
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            raise InvalidWriteError(f"invalid {body.__struct_config__.tag} write: {exc}") from None
        if len(data) > self.config.max_write:
            raise PayloadTooLargeError(
                f"{body.__struct_config__.tag} write of {len(data)} bytes exceeds the store's "
                f"limit on a write (max_write) of {self.config.max_write} bytes"
            )
        return data

    def _message_limit(self, nc: Client) -> int:
        """The largest message a write may use: the server's and the write stream's limit
        (the store's ``max_payload``); a larger write goes in chunks."""
        return min(nc.max_payload, self.config.max_payload)

    async def _confirm(
        self, seq: int, evolution_id: str, confirmations: Confirmations | None
    ) -> None:
        """Raise if the actor rejected the write at ``seq``. Its event usually says so first
        (see ``actors.client.confirmations``); otherwise the actor is asked."""
        event = None if confirmations is None else await confirmations.outcome(seq, _EVENT_GRACE_S)
        match event:
            case WriteApplied():
                return
            case WriteRejected(code=code, reason=reason):
                raise error_for(code, reason)
        # No event in time (missed, or a duplicate publish whose event is long gone).
        outcome = await self._request(
            Query.OUTCOME, OutcomeRequest(seq=seq, min_seq=seq), Decoders.outcome, evolution_id
        )
        if not outcome.applied:
            raise error_for(outcome.code or "invalid", outcome.reason or "write rejected")

    async def _conflict(
        self,
        refused: ConflictError,
        evolution_id: str,
        kind: WriteKind,
        expected: int | None,
    ) -> ConflictError:
        """The server refused a guarded write: say why, in the caller's terms."""
        if expected is None:
            if kind in (WriteKind.CREATE, WriteKind.IMPORT):
                return ConflictError(f"a context with evolution_id {evolution_id} already exists")
            return ConflictError(f"the context {evolution_id} moved on: {refused}")
        current = refused.current_version
        if current is None:  # not in the server's words: ask the store
            with contextlib.suppress(ContextStoreError):
                current = (await self._get(evolution_id)).version
        return ConflictError(
            f"context {evolution_id} is at version {current}, not the expected {expected}: "
            "it moved on; read it again and retry",
            current_version=current,
        )

    async def _store_partitions(self) -> int:
        """The store's partitions, read from its write stream once (1 while it cannot be
        read: the store's query subjects, which any actor answers, are right with any)."""
        if self._partitions is not None:
            return self._partitions
        loop = asyncio.get_running_loop()
        if loop.time() - self._layout_failed < _LAYOUT_RETRY_S:
            return 1
        try:
            nc = await self._client()
            info = await nc.jetstream(timeout=min(self.config.request_timeout, 2.0)).stream_info(
                WRITES_STREAM
            )
        except Exception:  # no stream yet, not allowed, no answer: ask again later
            self._layout_failed = loop.time()
            return 1
        self._partitions = stream_partitions(info.config)
        return self._partitions

    async def _partition(self, evolution_id: str | None) -> int | None:
        """The partition whose actors hold ``evolution_id`` (None: ask the store's subject)."""
        if evolution_id is None:
            return None
        partitions = await self._store_partitions()
        if partitions == 1:
            return None
        return partition_of(self.config.tenant, evolution_id, partitions)

    async def _request(
        self, op: Query, body: msgspec.Struct, decoder: Any, about: str | None = None
    ) -> Any:
        """``about``: the evolution id the query concerns, whose partition's actors are
        asked directly (one hop); else any actor is (it passes the query on)."""
        try:
            return await self._request_once(op, body, decoder, about)
        except StoreTimeoutError:
            # A min_seq past the write stream's last sequence is never reached: the stream
            # was deleted and created again since this client's older writes. From now on,
            # read your writes in the new stream.
            min_seq = getattr(body, "min_seq", 0)
            if min_seq <= self._latest_ack or min_seq <= await self._stream_last_seq():
                raise
            self._last_seq = self._latest_ack
            fresh = msgspec.structs.replace(body, min_seq=self._latest_ack)
            return await self._request_once(op, fresh, decoder, about)

    async def _stream_last_seq(self) -> int:
        nc = await self._client()
        with nats_errors("reading the write stream's state"):
            info = await nc.jetstream().stream_info(WRITES_STREAM)
        return int(info.state.last_seq)

    async def _request_once(
        self, op: Query, body: msgspec.Struct, decoder: Any, about: str | None
    ) -> Any:
        partition = await self._partition(about)
        subject = query_subject(self.config.tenant, op, partition)
        try:
            msg = await self._ask(op, subject, encode(body))
        except StoreUnavailableError:
            if partition is None:
                raise
            # Nobody serves that partition's subject: the store has other partitions now
            # (made anew), or none. Its own subject says which, and is asked from now on.
            self._partitions = None
            subject = query_subject(self.config.tenant, op)
            msg = await self._ask(op, subject, encode(body))
        headers, reply = msg.headers, msg.data
        if _too_large_for_one_message(headers) and hasattr(body, "accept_chunks"):
            # The reply exists but is larger than a message: ask again for it in chunks.
            whole = msgspec.structs.replace(body, accept_chunks=True)
            nc = await self._client()
            with nats_errors(f"the {op} query"):
                chunked = await request_in_chunks(
                    nc, subject, encode(whole), patience=self.config.request_timeout
                )
            headers, reply = chunked.headers, chunked.data
        err = service_error(headers, reply)
        if err is not None:
            raise error_for(err.code, err.message)
        return decoder.decode(reply)

    async def _ask(self, op: Query, subject: str, data: bytes) -> Msg:
        """One request's reply (its first message); every failure one of ours."""
        for attempt in range(1, _NO_RESPONDERS_ATTEMPTS + 1):
            last = attempt == _NO_RESPONDERS_ATTEMPTS
            nc = await self._client()
            try:
                msg: Msg = await nc.request(subject, data, timeout=self.config.request_timeout)
                return msg
            except nats.errors.NoRespondersError:
                # Right after a store actor (re)starts, the server has been seen to answer
                # "no responders" once although the actor's endpoints are live (about 1 in
                # 10 restarts in tests/test_snapshots.py); an immediate retry is answered.
                # With no actor at all this still fails at once.
                if last:
                    raise StoreUnavailableError(
                        f"no store actor is serving tenant {self.config.tenant!r} "
                        f"on {redact(str(self.url))}"
                    ) from None
            except nats.errors.ConnectionClosedError as exc:
                # nats-py gave up on the connection: the next attempt makes a new one.
                if last:
                    raise StoreUnavailableError(f"the {op} query: {exc!r}") from exc
            except Exception as exc:
                error = store_error(exc, f"the {op} query")
                if isinstance(error, StoreTimeoutError):
                    raise StoreTimeoutError(
                        f"the store actor did not answer {op} within {self.config.request_timeout}s"
                    ) from None
                if error is None:
                    raise
                raise error from exc
        raise AssertionError("unreachable")

    async def _get(self, evolution_id: str | None) -> EvolutionContext:
        ctx: EvolutionContext = await self._request(
            Query.GET,
            GetRequest(evolution_id=evolution_id, min_seq=self._last_seq),
            Decoders.context,
            evolution_id,
        )
        return ctx

    async def _compare(self, evolution_id: str | None) -> Comparison:
        comparison: Comparison = await self._request(
            Query.COMPARE,
            CompareRequest(evolution_id=evolution_id, min_seq=self._last_seq),
            Decoders.comparison,
            evolution_id,
        )
        return comparison

    async def _timeline(self, evolution_id: str) -> Timeline:
        from actors.client.history import load_timeline

        with nats_errors(f"reading the history of {evolution_id}"):
            timeline = await load_timeline(
                await self._client(),
                self.config.tenant,
                evolution_id,
                max_write=self.config.max_write,
                read_timeout=self.config.request_timeout,
            )
        if not timeline.records:
            raise ContextNotFoundError(f"no context {evolution_id} in tenant {self.config.tenant}")
        return timeline

    @overload
    def _watch(
        self,
        evolution_id: str | None,
        phases: Iterable[str] | None,
        *,
        from_start: bool,
        rejected: Literal[False] = False,
    ) -> Watch: ...

    @overload
    def _watch(
        self,
        evolution_id: str | None,
        phases: Iterable[str] | None,
        *,
        from_start: bool,
        rejected: Literal[True],
    ) -> OutcomeWatch: ...

    def _watch(
        self,
        evolution_id: str | None,
        phases: Iterable[str] | None,
        *,
        from_start: bool,
        rejected: bool = False,
    ) -> Watch | OutcomeWatch:
        from actors.client.watch import OutcomeWatch, Watch

        kind = OutcomeWatch if rejected else Watch
        return kind(
            self._client,
            self.config.tenant,
            evolution_id,
            phases=phases,
            from_start=from_start,
        )

    async def _export(
        self,
        evolution_id: str | None,
        path: str | os.PathLike[str] | None,
        *,
        encrypt: bool = False,
    ) -> str:
        key = self.config.key if encrypt else None
        if encrypt and key is None:
            raise ConfigError(
                "an encrypted export needs a key: set CONTEXT_STORE_ENCRYPTION_KEY (or _FILE)"
            )
        # The query says whether the context exists, once this client's writes applied.
        ctx: EvolutionContext = await self._request(
            Query.EXPORT,
            ExportRequest(evolution_id=evolution_id, min_seq=self._last_seq),
            Decoders.context,
            evolution_id,
        )
        from actors.client.bundles import write_bundle
        from actors.core.bundles import build_bundle

        bundle = build_bundle(await self._timeline(ctx.evolution_id))
        compress = self.config.compression
        suffix = ".json.gz" if compress else ".json"
        target = Path(path) if path else self.config.export_path / f"{ctx.evolution_id}{suffix}"
        return str(write_bundle(bundle, target, compress=compress, key=key))

    async def _publish_bundle(
        self, bundle: Bundle, handle: ContextHandle, *, replace: bool
    ) -> tuple[Published, EvolutionContext]:
        from actors.client.bundles import publish_bundle

        with nats_errors(f"importing a bundle as {handle.evolution_id}"):
            published = await publish_bundle(
                self._client,
                self.config,
                bundle,
                handle.evolution_id,
                replace=replace,
                msg_prefix=f"imp-{bundle.head[:16]}-{uuid.uuid4().hex[:8]}",
            )
        self._last_seq = max(self._last_seq, published.last_seq)
        return published, await handle.get()


def _too_large_for_one_message(headers: dict[str, str] | None) -> bool:
    """The store's answer that a reply exists but does not fit in one message."""
    return headers is not None and HEADER_REPLY_BYTES in headers and HEADER_CHUNK not in headers


def _msg_id(tenant: str, evolution_id: str, kind: WriteKind, key: str | None) -> str:
    """The write's ``Nats-Msg-Id``: random, or the caller's key scoped to the context and
    the kind of write, so one key cannot make another context's write a "duplicate"."""
    if key is None:
        return uuid.uuid4().hex
    if not isinstance(key, str) or _IDEMPOTENCY_KEY.fullmatch(key) is None:
        raise InvalidWriteError(
            f"idempotency_key must be 1-128 printable ASCII characters without spaces, "
            f"not {key!r:.80}"
        )
    return f"key.{tenant}.{evolution_id}.{kind}.{key}"


def _guard(tenant: str, evolution_id: str, expected_version: int) -> dict[str, str]:
    """Headers that make the server refuse the write unless the last write to any of the
    context's subjects has sequence ``expected_version`` (its version; 0: no write yet)."""
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise InvalidWriteError(f"expected_version must be an int, not {expected_version!r}")
    if expected_version < 0:
        raise InvalidWriteError(f"expected_version must be >= 0, not {expected_version}")
    return {
        HEADER_EXPECTED_LAST_SUBJECT_SEQ: str(expected_version),
        HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: write_filter(tenant, evolution_id),
    }


_default: tuple[asyncio.AbstractEventLoop, SharedContextStore] | None = None


def get_context_store(**kwargs: Any) -> SharedContextStore:
    """The process-wide store for the running event loop, created on first call.

    Tasks sharing it each have their own current evolution (see ``SharedContextStore.use``).
    A closed default store is replaced by a new one; keyword arguments apply only when the
    store is created."""
    global _default
    loop = asyncio.get_running_loop()
    if _default is not None and _default[0] is loop and not _default[1].is_closed:
        return _default[1]
    store = SharedContextStore(**kwargs)
    _default = (loop, store)
    return store
