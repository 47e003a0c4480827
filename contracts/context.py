"""The context and the read models derived from it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from contracts.vocabulary import Stage, Status

__all__ = ["Comparison", "ContextSummary", "EvolutionContext"]


class EvolutionContext(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Everything one evolution knows. ``version`` is the stream sequence of the last write
    that changed it; phase fields are plain dicts, as agents read them.

    Not tracked by the garbage collector (``gc=False``): it holds only JSON data, which cannot
    refer back to it, and the store holds many of them."""

    evolution_id: str
    created_at: datetime
    target_path: str
    focus_areas: list[str] = []
    original_analysis: dict[str, Any] = {}
    external_research: dict[str, Any] = {}
    improvement_plan: dict[str, Any] = {}
    implementation_log: dict[str, Any] = {}
    evaluation_results: dict[str, Any] = {}
    status: Status = Status.PENDING
    current_phase: Stage = Stage.INITIALIZED
    error_log: list[str] = []
    version: int = 0
    updated_at: datetime | None = None
    tenant: str = "default"
    phase_versions: dict[str, int] = {}
    agents: dict[str, dict[str, Any]] = {}


class ContextSummary(msgspec.Struct, frozen=True, kw_only=True):
    evolution_id: str
    created_at: datetime
    target_path: str
    focus_areas: list[str]
    status: Status
    current_phase: Stage
    version: int
    phases: list[str]
    errors: int


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """The spec's three-way comparison: before (original analysis), plan, after (the state
    measured after implementation), and what was implemented. Research rides along."""

    evolution_id: str
    version: int
    before: dict[str, Any]
    plan: dict[str, Any]
    after: dict[str, Any]
    implementation: dict[str, Any]
    research: dict[str, Any]
    status: Status
    current_phase: Stage

    def as_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
