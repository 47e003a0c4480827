"""What the console reads from the store, through the client only.

``Console`` holds one ``SharedContextStore`` per tenant it has been asked about (a client
speaks for one tenant), answers the pages' and the GraphQL API's reads, and fetches whole
contexts only where a summary is not enough (a success rate lives in
``evaluation_results.success_rate``), with a bound on how many it asks for at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from actors.client import (
    ContextNotFoundError,
    InvalidWriteError,
    OutcomeWatch,
    SharedContextStore,
)
from contracts import (
    DEFAULT_TENANT,
    Comparison,
    ContextSummary,
    EvolutionContext,
    Stage,
    Status,
    SubjectError,
    check_token,
)
from contracts.history import ContextDiff, HistoryEntry

__all__ = ["Console", "EvolutionFilter", "EvolutionRow", "MetricRow", "metric_rows", "success_rate"]

FETCH_CONCURRENCY: Final = 8
"""How many whole contexts the console asks the store for at once, across all requests."""
MAX_TENANTS: Final = 32
"""How many tenants (one client each) one console serves; more is an error, not a leak."""


def success_rate(ctx: EvolutionContext) -> float | None:
    """The evaluation's success rate, or None before the evaluation wrote one."""
    value = ctx.evaluation_results.get("success_rate")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class EvolutionFilter:
    """Which evolutions to list. ``target`` matches the target path exactly,
    ``target_contains`` as a case-insensitive substring. The success-rate bounds keep only
    evaluated evolutions (those with a success rate): ``success_below`` is exclusive,
    ``success_at_least`` inclusive."""

    status: Status | None = None
    phase: Stage | None = None
    target: str | None = None
    target_contains: str | None = None
    success_below: float | None = None
    success_at_least: float | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @property
    def needs_context(self) -> bool:
        return self.success_below is not None or self.success_at_least is not None

    def keeps_summary(self, s: ContextSummary) -> bool:
        if self.status is not None and s.status != self.status:
            return False
        if self.phase is not None and s.current_phase != self.phase:
            return False
        if self.target is not None and s.target_path != self.target:
            return False
        if self.target_contains and self.target_contains.lower() not in s.target_path.lower():
            return False
        if self.created_after is not None and s.created_at <= self.created_after:
            return False
        return self.created_before is None or s.created_at < self.created_before

    def keeps_context(self, ctx: EvolutionContext) -> bool:
        rate = success_rate(ctx)
        if not self.needs_context:
            return True
        if rate is None:
            return False
        if self.success_below is not None and not rate < self.success_below:
            return False
        return self.success_at_least is None or rate >= self.success_at_least


@dataclass(frozen=True, slots=True)
class EvolutionRow:
    """One evolution as a list shows it: its summary, and its context when fetched."""

    tenant: str
    summary: ContextSummary
    context: EvolutionContext | None = None

    @property
    def evolution_id(self) -> str:
        return self.summary.evolution_id

    @property
    def success_rate(self) -> float | None:
        return None if self.context is None else success_rate(self.context)


@dataclass(frozen=True, slots=True)
class MetricRow:
    name: str
    before: Any
    after: Any
    delta: Any


def metric_rows(comparison: Comparison, evaluation: dict[str, Any]) -> list[MetricRow]:
    """The metrics delta: the evaluation's ``metrics_comparison`` (before, after, delta) when
    there is one, metric by metric in the order it wrote them; else the comparison's own
    before (the original analysis) against its after (measured after implementation), with
    the delta of each number; before any implementation, the original metrics alone."""
    measured = evaluation.get("metrics_comparison")
    if isinstance(measured, dict) and measured:
        sides: list[dict[str, Any]] = []
        for key in ("before", "after", "delta"):
            side = measured.get(key)
            sides.append(side if isinstance(side, dict) else {})
    else:
        before, after = comparison.before.get("metrics"), comparison.after.get("metrics")
        before = before if isinstance(before, dict) else {}
        after = after if isinstance(after, dict) else {}
        delta = {
            name: round(after[name] - value, 6)
            for name, value in before.items()
            if _number(value) and _number(after.get(name))
        }
        sides = [before, after, delta]
    names: dict[str, None] = {}
    for side in sides:
        names.update(dict.fromkeys(side))
    return [MetricRow(n, sides[0].get(n), sides[1].get(n), sides[2].get(n)) for n in names]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Console:
    """The console's view of a store: one client per tenant, opened on first use.

    ``open_store(tenant)`` makes the (unopened) client for a tenant. Every read raises one of
    ``contracts.errors``: a bad tenant or version is an ``InvalidWriteError``, an unknown
    evolution a ``ContextNotFoundError``."""

    def __init__(
        self,
        open_store: Callable[[str], SharedContextStore],
        *,
        default_tenant: str = DEFAULT_TENANT,
        tenants: Iterable[str] = (),
        concurrency: int = FETCH_CONCURRENCY,
    ) -> None:
        self._open_store = open_store
        self.default_tenant = self.check_tenant(default_tenant)
        self._known = {self.default_tenant: None} | {self.check_tenant(t): None for t in tenants}
        self._stores: dict[str, SharedContextStore] = {}
        self._fetches = asyncio.Semaphore(concurrency)
        self.closing = asyncio.Event()
        """Set by ``aclose``: live streams end when it is."""

    @property
    def tenants(self) -> list[str]:
        """The tenants given at start, then those asked about, in that order."""
        return list(self._known)

    @staticmethod
    def check_tenant(tenant: str) -> str:
        try:
            return check_token(tenant, "tenant")
        except SubjectError as exc:
            raise InvalidWriteError(str(exc)) from None

    def tenant(self, tenant: str | None) -> str:
        return self.default_tenant if not tenant else self.check_tenant(tenant)

    def store(self, tenant: str | None = None) -> SharedContextStore:
        name = self.tenant(tenant)
        store = self._stores.get(name)
        if store is None:
            if len(self._stores) >= MAX_TENANTS:
                raise InvalidWriteError(
                    f"this console already serves {MAX_TENANTS} tenants; "
                    "restart it to look at others"
                )
            store = self._stores[name] = self._open_store(name)
            self._known[name] = None
        return store

    async def aclose(self) -> None:
        self.closing.set()
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            with contextlib.suppress(Exception):
                await store.aclose()

    # -- reads -----------------------------------------------------------------------------

    async def summaries(self, tenant: str | None = None) -> list[ContextSummary]:
        """Every context of the tenant, newest first."""
        listed = await self.store(tenant).get_all_contexts()
        return sorted(listed, key=lambda s: (s.created_at, s.evolution_id), reverse=True)

    async def evolutions(
        self,
        tenant: str | None = None,
        where: EvolutionFilter = EvolutionFilter(),
        *,
        with_context: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[EvolutionRow]:
        """Evolutions of a tenant that pass the filter, newest first, ``offset``/``limit``
        applied after filtering. Contexts are fetched (``with_context``, or a filter on the
        success rate) only for evolutions the summary filters kept."""
        name = self.tenant(tenant)
        kept = [s for s in await self.summaries(name) if where.keeps_summary(s)]
        if not where.needs_context:
            page = kept[offset:] if limit is None else kept[offset : offset + limit]
            if not with_context:
                return [EvolutionRow(name, s) for s in page]
            contexts = await self.contexts(name, [s.evolution_id for s in page])
            return [EvolutionRow(name, s, contexts.get(s.evolution_id)) for s in page]
        contexts = await self.contexts(name, [s.evolution_id for s in kept])
        rows = [
            EvolutionRow(name, s, ctx)
            for s in kept
            if (ctx := contexts.get(s.evolution_id)) is not None and where.keeps_context(ctx)
        ]
        return rows[offset:] if limit is None else rows[offset : offset + limit]

    async def contexts(
        self, tenant: str | None, evolution_ids: Sequence[str]
    ) -> dict[str, EvolutionContext]:
        """The contexts of these evolutions, at most ``concurrency`` requests at once (for
        the whole console); one pruned meanwhile is left out."""
        store = self.store(tenant)
        found: dict[str, EvolutionContext] = {}

        async def fetch(eid: str) -> None:
            async with self._fetches:
                with contextlib.suppress(ContextNotFoundError):
                    found[eid] = await store.get_context(eid)

        async with asyncio.TaskGroup() as group:
            for eid in dict.fromkeys(evolution_ids):
                group.create_task(fetch(eid))
        return found

    async def context(
        self, tenant: str | None, evolution_id: str, at: int | datetime | None = None
    ) -> EvolutionContext:
        async with self._fetches:
            return await self.store(tenant).context(evolution_id).get(at=at)

    async def history(self, tenant: str | None, evolution_id: str) -> list[HistoryEntry]:
        return await self.store(tenant).context(evolution_id).history()

    async def comparison(self, tenant: str | None, evolution_id: str) -> Comparison:
        return await self.store(tenant).context(evolution_id).comparison()

    async def diff(
        self, tenant: str | None, evolution_id: str, a: int | datetime, b: int | datetime | None
    ) -> ContextDiff:
        return await self.store(tenant).context(evolution_id).diff(a, b)

    def watch(self, tenant: str | None, evolution_id: str | None = None) -> OutcomeWatch:
        """Applied and rejected writes from now on: of one evolution, or of the tenant."""
        return self.store(tenant).watch_outcomes(evolution_id)
