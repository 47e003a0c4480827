"""``SharedContextStore``: the client every agent uses.

Writes are published to JetStream (durable once acknowledged; each carries a
``Nats-Msg-Id``, reused on retry so it never applies twice), then confirmed by the actor's
event for it (or, if that does not come, by asking the actor), so a rejected write raises.
Reads are NATS requests that carry the last sequence this client wrote: the actor answers
once it has applied that far (read-your-writes).

Lifecycle: new -> open -> closed. It opens on ``async with`` or on first use, and a closed
client stays closed. With no NATS URL (argument, config or ``NATS_URL``), it uses the local
store directory's server, started for it if none runs (see ``actors.client.local``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js.errors import APIError, NoStreamResponseError

from actors.client.bundles import publish_bundle, read_bundle, write_bundle
from actors.client.confirmations import Confirmations
from actors.client.history import load_timeline
from actors.client.local import attach_local_server, default_home
from actors.client.watch import Watch
from actors.core.bundles import (
    Published,
    ReplayResult,
    as_recorded,
    build_bundle,
    check_consistent,
    ensure_imported,
)
from actors.core.timeline import Timeline, diff_contexts
from broker import StoreConfig, connect
from broker.home import FileLock
from broker.redact import redact
from contracts import (
    HEADER_EXPECTED_LAST_SUBJECT_SEQ,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    HEADER_MSG_ID,
    HEADER_WRITER,
    AgentActivity,
    CompareRequest,
    ContextList,
    CreateContext,
    Decoders,
    EvaluationResults,
    EvolutionContext,
    ExportRequest,
    ExternalResearch,
    GetRequest,
    ImplementationLog,
    ImprovementPlan,
    ListRequest,
    OriginalAnalysis,
    OutcomeRequest,
    Query,
    Stage,
    StageUpdate,
    Status,
    SubjectError,
    Write,
    WriteApplied,
    WriteKind,
    WriteRejected,
    check_token,
    encode,
    query_subject,
    write_filter,
    write_subject,
)
from contracts.bundle import BUNDLE_FORMAT, Bundle
from contracts.errors import (
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

__all__ = ["EXPORT_FORMAT", "SharedContextStore", "WriteReceipt", "get_context_store"]

EXPORT_FORMAT: Final = BUNDLE_FORMAT
_WRONG_LAST_SEQUENCE: Final = 10071
_NO_RESPONDERS_ATTEMPTS: Final = 3
# How long a confirmed write waits for its event before asking the actor: long enough for a
# busy actor, short enough that a missed event costs little.
_EVENT_GRACE_S: Final = 0.5
T = TypeVar("T")


class WriteReceipt(msgspec.Struct, frozen=True):
    evolution_id: str
    seq: int
    duplicate: bool = False


def new_evolution_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"evo-{stamp}-{uuid.uuid4().hex[:12]}"


class SharedContextStore:
    """The shared context of evolutions, over NATS.

    ``backend``, ``max_contexts``, ``enable_compression``, ``export_path``, ``ttl`` and
    ``max_payload`` configure the local server this client starts (no URL given, none
    running) and the client's own checks; a server already running, local or remote, has
    its own configuration.
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
        self._confirmations: Confirmations | None = None
        self._local: FileLock | None = None  # registered as a user of the local server
        self._open_lock = asyncio.Lock()
        self._last_seq = 0
        self._current_id: str | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._state == "closed"

    @property
    def current_evolution_id(self) -> str | None:
        """The context this client created or used last: the default for ``evolution_id``."""
        return self._current_id

    @property
    def last_seq(self) -> int:
        """The stream sequence of this client's latest write."""
        return self._last_seq

    @property
    def url(self) -> str | None:
        if self._nc is None or self._nc.connected_url is None:
            return None
        return str(self._nc.connected_url.geturl())

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
                self._nc = await connect(url, name=self.name)
                self._confirmations = Confirmations(self._nc, self.config.tenant)
            except (OSError, nats.errors.NoServersError, TimeoutError) as exc:
                self._close_local()
                raise StoreUnavailableError(
                    f"cannot reach NATS at {redact(str(url))}: {redact(repr(exc))}"
                ) from exc
            except BaseException:
                self._close_local()
                raise
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

    async def __aenter__(self) -> SharedContextStore:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _client(self) -> Client:
        if self._state != "open":
            await self.open()
        assert self._nc is not None
        return self._nc

    # -- writes ------------------------------------------------------------------------

    def _target(self, evolution_id: str | None) -> str:
        eid = evolution_id or self._current_id
        if eid is None:
            raise ContextStoreError(
                "no evolution_id given and this client has not created or used a context yet"
            )
        try:
            check_token(eid, "evolution_id")
        except SubjectError as exc:
            raise InvalidWriteError(str(exc)) from None
        self._current_id = eid
        return eid

    def _encode_write(self, body: Write) -> bytes:
        try:
            data = encode(body)
            Decoders.write.decode(data)  # constructors do not validate; the decoder does
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            raise InvalidWriteError(f"invalid {body.__struct_config__.tag} write: {exc}") from None
        if len(data) > self.config.max_payload:
            raise PayloadTooLargeError(
                f"{body.__struct_config__.tag} write of {len(data)} bytes exceeds the limit of "
                f"{self.config.max_payload} bytes"
            )
        return data

    async def _write(
        self,
        evolution_id: str,
        body: Write,
        *,
        headers: dict[str, str] | None = None,
        attempts: int = 3,
        expected_version: int | None = None,
    ) -> WriteReceipt:
        data = self._encode_write(body)
        nc = await self._client()
        js = nc.jetstream(timeout=self.config.request_timeout)
        kind = WriteKind(str(body.__struct_config__.tag))
        subject = write_subject(self.config.tenant, evolution_id, kind)
        all_headers = {HEADER_MSG_ID: uuid.uuid4().hex, HEADER_WRITER: self.name}
        all_headers.update(headers or {})
        if expected_version is not None:
            all_headers.update(_guard(self.config.tenant, evolution_id, expected_version))
        confirmations = self._confirmations if self.confirm_writes else None
        if confirmations is not None:
            await confirmations.listen(evolution_id)
        for attempt in range(1, attempts + 1):
            try:
                ack = await js.publish(subject, data, headers=all_headers)
                break
            except nats.errors.TimeoutError:
                # It may have been stored anyway: the retry carries the same Nats-Msg-Id.
                if attempt == attempts:
                    raise StoreTimeoutError(
                        f"no JetStream acknowledgement for {kind} after {attempts} attempts"
                    ) from None
            except (nats.errors.NoRespondersError, NoStreamResponseError):
                raise StoreUnavailableError(
                    "JetStream does not accept writes: is the store provisioned on this server?"
                ) from None
            except APIError as exc:
                if expected_version is not None and exc.err_code == _WRONG_LAST_SEQUENCE:
                    conflict = await self._version_conflict(exc, evolution_id, expected_version)
                    raise conflict from None
                raise _publish_error(exc, kind) from None
        self._last_seq = max(self._last_seq, ack.seq)
        receipt = WriteReceipt(evolution_id, ack.seq, bool(ack.duplicate))
        if self.confirm_writes:
            await self._confirm(ack.seq, None if ack.duplicate else confirmations)
        return receipt

    async def _confirm(self, seq: int, confirmations: Confirmations | None) -> None:
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
            Query.OUTCOME, OutcomeRequest(seq=seq, min_seq=seq), Decoders.outcome
        )
        if not outcome.applied:
            raise error_for(outcome.code or "invalid", outcome.reason or "write rejected")

    async def _version_conflict(
        self, exc: APIError, evolution_id: str, expected: int
    ) -> ConflictError:
        """The server refused a guarded write: say which version the context is at."""
        current = _current_from(exc.description)
        if current is None:  # not in the server's words: ask the store
            with contextlib.suppress(ContextStoreError):
                current = (await self.get_context(evolution_id)).version
        return ConflictError(
            f"context {evolution_id} is at version {current}, not the expected {expected}: "
            "it moved on; read it again and retry",
            current_version=current,
        )

    async def create_context(
        self,
        target_path: str | os.PathLike[str],
        focus_areas: list[str] | None = None,
        *,
        evolution_id: str | None = None,
    ) -> str:
        """Create a context and make it this client's current one; returns its id."""
        eid = evolution_id or new_evolution_id()
        body = _body(
            CreateContext, target_path=os.fspath(target_path), focus_areas=focus_areas or []
        )
        self._target(eid)
        # "0" = only if the create subject is empty: the server refuses a second create.
        await self._write(eid, body, headers={HEADER_EXPECTED_LAST_SUBJECT_SEQ: "0"})
        return eid

    async def update_phase(
        self,
        phase: Stage | str,
        evolution_id: str | None = None,
        *,
        status: Status | str | None = None,
        error: str | None = None,
        expected_version: int | None = None,
    ) -> bool:
        """Move the evolution to ``phase`` (sets ``current_phase``; status follows).

        ``expected_version`` (every write method takes it): write only if the context is
        still at that version, else ``ConflictError`` with ``current_version``. The server
        enforces it (expected-last-subject-sequence over the context's subjects)."""
        try:
            stage = Stage(phase)
            state = None if status is None else Status(status)
        except ValueError as exc:
            raise InvalidWriteError(f"invalid phase or status: {exc}") from None
        eid = self._target(evolution_id)
        await self._write(
            eid,
            _body(StageUpdate, phase=stage, status=state, error=error),
            expected_version=expected_version,
        )
        return True

    async def mark_failed(self, error: str, evolution_id: str | None = None) -> bool:
        """Mark the context failed, keeping its stage, with ``error`` in its error_log."""
        ctx = await self.get_context(evolution_id)
        return await self.update_phase(
            ctx.current_phase, ctx.evolution_id, status=Status.FAILED, error=error
        )

    async def record_activity(
        self,
        agent: str,
        activity: Literal["started", "finished", "failed"],
        detail: str | None = None,
        *,
        evolution_id: str | None = None,
    ) -> WriteReceipt:
        """Note in the context (``ctx.agents``) and its history that an agent started,
        finished or failed its work."""
        body = _body(AgentActivity, agent=agent, activity=activity, detail=detail)
        return await self._write(self._target(evolution_id), body)

    async def store_original_analysis(
        self,
        files_analyzed: int,
        metrics: dict[str, Any],
        issues: list[dict[str, Any]],
        improvements: list[dict[str, Any]],
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
    ) -> WriteReceipt:
        body = _body(
            OriginalAnalysis,
            files_analyzed=files_analyzed,
            metrics=metrics,
            issues=issues,
            improvements=improvements,
        )
        return await self._write(
            self._target(evolution_id), body, expected_version=expected_version
        )

    async def store_external_research(
        self,
        best_practices: list[str],
        references: list[dict[str, Any]],
        patterns: list[dict[str, Any]],
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
    ) -> WriteReceipt:
        body = _body(
            ExternalResearch,
            best_practices=best_practices,
            references=references,
            patterns=patterns,
        )
        return await self._write(
            self._target(evolution_id), body, expected_version=expected_version
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
    ) -> WriteReceipt:
        body = _body(
            ImprovementPlan,
            tasks=tasks,
            priorities=priorities,
            dependencies=dependencies,
            estimated_impact=estimated_impact,
        )
        return await self._write(
            self._target(evolution_id), body, expected_version=expected_version
        )

    async def store_implementation_log(
        self,
        modified_files: list[str],
        changes: list[dict[str, Any]],
        rollback_points: list[dict[str, Any]],
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
    ) -> WriteReceipt:
        body = _body(
            ImplementationLog,
            modified_files=modified_files,
            changes=changes,
            rollback_points=rollback_points,
        )
        return await self._write(
            self._target(evolution_id), body, expected_version=expected_version
        )

    async def store_evaluation_results(
        self,
        goals_achieved: list[Any] | dict[str, Any],
        metrics_comparison: dict[str, Any],
        success_rate: float,
        *,
        evolution_id: str | None = None,
        expected_version: int | None = None,
    ) -> WriteReceipt:
        body = _body(
            EvaluationResults,
            goals_achieved=goals_achieved,
            metrics_comparison=metrics_comparison,
            success_rate=success_rate,
        )
        return await self._write(
            self._target(evolution_id), body, expected_version=expected_version
        )

    # -- reads -------------------------------------------------------------------------

    async def _request(self, op: Query, body: msgspec.Struct, decoder: Any) -> Any:
        nc = await self._client()
        subject = query_subject(self.config.tenant, op)
        try:
            for attempt in range(_NO_RESPONDERS_ATTEMPTS):
                try:
                    msg = await nc.request(
                        subject, encode(body), timeout=self.config.request_timeout
                    )
                    break
                except nats.errors.NoRespondersError:
                    # Right after a store actor (re)starts, the server has been seen to
                    # answer "no responders" once although the actor's endpoints are live
                    # (about 1 in 10 restarts in tests/test_snapshots.py); an immediate
                    # retry is answered. With no actor at all this still fails at once.
                    if attempt == _NO_RESPONDERS_ATTEMPTS - 1:
                        raise
        except nats.errors.NoRespondersError:
            raise StoreUnavailableError(
                f"no store actor is serving tenant {self.config.tenant!r} "
                f"on {redact(str(self.url))}"
            ) from None
        except nats.errors.TimeoutError:
            raise StoreTimeoutError(
                f"the store actor did not answer {op} within {self.config.request_timeout}s"
            ) from None
        err = service_error(msg.headers, msg.data)
        if err is not None:
            raise error_for(err.code, err.message)
        return decoder.decode(msg.data)

    async def get_context(
        self, evolution_id: str | None = None, *, at: int | datetime | None = None
    ) -> EvolutionContext:
        """The context (default: this client's current one, else the newest).

        ``at`` (a stream sequence, or an aware datetime) returns it as it was then, rebuilt
        from the write stream (see ``actors.history``)."""
        if at is not None:
            timeline = await self._timeline(evolution_id)
            past = timeline.context_at(at)
            if past is None:
                raise ContextNotFoundError(
                    f"context {timeline.evolution_id} did not exist at {_point(at)}"
                )
            return past
        eid = evolution_id or self._current_id
        ctx: EvolutionContext = await self._request(
            Query.GET, GetRequest(evolution_id=eid, min_seq=self._last_seq), Decoders.context
        )
        self._current_id = ctx.evolution_id
        return ctx

    # -- history, time travel, watch ----------------------------------------------------

    async def _timeline(self, evolution_id: str | None) -> Timeline:
        eid = evolution_id or self._current_id
        if eid is None:
            eid = (await self.get_context()).evolution_id
        try:
            check_token(eid, "evolution_id")
        except SubjectError as exc:
            raise InvalidWriteError(str(exc)) from None
        timeline = await load_timeline(
            await self._client(),
            self.config.tenant,
            eid,
            max_payload=self.config.max_payload,
            read_timeout=self.config.request_timeout,
        )
        if not timeline.records:
            raise ContextNotFoundError(f"no context {eid} in tenant {self.config.tenant}")
        self._current_id = eid
        return timeline

    async def history(self, evolution_id: str | None = None) -> list[HistoryEntry]:
        """Every write to the context, in stream order, applied or rejected (with why):
        sequence, time, kind (phase), writer, size."""
        return (await self._timeline(evolution_id)).entries()

    async def diff(
        self,
        evolution_id: str | None,
        a: int | datetime,
        b: int | datetime | None = None,
    ) -> ContextDiff:
        """What changed between the context at ``a`` and at ``b`` (default: now), field by
        field; versions are stream sequences, or aware datetimes."""
        timeline = await self._timeline(evolution_id)
        sides = []
        for point in (a, b):
            ctx = timeline.context_at(point)
            if ctx is None:
                raise ContextNotFoundError(
                    f"context {timeline.evolution_id} did not exist at {_point(point)}"
                )
            sides.append(ctx)
        return ContextDiff(
            evolution_id=timeline.evolution_id,
            a=sides[0].version,
            b=sides[1].version,
            changes=diff_contexts(sides[0], sides[1]),
        )

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
        recorded events first. In order, no gap or duplicate across reconnects."""
        if evolution_id is not None:
            try:
                check_token(evolution_id, "evolution_id")
            except SubjectError as exc:
                raise InvalidWriteError(str(exc)) from None
        return Watch(
            self._client,
            self.config.tenant,
            evolution_id,
            phases=phases,
            from_start=from_start,
        )

    async def get_comparison_data(self, evolution_id: str | None = None) -> dict[str, Any]:
        """before / plan / after / implementation (and research) of one context."""
        eid = evolution_id or self._current_id
        comparison = await self._request(
            Query.COMPARE,
            CompareRequest(evolution_id=eid, min_seq=self._last_seq),
            Decoders.comparison,
        )
        self._current_id = comparison.evolution_id
        result: dict[str, Any] = comparison.as_dict()
        return result

    async def get_all_contexts(self) -> list[dict[str, Any]]:
        """Summaries of every context of this tenant, oldest first."""
        listing: ContextList = await self._request(
            Query.LIST, ListRequest(min_seq=self._last_seq), Decoders.context_list
        )
        return [msgspec.to_builtins(s) for s in listing.contexts]

    async def export_context(
        self, evolution_id: str | None = None, path: str | os.PathLike[str] | None = None
    ) -> str:
        """Write the context's bundle (the context, every write with its sequence, time,
        writer and raw body, and a hash chain; see ``contracts.bundle``) to one file, gzip
        when compression is on; returns its path."""
        eid = evolution_id or self._current_id
        ctx: EvolutionContext = await self._request(
            Query.EXPORT, ExportRequest(evolution_id=eid, min_seq=self._last_seq), Decoders.context
        )
        bundle = build_bundle(await self._timeline(ctx.evolution_id))
        compress = self.config.compression
        suffix = ".json.gz" if compress else ".json"
        target = Path(path) if path else self.config.export_path / f"{ctx.evolution_id}{suffix}"
        return str(write_bundle(bundle, target, compress=compress))

    async def import_context(
        self,
        file_path: str | os.PathLike[str],
        *,
        evolution_id: str | None = None,
        replace: bool = False,
    ) -> str:
        """Load a bundle; returns the context's id. Its writes are re-published in order, so
        the context and its history equal the recording's. An existing id is kept unless
        ``replace=True``; pass ``evolution_id`` to import under another id. A malformed,
        truncated or tampered file raises ``BundleError`` and writes nothing."""
        bundle = read_bundle(file_path)
        check_consistent(bundle, max_payload=self.config.max_payload)
        eid = evolution_id or bundle.evolution_id
        published, ctx = await self._publish_bundle(bundle, eid, replace=replace)
        ensure_imported(ctx, bundle, published)
        return eid

    async def replay(
        self, file_path: str | os.PathLike[str], *, evolution_id: str | None = None
    ) -> ReplayResult:
        """Re-apply a recorded evolution's writes under a fresh id and compare the result
        with the recording, field by field (``result.identical``)."""
        bundle = read_bundle(file_path)
        eid = evolution_id or new_evolution_id()
        published, ctx = await self._publish_bundle(bundle, eid, replace=False)
        changes = diff_contexts(bundle.context, as_recorded(ctx, bundle, published), ignore=())
        return ReplayResult(evolution_id=eid, context=ctx, recorded=bundle.context, changes=changes)

    async def _publish_bundle(
        self, bundle: Bundle, eid: str, *, replace: bool
    ) -> tuple[Published, EvolutionContext]:
        self._target(eid)
        published = await publish_bundle(
            await self._client(),
            self.config,
            bundle,
            eid,
            replace=replace,
            msg_prefix=f"imp-{bundle.head[:16]}-{uuid.uuid4().hex[:8]}",
        )
        self._last_seq = max(self._last_seq, published.last_seq)
        return published, await self.get_context(eid)


W = TypeVar("W", bound=Write)


def _body(kind: type[W], **fields: Any) -> W:
    """Build a write body; a check in its constructor becomes an ``InvalidWriteError``."""
    try:
        return kind(**fields)
    except (ValueError, TypeError) as exc:
        raise InvalidWriteError(f"invalid {kind.__struct_config__.tag} write: {exc}") from None


def _point(at: int | datetime | None) -> str:
    if at is None:
        return "now"
    return at.isoformat() if isinstance(at, datetime) else f"seq {at}"


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


_LAST_SEQ_IN_ERROR: Final = re.compile(r"wrong last sequence: (\d+)")


def _current_from(description: str | None) -> int | None:
    match = _LAST_SEQ_IN_ERROR.search(description or "")
    return int(match.group(1)) if match else None


def _publish_error(exc: APIError, kind: WriteKind) -> ContextStoreError:
    if exc.err_code == _WRONG_LAST_SEQUENCE:
        if kind in (WriteKind.CREATE, WriteKind.IMPORT):
            return ConflictError("a context with this evolution_id already exists")
        return ConflictError(f"the context moved on: {exc.description}")
    description = exc.description or ""
    if "size" in description.lower():
        return PayloadTooLargeError(f"JetStream refused the {kind} write: {description}")
    return error_for("internal", f"JetStream refused the {kind} write: {description}")


_default: tuple[asyncio.AbstractEventLoop, SharedContextStore] | None = None


def get_context_store(**kwargs: Any) -> SharedContextStore:
    """The process-wide store for the running event loop, created on first call.

    A closed default store is replaced by a new one; keyword arguments apply only when the
    store is created."""
    global _default
    loop = asyncio.get_running_loop()
    if _default is not None and _default[0] is loop and not _default[1].is_closed:
        return _default[1]
    store = SharedContextStore(**kwargs)
    _default = (loop, store)
    return store


__all__ += ["new_evolution_id"]
