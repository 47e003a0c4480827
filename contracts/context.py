"""The context and the read models derived from it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from contracts.vocabulary import Stage, Status, Timestamp

__all__ = ["Comparison", "ContextSummary", "EvolutionContext"]


# Not tracked by the garbage collector (``gc=False``): it holds only JSON data, which cannot
# refer back to it, and the store holds many of them.
class EvolutionContext(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Everything one evolution knows. ``version`` is the stream sequence of the last write
    that changed it (a rejected write that logs an error changes it too); ``phase_versions``
    the sequence of each phase's last write. Phase fields hold the fields of their last
    phase write (without ``type``); an empty object means not written yet. ``agents`` maps an
    agent's name to its last activity (``state``, ``at``, ``detail``)."""

    evolution_id: str
    created_at: Timestamp
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
    updated_at: Timestamp | None = None
    tenant: str = "default"
    phase_versions: dict[str, int] = {}
    agents: dict[str, dict[str, Any]] = {}


class _ReadModel(msgspec.Struct, frozen=True, kw_only=True):
    """A typed reply that also reads as the dict the spec describes (``summary["status"]``,
    ``comparison["before"]``): its fields are its keys. ``as_dict()`` copies it into one."""

    def __getitem__(self, key: str) -> Any:
        if key in self.__struct_fields__:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.__struct_fields__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__struct_fields__)

    def keys(self) -> tuple[str, ...]:
        return self.__struct_fields__

    def as_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


class ContextSummary(_ReadModel, frozen=True, kw_only=True):
    """One context in a list: ``phases`` are the phases written so far, ``errors`` the
    length of its error log."""

    evolution_id: str
    created_at: Timestamp
    target_path: str
    focus_areas: list[str]
    status: Status
    current_phase: Stage
    version: int
    phases: list[str]
    errors: int


class Comparison(_ReadModel, frozen=True, kw_only=True):
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
