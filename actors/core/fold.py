"""The store's state as a pure function of the write log.

``StoreState.apply(message)`` is the only way state changes: it decodes one stored write,
decides what it does to its context (``evolve``, pure, no I/O) and records the outcome.
Replaying the same messages in stream order always rebuilds the same state, which is what
restart recovery, time travel and replay tests rely on.

Decisions worth knowing:
- A rejected write leaves phase data, status and stage untouched, but its reason is appended
  to the context's ``error_log`` and ``version`` moves to its sequence: the context did change,
  and its version stays equal to the last stream sequence among its subjects, which is what
  the server's expected-last-subject-sequence check compares against.
- A sequence at or below ``applied_seq`` is a redelivery and is ignored.
- ``max_contexts``: a create (or import) that would exceed it prunes the finished contexts
  (status completed or failed) that were created earliest (in stream order), one per missing
  place, inside this pure transition: replaying the log prunes the same contexts at the same
  write. ``Applied.pruned`` lists them (the actor announces each as a ``ContextPruned``
  event). With nothing finished to prune, the create is rejected with ``CAPACITY``. A pruned
  context's writes stay in the stream (audit trail, history, export).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, get_args

import msgspec

from actors.core.chunks import Assembled, Chunks, OpenWrite, Refused
from actors.core.held import (
    PHASES,
    HeldContext,
    decoded,
    decoded_comparison,
    hold,
    holding,
    measured_after,
    phase_json,
    unhold,
    written_phases,
)
from contracts import (
    PHASE_WRITES,
    AgentActivity,
    Comparison,
    ContextSummary,
    CreateContext,
    Decoders,
    DeleteContext,
    ErrorCode,
    EvaluationResults,
    EvolutionContext,
    ExternalResearch,
    ImplementationLog,
    ImportContext,
    ImprovementPlan,
    OriginalAnalysis,
    Stage,
    StageUpdate,
    Status,
    SubjectError,
    Write,
    WriteKind,
    WriteSubject,
    role_of,
    writer_name,
)
from contracts.framing import WritePart, unpack

__all__ = [
    "ERROR_LOG_LIMIT",
    "OUTCOMES_KEPT",
    "Applied",
    "Held",
    "Limits",
    "Outcome",
    "Rejected",
    "Rejection",
    "StateImage",
    "StoreState",
    "StoredWrite",
    "WriteOutcome",
    "compare",
    "evolve",
    "measured_after",
    "recorded_time",
    "stamp_time",
    "summarize",
]

# A context keeps its last this many error_log entries (stage errors, rejected writes).
ERROR_LOG_LIMIT = 1000
OUTCOMES_KEPT: Final = 10_000  # outcomes of the latest writes, for the outcome query
REASON_KEPT: Final = 1_000  # characters of a rejection reason: reasons quote what was sent
_KINDS = frozenset(WriteKind)
# Enum lookups by value cost microseconds each; these dicts cost nanoseconds (hot path).
_KIND_OF: dict[str, WriteKind] = {k.value: k for k in WriteKind}
# A phase write's field and its place in ``phase_versions`` (an enum's .value costs more).
_PHASE_SLOT: dict[type, tuple[str, int]] = {
    t: (p.value, PHASES.index(p)) for p, t in PHASE_WRITES.items()
}
_TAG_OF: dict[type, str] = {t: str(t.__struct_config__.tag) for t in get_args(Write)}


@dataclass(frozen=True, slots=True)
class Limits:
    max_write: int  # the largest write, its JSON body decoded
    max_contexts: int | None = None


# The records below are built per write (several per write at tens of thousands a second):
# msgspec Structs, whose construction costs a tenth of a frozen dataclass's (which sets each
# field through object.__setattr__). Not tracked by the garbage collector: they form no
# cycles.
class StoredWrite(msgspec.Struct, frozen=True, gc=False):
    """One message of the write stream, as the state needs it.

    ``time`` is the stream's timestamp, or for a write re-published by an import or replay
    the time it was originally recorded (``recorded_time``): that time, not the stream's,
    is the write's time for the state (``created_at``, ``updated_at``), so an imported
    context equals its original."""

    seq: int
    time: datetime
    subject: str
    data: bytes
    writer: str | None = None
    stored: datetime | None = None  # the stream's time, when ``time`` is a recorded one
    part: WritePart | None = None  # framing: a chunk, an abort, or a compressed write

    @property
    def stored_time(self) -> datetime:
        return self.time if self.stored is None else self.stored

    @classmethod
    def received(
        cls,
        seq: int,
        stamp_ns: int,
        subject: str,
        data: bytes,
        writer: str | None,
        recorded: str | None,
        part: WritePart | None = None,
    ) -> StoredWrite:
        """A write as the stream delivered it: ``stamp_ns`` is the stream's time, ``recorded``
        the ``Ctxstore-Recorded-Time`` header of a re-published write (or None). A recorded
        time never lies in the future of the stream's own; a writer's name is cut to
        ``WRITER_MAX`` characters (events and history carry it)."""
        stored = stamp_time(stamp_ns)
        when = None if recorded is None else recorded_time(recorded)
        # On a role's subject the server vouches for the writer: the role, not the header.
        role = role_of(subject)
        return cls(
            seq=seq,
            time=stored if when is None else min(when, stored),
            subject=subject,
            data=data,
            writer=role if role is not None else writer_name(writer),
            stored=stored,
            part=part,
        )


def recorded_time(raw: str | None) -> datetime | None:
    """The recorded time of a re-published write (the ``Ctxstore-Recorded-Time`` header's
    value); None if absent or not an aware RFC 3339 time."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def stamp_time(stamp_ns: int) -> datetime:
    """A stream timestamp (ns since the epoch) as nats-py computes ``msg.metadata.timestamp``,
    so every path (replay, live, history) gives the same value."""
    return datetime.fromtimestamp(stamp_ns / 1_000_000_000.0, UTC)


class Rejection(Exception):
    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Applied(msgspec.Struct, frozen=True, gc=False):
    write: StoredWrite  # for a write in chunks: the whole write, at its last chunk's seq
    tenant: str
    kind: WriteKind
    context: HeldContext | None  # None after a delete
    pruned: tuple[HeldContext, ...] = ()  # contexts removed to make room (max_contexts)


class Rejected(msgspec.Struct, frozen=True, gc=False):
    write: StoredWrite
    tenant: str
    evolution_id: str
    kind: str
    code: ErrorCode
    reason: str
    context: HeldContext | None  # the context with the error logged, if it exists


class Held(msgspec.Struct, frozen=True, gc=False):
    """A chunk of a write that is not finished yet (or of one the store does not hold): the
    write is applied, or refused, at its last chunk. Nothing to announce."""

    write: StoredWrite
    context: HeldContext | None  # the context, its version moved to this chunk's seq


Outcome = Applied | Rejected | Held


def _touch(ctx: HeldContext, write: StoredWrite, **changes: object) -> HeldContext:
    return msgspec.structs.replace(ctx, version=write.seq, updated_at=write.time, **changes)


_NO_ERRORS: Final[list[str]] = []


def _interned(words: list[str]) -> list[str]:
    # Focus areas are a small vocabulary repeated in every context: hold each word once.
    return [sys.intern(w) for w in words]


def evolve(
    ctx: HeldContext | None,
    body: Write,
    write: StoredWrite,
    tenant: str,
    evolution_id: str,
) -> HeldContext | None:
    """What ``body`` makes of ``ctx``. Pure; raises ``Rejection``."""
    match body:
        case CreateContext() | ImportContext():
            return _created(ctx, body, write, tenant, evolution_id)
    if ctx is None:
        raise Rejection(ErrorCode.NOT_FOUND, f"no context {evolution_id} in tenant {tenant}")
    return _changed(ctx, body, write)


def _created(
    ctx: HeldContext | None,
    body: CreateContext | ImportContext,
    write: StoredWrite,
    tenant: str,
    evolution_id: str,
) -> HeldContext:
    """A context made by a create, or by an import (which may replace one)."""
    if ctx is not None and not (isinstance(body, ImportContext) and body.replace):
        hint = " (import with replace to overwrite)" if isinstance(body, ImportContext) else ""
        raise Rejection(ErrorCode.CONFLICT, f"context {evolution_id} already exists{hint}")
    if isinstance(body, CreateContext):
        return HeldContext(
            evolution_id=evolution_id,
            tenant=tenant,
            created_at=write.time,
            updated_at=write.time,
            target_path=body.target_path,
            focus_areas=_interned(body.focus_areas),
            version=write.seq,
            # A shared empty: every change below builds a new list, never mutating it,
            # and a store of many contexts holds it once.
            error_log=_NO_ERRORS,
        )
    return HeldContext(
        evolution_id=evolution_id,
        tenant=tenant,
        created_at=body.created_at,
        updated_at=write.time,
        target_path=body.target_path,
        focus_areas=_interned(body.focus_areas),
        original_analysis=holding(body.original_analysis),
        external_research=holding(body.external_research),
        improvement_plan=holding(body.improvement_plan),
        implementation_log=holding(body.implementation_log),
        evaluation_results=holding(body.evaluation_results),
        status=body.status,
        current_phase=body.current_phase,
        error_log=list(body.error_log),
        version=write.seq,
    )


def _changed(ctx: HeldContext, body: Write, write: StoredWrite) -> HeldContext | None:
    """What a write to an existing context makes of it (None: deleted)."""
    match body:
        case StageUpdate(phase=stage, status=status, error=error):
            if status is None:
                status = Status.COMPLETED if stage is Stage.COMPLETED else Status.RUNNING
            log = ctx.error_log if error is None else [*ctx.error_log, error][-ERROR_LOG_LIMIT:]
            return _touch(ctx, write, current_phase=stage, status=status, error_log=log)
        case DeleteContext():
            return None
        case AgentActivity(agent=agent, activity=activity, detail=detail):
            # No stream sequence here: a replayed or imported evolution must read the same.
            record = {"state": activity, "at": write.time.isoformat()}
            if detail is not None:
                record["detail"] = detail
            agents: dict[str, Any] = msgspec.json.decode(unhold(ctx.agents))
            agents[agent] = record
            return _touch(ctx, write, agents=holding(agents))
        case (
            OriginalAnalysis()
            | ExternalResearch()
            | ImprovementPlan()
            | ImplementationLog()
            | EvaluationResults()
        ):
            name, at = _PHASE_SLOT[type(body)]
            versions = ctx.phase_versions
            return _touch(
                ctx,
                write,
                phase_versions=(*versions[:at], write.seq, *versions[at + 1 :]),
                **{name: hold(phase_json(body))},
            )
    raise Rejection(ErrorCode.INVALID, f"unsupported write {type(body).__name__}")


class WriteOutcome(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What became of one write, as the outcome query answers it; never its body."""

    seq: int
    tenant: str
    evolution_id: str
    applied: bool
    version: int = 0  # the context's version after the write; 0: no such context
    code: ErrorCode | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StateImage:
    """Everything a ``StoreState`` holds, as plain values: what a snapshot saves and loads."""

    limits: Limits
    applied_seq: int
    contexts: list[HeldContext]  # in creation order: pruning depends on it
    latest: dict[str, str]
    outcomes: list[WriteOutcome]
    touched: list[tuple[str, str, float]]  # tenant, id, stream time of its last write
    open_writes: list[OpenWrite] = field(default_factory=list)  # unfinished chunked writes


@dataclass(slots=True)
class StoreState:
    """All contexts of all tenants, and how far the stream has been applied.

    Contexts are held as ``HeldContext`` (phases as encoded, maybe compressed, JSON): ``held``
    gives one as held, ``get`` one decoded. Besides the contexts it keeps the outcome of the
    last ``OUTCOMES_KEPT`` writes (what the outcome query answers: applied or why not, never
    a body), per context the stream time of its last write (what TTL judges by: a time a
    writer can set, such as an import's recorded time, must never make a live context look
    idle), and the chunks of unfinished writes (``chunks``)."""

    limits: Limits
    contexts: dict[tuple[str, str], HeldContext] = field(default_factory=dict)
    applied_seq: int = 0
    chunks: Chunks = field(default_factory=Chunks)
    _latest: dict[str, str] = field(default_factory=dict)
    _outcomes: OrderedDict[int, WriteOutcome] = field(default_factory=OrderedDict)
    _touched: dict[tuple[str, str], float] = field(default_factory=dict)

    def held(self, tenant: str, evolution_id: str | None) -> HeldContext | None:
        if evolution_id is None:
            evolution_id = self._latest.get(tenant)
            if evolution_id is None:
                return None
        return self.contexts.get((tenant, evolution_id))

    def get(self, tenant: str, evolution_id: str | None) -> EvolutionContext | None:
        """The context decoded: objects of the caller's own."""
        ctx = self.held(tenant, evolution_id)
        return None if ctx is None else decoded(ctx)

    def of_tenant(self, tenant: str) -> Iterator[HeldContext]:
        return (c for (t, _), c in self.contexts.items() if t == tenant)

    def outcome(self, seq: int) -> WriteOutcome | None:
        """What became of the write at ``seq``, if it is among the last ``OUTCOMES_KEPT``
        applied; None for a sequence not applied yet or no longer remembered."""
        return self._outcomes.get(seq)

    def idle(self, ttl_seconds: float, now: datetime) -> list[HeldContext]:
        """The contexts whose last write reached the stream more than ``ttl_seconds`` ago."""
        cutoff = now.timestamp() - ttl_seconds
        return [self.contexts[k] for k, t in self._touched.items() if t < cutoff]

    def image(self) -> StateImage:
        """The whole state as plain values (shallow copies: contexts are immutable; the
        unfinished writes are copied, as they change in place)."""
        return StateImage(
            limits=self.limits,
            applied_seq=self.applied_seq,
            contexts=list(self.contexts.values()),
            latest=dict(self._latest),
            outcomes=list(self._outcomes.values()),
            touched=[(t, e, at) for (t, e), at in self._touched.items()],
            open_writes=[
                msgspec.structs.replace(w, parts=list(w.parts)) for w in self.chunks.oldest()
            ],
        )

    @classmethod
    def from_image(cls, image: StateImage) -> StoreState:
        state = cls(image.limits, applied_seq=image.applied_seq)
        state.contexts = {(c.tenant, c.evolution_id): c for c in image.contexts}
        state._latest = dict(image.latest)
        state._outcomes = OrderedDict((o.seq, o) for o in image.outcomes)
        state._touched = {(t, e): at for t, e, at in image.touched}
        state.chunks = Chunks(list(image.open_writes))
        return state

    def apply(self, write: StoredWrite) -> Outcome | None:
        """Apply one stored write; ``None`` for a redelivery of an applied sequence."""
        if write.seq <= self.applied_seq:
            return None
        self.applied_seq = write.seq
        # Applied and rejected writes remember their outcome where they are decided.
        return self._apply(write) if write.part is None else self._apply_part(write, write.part)

    def _remember(self, outcome: WriteOutcome) -> None:
        outcomes = self._outcomes
        outcomes[outcome.seq] = outcome
        if len(outcomes) > OUTCOMES_KEPT:
            outcomes.popitem(last=False)

    def _apply_part(self, write: StoredWrite, part: WritePart) -> Outcome:
        """A message with framing headers: a compressed write, a chunk, or an abort."""
        try:
            where = WriteSubject.parse(write.subject).check()
        except SubjectError as exc:
            return self._reject(write, "", "", "", ErrorCode.INVALID, str(exc))
        if part.error is not None:
            return self._reject(
                write, where.tenant, where.evolution_id, where.kind, ErrorCode.INVALID, part.error
            )
        if part.write_id is None:  # a whole write in one message
            return self._apply(write, encoding=part.encoding)
        if part.abort is not None:
            self.chunks.close(write.subject, part.write_id)
            return self._reject(
                write,
                where.tenant,
                where.evolution_id,
                where.kind,
                ErrorCode.INCOMPLETE,
                part.abort or f"write {part.write_id} dropped unfinished",
            )
        taken = self.chunks.take(
            write.subject,
            part,
            write.data,
            write.seq,
            write.stored_time.timestamp(),
            self.limits.max_write,
        )
        match taken:
            case None:
                return self._moved(write, where)
            case Refused(code=code, reason=reason):
                return self._reject(
                    write, where.tenant, where.evolution_id, where.kind, code, reason
                )
            case Assembled(data=data, encoding=encoding, size=size):
                whole = msgspec.structs.replace(write, data=data, part=None)
                return self._apply(whole, encoding=encoding, size=size)

    def _moved(self, write: StoredWrite, where: WriteSubject) -> Held:
        """A held chunk changes nothing but the context's version: its version stays the last
        sequence among its subjects, which is what guarded writes are checked against."""
        key = (where.tenant, where.evolution_id)
        ctx = self.contexts.get(key)
        if ctx is not None:
            ctx = msgspec.structs.replace(ctx, version=write.seq)
            self.contexts[key] = ctx
            self._touched[key] = write.stored_time.timestamp()
        return Held(write, ctx)

    def _apply(
        self, write: StoredWrite, *, encoding: str | None = None, size: int | None = None
    ) -> Applied | Rejected:
        try:
            where = WriteSubject.parse(write.subject)
            key = (where.tenant, where.evolution_id)
            ctx = self.contexts.get(key)
            if ctx is None:  # a held context's tokens were checked when it was made
                where.check()
        except SubjectError as exc:
            return self._reject(write, "", "", "", ErrorCode.INVALID, str(exc))
        prune: list[tuple[str, str]] | None = None
        try:
            if encoding is not None:
                write = msgspec.structs.replace(
                    write, data=self._unpacked(write.data, encoding, size)
                )
            body = self._decode(write, where.kind)
            new = evolve(ctx, body, write, where.tenant, where.evolution_id)
            if ctx is None and new is not None:
                prune = self._make_room()
        except Rejection as rej:
            return self._reject(
                write, where.tenant, where.evolution_id, where.kind, rej.code, rej.reason
            )
        if new is None:
            self.contexts.pop(key, None)
            self._touched.pop(key, None)
            self.chunks.close_context(write.subject[: write.subject.rfind(".") + 1])
            if self._latest.get(where.tenant) == where.evolution_id:
                self._relink_latest(where.tenant)
        else:
            self.contexts[key] = new
            # The stream's time (not a recorded one): what TTL judges idleness by.
            self._touched[key] = (write.stored or write.time).timestamp()
            if ctx is None:
                self._latest[where.tenant] = where.evolution_id
        pruned = tuple(self._prune(k) for k in prune) if prune else ()
        outcomes = self._outcomes  # _remember, inline: once per write
        outcomes[write.seq] = WriteOutcome(
            write.seq, where.tenant, where.evolution_id, True, write.seq
        )
        if len(outcomes) > OUTCOMES_KEPT:
            outcomes.popitem(last=False)
        return Applied(
            write=write, tenant=where.tenant, kind=_KIND_OF[where.kind], context=new, pruned=pruned
        )

    def _unpacked(self, data: bytes, encoding: str, size: int | None) -> bytes:
        try:
            body = unpack(data, encoding, self.limits.max_write)
        except OverflowError:
            raise Rejection(
                ErrorCode.TOO_LARGE,
                f"the write decodes to more than the limit of {self.limits.max_write} bytes",
            ) from None
        except ValueError as exc:
            raise Rejection(ErrorCode.INVALID, str(exc)) from None
        if size is not None and len(body) != size:
            raise Rejection(
                ErrorCode.INCOMPLETE,
                f"the write decodes to {len(body)} bytes, its first chunk said {size}",
            )
        return body

    def _decode(self, write: StoredWrite, kind: str) -> Write:
        if len(write.data) > self.limits.max_write:
            raise Rejection(
                ErrorCode.TOO_LARGE,
                f"write of {len(write.data)} bytes exceeds the limit of "
                f"{self.limits.max_write} bytes",
            )
        if kind not in _KINDS:
            raise Rejection(
                ErrorCode.INVALID,
                f"unknown write kind {kind!r}; expected one of {', '.join(sorted(_KINDS))}",
            )
        try:
            body = Decoders.write.decode(write.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise Rejection(ErrorCode.INVALID, f"invalid {kind} write: {exc}") from None
        tag = _TAG_OF[type(body)]
        if tag != kind:
            raise Rejection(
                ErrorCode.INVALID, f"body type {tag!r} does not match the subject's kind {kind!r}"
            )
        return body

    def _make_room(self) -> list[tuple[str, str]]:
        """The contexts to prune so one more fits: the earliest created finished ones."""
        limit = self.limits.max_contexts
        if limit is None or len(self.contexts) < limit:
            return []
        needed = len(self.contexts) - limit + 1
        # Dicts keep insertion order: the order contexts were created in the stream.
        victims = [k for k, c in self.contexts.items() if c.status.finished][:needed]
        if len(victims) < needed:
            raise Rejection(
                ErrorCode.CAPACITY,
                f"the store holds its maximum of {limit} contexts and none is finished "
                "(completed or failed), so none can be pruned",
            )
        return victims

    def _prune(self, key: tuple[str, str]) -> HeldContext:
        ctx = self.contexts.pop(key)
        self._touched.pop(key, None)
        if self._latest.get(key[0]) == key[1]:
            self._relink_latest(key[0])
        return ctx

    def _reject(
        self,
        write: StoredWrite,
        tenant: str,
        evolution_id: str,
        kind: str,
        code: ErrorCode,
        reason: str,
    ) -> Rejected:
        ctx = self.contexts.get((tenant, evolution_id))
        if ctx is not None:
            entry = f"seq {write.seq} {kind}: {reason}"
            ctx = _touch(ctx, write, error_log=[*ctx.error_log, entry][-ERROR_LOG_LIMIT:])
            self.contexts[(tenant, evolution_id)] = ctx
            self._touched[(tenant, evolution_id)] = write.stored_time.timestamp()
        if len(reason) > REASON_KEPT:
            reason = f"{reason[:REASON_KEPT]}... ({len(reason)} characters)"
        version = 0 if ctx is None else ctx.version
        self._remember(WriteOutcome(write.seq, tenant, evolution_id, False, version, code, reason))
        return Rejected(write, tenant, evolution_id, kind, code, reason, ctx)

    def _relink_latest(self, tenant: str) -> None:
        newest = max(self.of_tenant(tenant), key=lambda c: (c.created_at, c.version), default=None)
        if newest is None:
            self._latest.pop(tenant, None)
        else:
            self._latest[tenant] = newest.evolution_id


def summarize(ctx: HeldContext) -> ContextSummary:
    return ContextSummary(
        evolution_id=ctx.evolution_id,
        created_at=ctx.created_at,
        target_path=ctx.target_path,
        focus_areas=ctx.focus_areas,
        status=ctx.status,
        current_phase=ctx.current_phase,
        version=ctx.version,
        phases=written_phases(ctx),
        errors=len(ctx.error_log),
    )


def compare(ctx: HeldContext) -> Comparison:
    """The three-way comparison, decoded (the query replies with ``comparison_reply``)."""
    return decoded_comparison(ctx)
