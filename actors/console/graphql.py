"""The console's GraphQL API at ``/graphql`` (strawberry): queries across evolutions, one
evolution's context, history, comparison and diffs, and a subscription of live writes.

Example: every evolution of one target whose success rate is below 0.5::

    { evolutions(target: "/src/app", successRateBelow: 0.5) { id successRate status } }

Subscriptions use the ``graphql-transport-ws`` protocol (and the older ``graphql-ws``) over a
WebSocket on the same path; ``events`` is fed by the client's ``watch_outcomes()``.
No IDE page is served (it would load scripts from a CDN); POST queries, or GET with
``?query=``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import msgspec
import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.scalars import JSON
from strawberry.types import ExecutionContext, Info

from actors.client import ContextNotFoundError, ContextStoreError, InvalidWriteError
from actors.console.reads import Console, EvolutionFilter, EvolutionRow, metric_rows, success_rate
from contracts import EvolutionContext, Stage, Status, WriteApplied, WriteRejected
from contracts.history import HistoryEntry

__all__ = ["MAX_LIMIT", "graphql_app", "schema"]

log = logging.getLogger("ctxstore.console")

MAX_LIMIT: Final = 1000

StatusType = strawberry.enum(Status, name="Status", description="An evolution's status.")
StageType = strawberry.enum(Stage, name="Stage", description="Where an evolution is.")


@dataclass
class Context:
    """Per request: the console, and the contexts it already fetched."""

    console: Console
    contexts: dict[tuple[str, str], EvolutionContext] = field(default_factory=dict)

    async def context(self, tenant: str, evolution_id: str) -> EvolutionContext:
        key = (tenant, evolution_id)
        ctx = self.contexts.get(key)
        if ctx is None:
            ctx = self.contexts[key] = await self.console.context(tenant, evolution_id)
        return ctx


def _console(info: Info[Context, None]) -> Context:
    return info.context


@strawberry.type(description="One write to an evolution, applied or rejected (with why).")
class HistoryEntryType:
    seq: int
    time: datetime
    stored_at: datetime
    kind: str
    writer: str | None
    size: int
    applied: bool
    version: int = strawberry.field(description="The context's version after this write.")
    stage: str | None = strawberry.field(description="For a stage write: the stage it set.")
    code: str | None
    reason: str | None

    @classmethod
    def of(cls, e: HistoryEntry) -> HistoryEntryType:
        return cls(
            seq=e.seq,
            time=e.time,
            stored_at=e.stored_at,
            kind=e.kind,
            writer=e.writer,
            size=e.size,
            applied=e.applied,
            version=e.version,
            stage=e.stage,
            code=e.code,
            reason=e.reason,
        )


@strawberry.type(description="One field that differs between two versions.")
class ChangeType:
    path: str
    op: str
    before: JSON | None
    after: JSON | None


@strawberry.type(description="What changed in a context between versions a and b.")
class DiffType:
    evolution_id: str
    a: int
    b: int
    changes: list[ChangeType]


@strawberry.type(description="One metric before and after the evolution.")
class MetricType:
    name: str
    before: JSON | None
    after: JSON | None
    delta: JSON | None


@strawberry.type(description="The three-way comparison: before / plan / after.")
class ComparisonType:
    version: int
    before: JSON
    plan: JSON
    after: JSON
    implementation: JSON
    research: JSON
    metrics: list[MetricType]


@strawberry.type(description="A write as the store judged it, live.")
class WriteEventType:
    tenant: str
    evolution_id: str
    seq: int
    time: datetime
    kind: str
    writer: str | None
    applied: bool
    version: int | None
    status: StatusType | None  # type: ignore[valid-type]
    current_phase: StageType | None  # type: ignore[valid-type]
    size: int | None
    code: str | None
    reason: str | None

    @classmethod
    def of(cls, e: WriteApplied | WriteRejected) -> WriteEventType:
        applied = isinstance(e, WriteApplied)
        return cls(
            tenant=e.tenant,
            evolution_id=e.evolution_id,
            seq=e.seq,
            time=e.time,
            kind=e.kind,
            writer=e.writer,
            applied=applied,
            version=e.version if isinstance(e, WriteApplied) else None,
            status=e.status if isinstance(e, WriteApplied) else None,
            current_phase=e.current_phase if isinstance(e, WriteApplied) else None,
            size=e.size if isinstance(e, WriteApplied) else None,
            code=e.code if isinstance(e, WriteRejected) else None,
            reason=e.reason if isinstance(e, WriteRejected) else None,
        )


@strawberry.type(description="An evolution: its summary, and reads of its context.")
class EvolutionType:
    id: str
    tenant: str
    target_path: str
    focus_areas: list[str]
    status: StatusType  # type: ignore[valid-type]
    current_phase: StageType  # type: ignore[valid-type]
    version: int
    created_at: datetime
    phases: list[str] = strawberry.field(description="The phases written so far.")
    errors: int = strawberry.field(description="The length of the error log.")
    _context: strawberry.Private[EvolutionContext | None] = None

    @classmethod
    def of_row(cls, row: EvolutionRow) -> EvolutionType:
        s = row.summary
        return cls(
            id=s.evolution_id,
            tenant=row.tenant,
            target_path=s.target_path,
            focus_areas=list(s.focus_areas),
            status=s.status,
            current_phase=s.current_phase,
            version=s.version,
            created_at=s.created_at,
            phases=list(s.phases),
            errors=s.errors,
            _context=row.context,
        )

    @classmethod
    def of_context(cls, tenant: str, ctx: EvolutionContext) -> EvolutionType:
        phases = [p for p, v in ctx.phase_versions.items() if v]
        return cls(
            id=ctx.evolution_id,
            tenant=tenant,
            target_path=ctx.target_path,
            focus_areas=list(ctx.focus_areas),
            status=ctx.status,
            current_phase=ctx.current_phase,
            version=ctx.version,
            created_at=ctx.created_at,
            phases=phases,
            errors=len(ctx.error_log),
            _context=ctx,
        )

    async def _now(self, info: Info[Context, None]) -> EvolutionContext:
        if self._context is None:
            self._context = await _console(info).context(self.tenant, self.id)
        return self._context

    @strawberry.field(description="evaluation_results.success_rate; null before evaluation.")
    async def success_rate(self, info: Info[Context, None]) -> float | None:
        return success_rate(await self._now(info))

    @strawberry.field(description="The error log: stage errors and rejected writes.")
    async def error_log(self, info: Info[Context, None]) -> list[str]:
        return list((await self._now(info)).error_log)

    @strawberry.field(
        description="The whole context as JSON: now, or as it was at stream sequence `at`."
    )
    async def context(self, info: Info[Context, None], at: int | None = None) -> JSON:
        if at is None:
            ctx = await self._now(info)
        else:
            ctx = await _console(info).console.context(self.tenant, self.id, at)
        return msgspec.to_builtins(ctx)  # type: ignore[no-any-return]

    @strawberry.field(description="Every write, in stream order, applied or rejected.")
    async def history(self, info: Info[Context, None]) -> list[HistoryEntryType]:
        entries = await _console(info).console.history(self.tenant, self.id)
        return [HistoryEntryType.of(e) for e in entries]

    @strawberry.field(description="Before / plan / after, with the metrics delta.")
    async def comparison(self, info: Info[Context, None]) -> ComparisonType:
        console = _console(info).console
        c = await console.comparison(self.tenant, self.id)
        evaluation = (await console.context(self.tenant, self.id)).evaluation_results
        return ComparisonType(
            version=c.version,
            before=JSON(c.before),
            plan=JSON(c.plan),
            after=JSON(c.after),
            implementation=JSON(c.implementation),
            research=JSON(c.research),
            metrics=[
                MetricType(name=m.name, before=m.before, after=m.after, delta=m.delta)
                for m in metric_rows(c, evaluation)
            ],
        )

    @strawberry.field(description="What changed between versions a and b (default: now).")
    async def diff(self, info: Info[Context, None], a: int, b: int | None = None) -> DiffType:
        d = await _console(info).console.diff(self.tenant, self.id, a, b)
        return DiffType(
            evolution_id=d.evolution_id,
            a=d.a,
            b=d.b,
            changes=[
                ChangeType(path=c.path, op=c.op, before=c.before, after=c.after) for c in d.changes
            ],
        )


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidWriteError(f"limit must be 1-{MAX_LIMIT}, not {limit}")
    return limit


@strawberry.type
class Query:
    @strawberry.field(description="The tenants this console knows of.")
    def tenants(self, info: Info[Context, None]) -> list[str]:
        return _console(info).console.tenants

    @strawberry.field(
        description="Evolutions of a tenant, newest first. `target` matches the target path "
        "exactly, `targetContains` as a substring (any case). The success-rate bounds keep "
        "only evaluated evolutions: `successRateBelow` is exclusive, `successRateAtLeast` "
        "inclusive."
    )
    async def evolutions(
        self,
        info: Info[Context, None],
        tenant: str | None = None,
        status: StatusType | None = None,  # type: ignore[valid-type]
        phase: StageType | None = None,  # type: ignore[valid-type]
        target: str | None = None,
        target_contains: str | None = None,
        success_rate_below: float | None = None,
        success_rate_at_least: float | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[EvolutionType]:
        console = _console(info).console
        where = EvolutionFilter(
            status=status,
            phase=phase,
            target=target,
            target_contains=target_contains,
            success_below=success_rate_below,
            success_at_least=success_rate_at_least,
            created_after=created_after,
            created_before=created_before,
        )
        if offset < 0:
            raise InvalidWriteError(f"offset must be at least 0, not {offset}")
        rows = await console.evolutions(tenant, where, offset=offset, limit=_limit(limit))
        return [EvolutionType.of_row(row) for row in rows]

    @strawberry.field(description="One evolution, or null if there is none with this id.")
    async def evolution(
        self, info: Info[Context, None], id: str, tenant: str | None = None
    ) -> EvolutionType | None:
        console = _console(info).console
        name = console.tenant(tenant)
        try:
            ctx = await console.context(name, id)
        except ContextNotFoundError:
            return None
        return EvolutionType.of_context(name, ctx)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Writes as the store judges them, applied or rejected: of one "
        "evolution (`evolutionId`), or of every evolution of the tenant."
    )
    async def events(
        self,
        info: Info[Context, None],
        tenant: str | None = None,
        evolution_id: str | None = None,
    ) -> AsyncGenerator[WriteEventType, None]:
        console = _console(info).console
        async with console.watch(tenant, evolution_id) as watch:
            async for event in watch:
                yield WriteEventType.of(event)


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # The caller gets every error in the reply; the log gets a line for the store's
        # answers (a bad limit, an unknown tenant) and a traceback only for real failures.
        for error in errors:
            if isinstance(error.original_error, ContextStoreError):
                log.info("graphql: %s", error.message)
            else:
                log.error("graphql: %s", error.message, exc_info=error.original_error)


schema: Final = _Schema(query=Query, subscription=Subscription)


class _ConsoleGraphQL(GraphQL[Context, None]):
    def __init__(self, console: Console) -> None:
        super().__init__(schema, graphql_ide=None)
        self._console = console

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(self._console)


def graphql_app(console: Console) -> GraphQL[Context, None]:
    """The ASGI app serving ``schema`` over ``console`` (HTTP and WebSocket)."""
    return _ConsoleGraphQL(console)
