"""Read models of a context's past: its write history and what changed between two versions.

Pure data. ``HistoryEntry`` is one write of the stream as the store judged it; ``ContextDiff``
lists field-level changes between two versions of one context.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts.vocabulary import Timestamp

__all__ = ["Change", "ContextDiff", "HistoryEntry"]


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One write to a context, in stream order.

    ``time`` is when the write was made: the stream's timestamp, or for a write re-published
    by an import or replay, the time it was originally recorded (``stored_at`` is then the
    time this stream stored it). ``kind`` is the subject's last token: a phase name, ``create``,
    ``stage``, ``import`` or ``delete``. ``applied`` is false for a rejected write, with the
    error ``code`` and ``reason`` (rejected writes live in the stream too)."""

    seq: int
    time: Timestamp
    stored_at: Timestamp
    kind: str
    writer: str | None
    size: int
    applied: bool
    version: int = 0  # the context's version after this write (0 if it does not exist)
    stage: str | None = None  # for a stage write: the stage it moved to
    code: str | None = None
    reason: str | None = None


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One difference. ``path`` is dotted with list indexes: ``improvement_plan.tasks[0].id``."""

    path: str
    op: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


class ContextDiff(msgspec.Struct, frozen=True, kw_only=True):
    evolution_id: str
    a: int  # version (stream sequence) of the first side
    b: int
    changes: list[Change]

    @property
    def identical(self) -> bool:
        return not self.changes
