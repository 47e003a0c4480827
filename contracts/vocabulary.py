"""The closed vocabularies of the store: phases of data, stages of an evolution, statuses."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

__all__ = ["Phase", "Stage", "Status", "Timestamp", "Token", "WriteKind"]

Timestamp = Annotated[
    datetime, msgspec.Meta(tz=True, description="RFC 3339 date-time with a zone (UTC: 'Z').")
]
"""A date-time with a zone: every time the store writes is one (UTC)."""


class Phase(StrEnum):
    """A phase whose results an agent writes into the context (one field each)."""

    ORIGINAL_ANALYSIS = "original_analysis"
    EXTERNAL_RESEARCH = "external_research"
    IMPROVEMENT_PLAN = "improvement_plan"
    IMPLEMENTATION_LOG = "implementation_log"
    EVALUATION_RESULTS = "evaluation_results"


class Stage(StrEnum):
    """Where an evolution is: the context's ``current_phase``."""

    INITIALIZED = "initialized"
    RESEARCH = "research"
    PLANNING = "planning"
    IMPLEMENTATION = "implementation"
    EVALUATION = "evaluation"
    COMPLETED = "completed"


class Status(StrEnum):
    """The context's lifecycle status."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED)


class WriteKind(StrEnum):
    """The last token of a write subject; equal to the ``type`` tag of the write's body."""

    CREATE = "create"
    STAGE = "stage"
    IMPORT = "import"
    DELETE = "delete"
    AGENT = "agent"
    ORIGINAL_ANALYSIS = "original_analysis"
    EXTERNAL_RESEARCH = "external_research"
    IMPROVEMENT_PLAN = "improvement_plan"
    IMPLEMENTATION_LOG = "implementation_log"
    EVALUATION_RESULTS = "evaluation_results"


Token = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="A subject token: 1-64 letters, digits, '_' or '-'.",
    ),
]
