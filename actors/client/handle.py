"""``ContextHandle``: one evolution's context, bound to its id (``store.context(eid)``).

Every read and write of a handle goes to its evolution, whatever else the client does, and
returns a typed result: the context, the comparison, the history, a ``WriteReceipt``. The
spec's methods on ``SharedContextStore`` are a thin layer over handles.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import msgspec

from contracts import (
    AgentActivity,
    Comparison,
    EvaluationResults,
    EvolutionContext,
    ExternalResearch,
    ImplementationLog,
    ImprovementPlan,
    OriginalAnalysis,
    Stage,
    StageUpdate,
    Status,
    Write,
)
from contracts.errors import ContextNotFoundError, InvalidWriteError
from contracts.history import ContextDiff, HistoryEntry

if TYPE_CHECKING:
    from actors.client.context_store import SharedContextStore
    from actors.client.watch import OutcomeWatch, Watch

__all__ = ["ContextHandle", "WriteReceipt"]


class WriteReceipt(msgspec.Struct, frozen=True):
    """What a write returns: its context, its stream sequence (the context's version once
    it applied), and whether the server had it already (a retry with the same idempotency
    key inside the duplicate window). Always true, as the spec's ``bool`` was."""

    evolution_id: str
    seq: int
    duplicate: bool = False


W = TypeVar("W", bound=Write)


class ContextHandle:
    """The context of one evolution::

        ctx = store.context(evolution_id)
        await ctx.store_original_analysis(files_analyzed=3, metrics={}, issues=[], improvements=[])
        context = await ctx.get()

    Cheap to make and to drop (it holds the store and the id). Writes take
    ``expected_version=`` (write only if the context is still at that version, else
    ``ConflictError`` with ``current_version``) and ``idempotency_key=`` (see
    ``SharedContextStore``).
    """

    __slots__ = ("_store", "evolution_id")

    def __init__(self, store: SharedContextStore, evolution_id: str) -> None:
        self._store: Final = store
        self.evolution_id: Final = evolution_id

    def __repr__(self) -> str:
        return f"ContextHandle({self.evolution_id!r})"

    # -- reads ---------------------------------------------------------------------------

    async def get(self, *, at: int | datetime | None = None) -> EvolutionContext:
        """The context now, or as it was at ``at`` (a stream sequence, or an aware datetime),
        rebuilt from its writes in the stream."""
        if at is None:
            return await self._store._get(self.evolution_id)
        past = (await self._store._timeline(self.evolution_id)).context_at(at)
        if past is None:
            raise ContextNotFoundError(f"context {self.evolution_id} did not exist at {_point(at)}")
        return past

    async def comparison(self) -> Comparison:
        """before (original analysis) / plan / after (evaluation results) / implementation,
        and the research."""
        return await self._store._compare(self.evolution_id)

    async def history(self) -> list[HistoryEntry]:
        """Every write to the context, in stream order, applied or rejected (with why):
        sequence, time, kind (phase), writer, size."""
        return (await self._store._timeline(self.evolution_id)).entries()

    async def diff(self, a: int | datetime, b: int | datetime | None = None) -> ContextDiff:
        """What changed between the context at ``a`` and at ``b`` (default: now), field by
        field; versions are stream sequences, or aware datetimes."""
        from actors.core.timeline import diff_contexts

        timeline = await self._store._timeline(self.evolution_id)
        sides = []
        for point in (a, b):
            ctx = timeline.context_at(point)
            if ctx is None:
                raise ContextNotFoundError(
                    f"context {self.evolution_id} did not exist at {_point(point)}"
                )
            sides.append(ctx)
        return ContextDiff(
            evolution_id=self.evolution_id,
            a=sides[0].version,
            b=sides[1].version,
            changes=diff_contexts(sides[0], sides[1]),
        )

    def watch(self, phases: Iterable[str] | None = None, *, from_start: bool = False) -> Watch:
        """Its applied writes as they happen (see ``SharedContextStore.watch``)."""
        return self._store._watch(self.evolution_id, phases, from_start=from_start)

    def watch_outcomes(
        self, phases: Iterable[str] | None = None, *, from_start: bool = False
    ) -> OutcomeWatch:
        """Its applied and rejected writes as they happen (see
        ``SharedContextStore.watch_outcomes``)."""
        return self._store._watch(self.evolution_id, phases, from_start=from_start, rejected=True)

    async def export(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write its bundle (see ``SharedContextStore.export_context``); returns the path."""
        return await self._store._export(self.evolution_id, path)

    # -- writes --------------------------------------------------------------------------

    async def write(
        self,
        body: Write,
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        """Publish any write body (``contracts.writes``) to this context. A ``CreateContext``
        is refused (``ConflictError``) when the id exists."""
        return await self._store._write(
            self.evolution_id,
            body,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    async def update_phase(
        self,
        phase: Stage | str,
        *,
        status: Status | str | None = None,
        error: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        """Move the evolution to ``phase`` (sets ``current_phase``; the status follows unless
        given), logging ``error`` if given."""
        try:
            stage = Stage(phase)
            state = None if status is None else Status(status)
        except ValueError as exc:
            raise InvalidWriteError(f"invalid phase or status: {exc}") from None
        body = write_body(StageUpdate, phase=stage, status=state, error=error)
        return await self.write(
            body, expected_version=expected_version, idempotency_key=idempotency_key
        )

    async def mark_failed(self, error: str, *, idempotency_key: str | None = None) -> WriteReceipt:
        """Mark the context failed, keeping its stage, with ``error`` in its error_log."""
        ctx = await self.get()
        return await self.update_phase(
            ctx.current_phase, status=Status.FAILED, error=error, idempotency_key=idempotency_key
        )

    async def record_activity(
        self,
        agent: str,
        activity: Literal["started", "finished", "failed"],
        detail: str | None = None,
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        """Note in the context (``ctx.agents``) and its history that an agent started,
        finished or failed its work."""
        body = write_body(AgentActivity, agent=agent, activity=activity, detail=detail)
        return await self.write(
            body, expected_version=expected_version, idempotency_key=idempotency_key
        )

    async def store_original_analysis(
        self,
        files_analyzed: int,
        metrics: dict[str, Any],
        issues: list[dict[str, Any]],
        improvements: list[dict[str, Any]],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        body = write_body(
            OriginalAnalysis,
            files_analyzed=files_analyzed,
            metrics=metrics,
            issues=issues,
            improvements=improvements,
        )
        return await self.write(
            body, expected_version=expected_version, idempotency_key=idempotency_key
        )

    async def store_external_research(
        self,
        best_practices: list[str],
        references: list[dict[str, Any]],
        patterns: list[dict[str, Any]],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        body = write_body(
            ExternalResearch,
            best_practices=best_practices,
            references=references,
            patterns=patterns,
        )
        return await self.write(
            body, expected_version=expected_version, idempotency_key=idempotency_key
        )

    async def store_improvement_plan(
        self,
        tasks: list[dict[str, Any]],
        priorities: list[str],
        dependencies: dict[str, list[str]],
        estimated_impact: float,
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        body = write_body(
            ImprovementPlan,
            tasks=tasks,
            priorities=priorities,
            dependencies=dependencies,
            estimated_impact=estimated_impact,
        )
        return await self.write(
            body, expected_version=expected_version, idempotency_key=idempotency_key
        )

    async def store_implementation_log(
        self,
        modified_files: list[str],
        changes: list[dict[str, Any]],
        rollback_points: list[dict[str, Any]],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        body = write_body(
            ImplementationLog,
            modified_files=modified_files,
            changes=changes,
            rollback_points=rollback_points,
        )
        return await self.write(
            body, expected_version=expected_version, idempotency_key=idempotency_key
        )

    async def store_evaluation_results(
        self,
        goals_achieved: list[Any] | dict[str, Any],
        metrics_comparison: dict[str, Any],
        success_rate: float,
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReceipt:
        body = write_body(
            EvaluationResults,
            goals_achieved=goals_achieved,
            metrics_comparison=metrics_comparison,
            success_rate=success_rate,
        )
        return await self.write(
            body, expected_version=expected_version, idempotency_key=idempotency_key
        )


def write_body(kind: type[W], **fields: Any) -> W:
    """Build a write body; a check in its constructor becomes an ``InvalidWriteError``."""
    try:
        return kind(**fields)
    except (ValueError, TypeError) as exc:
        raise InvalidWriteError(f"invalid {kind.__struct_config__.tag} write: {exc}") from None


def _point(at: int | datetime | None) -> str:
    if at is None:
        return "now"
    return at.isoformat() if isinstance(at, datetime) else f"seq {at}"
