"""Events the actor publishes for every write it consumed: applied or rejected."""

from __future__ import annotations

from datetime import datetime

import msgspec

from contracts.vocabulary import Stage, Status

__all__ = ["Event", "WriteApplied", "WriteRejected"]


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    tenant: str
    evolution_id: str
    kind: str
    seq: int
    time: datetime
    writer: str | None = None


class WriteApplied(_Event, frozen=True, kw_only=True, tag="applied"):
    version: int
    status: Status | None = None
    current_phase: Stage | None = None
    size: int = 0


class WriteRejected(_Event, frozen=True, kw_only=True, tag="rejected"):
    code: str
    reason: str


Event = WriteApplied | WriteRejected
