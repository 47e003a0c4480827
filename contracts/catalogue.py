"""What travels on each subject: the message types of every write, event and query, and what
each means to a client. Pure data, read by ``contracts.schema`` to write the JSON Schema and
AsyncAPI documents, and by the store actor for its endpoints' metadata."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import msgspec

from contracts.context import Comparison, EvolutionContext
from contracts.events import ContextPruned, WriteApplied, WriteRejected
from contracts.queries import (
    CompareRequest,
    ContextList,
    ExportRequest,
    GetRequest,
    HistoryPage,
    HistoryRequest,
    ListRequest,
    OutcomeReply,
    OutcomeRequest,
    StatsRequest,
)
from contracts.stats import StatsReply
from contracts.subjects import Query
from contracts.vocabulary import Stage, Status, WriteKind
from contracts.writes import (
    AgentActivity,
    CreateContext,
    DeleteContext,
    EvaluationResults,
    ExternalResearch,
    ImplementationLog,
    ImportContext,
    ImprovementPlan,
    OriginalAnalysis,
    StageUpdate,
)

__all__ = [
    "DUPLICATE_WINDOW_S",
    "EVENTS",
    "QUERIES",
    "WRITES",
    "EventDoc",
    "QueryDoc",
    "WriteDoc",
    "query_doc",
]

DUPLICATE_WINDOW_S: Final = 120.0
"""The write stream's duplicate window: how long a ``Nats-Msg-Id`` is remembered."""


@dataclass(frozen=True, slots=True)
class WriteDoc:
    kind: WriteKind
    body: type[msgspec.Struct]
    summary: str
    example: msgspec.Struct


@dataclass(frozen=True, slots=True)
class EventDoc:
    tag: str  # the event's ``type``
    body: type[msgspec.Struct]
    summary: str


@dataclass(frozen=True, slots=True)
class QueryDoc:
    op: Query
    request: type[msgspec.Struct]
    reply: type[msgspec.Struct]
    summary: str
    description: str
    example: msgspec.Struct


_PHASE = (
    "Replaces the whole phase: the phase's field of the context becomes this body's fields "
    "(without 'type'), so a field left out takes its default, it is not kept from an earlier "
    "write."
)

WRITES: Final[tuple[WriteDoc, ...]] = (
    WriteDoc(
        WriteKind.CREATE,
        CreateContext,
        "Create a context under the subject's evolution id, which the writer picks. Send "
        "Nats-Expected-Last-Subject-Sequence: 0 to have JetStream refuse an id already used.",
        CreateContext(target_path="./my-project", focus_areas=["documentation"]),
    ),
    WriteDoc(
        WriteKind.STAGE,
        StageUpdate,
        "Move the evolution to a stage (current_phase); status follows (running, or "
        "completed for the completed stage) unless given; error is appended to error_log.",
        StageUpdate(phase=Stage.RESEARCH),
    ),
    WriteDoc(
        WriteKind.ORIGINAL_ANALYSIS,
        OriginalAnalysis,
        f"The code analysis. {_PHASE}",
        OriginalAnalysis(
            files_analyzed=10,
            metrics={"complexity": 3.5, "coverage": 75},
            issues=[{"type": "code_smell", "location": "file:42"}],
            improvements=[{"type": "docstring", "priority": "high"}],
        ),
    ),
    WriteDoc(
        WriteKind.EXTERNAL_RESEARCH,
        ExternalResearch,
        f"The research. {_PHASE}",
        ExternalResearch(
            best_practices=["Use type hints"],
            references=[{"url": "https://peps.python.org/pep-0257/", "title": "PEP 257"}],
            patterns=[{"name": "Factory", "applicability": 0.8}],
        ),
    ),
    WriteDoc(
        WriteKind.IMPROVEMENT_PLAN,
        ImprovementPlan,
        f"The plan. {_PHASE}",
        ImprovementPlan(
            tasks=[{"id": "task-1", "type": "docstring"}],
            priorities=["task-1"],
            dependencies={"task-1": []},
            estimated_impact=0.7,
        ),
    ),
    WriteDoc(
        WriteKind.IMPLEMENTATION_LOG,
        ImplementationLog,
        f"What was done. {_PHASE}",
        ImplementationLog(
            modified_files=["agent.py"],
            changes=[{"file": "agent.py", "type": "docstring_added"}],
            rollback_points=[{"id": "checkpoint-1"}],
        ),
    ),
    WriteDoc(
        WriteKind.EVALUATION_RESULTS,
        EvaluationResults,
        f"The evaluation. {_PHASE}",
        EvaluationResults(
            goals_achieved=["task-1"],
            metrics_comparison={"before": {"coverage": 75}, "after": {"coverage": 80}},
            success_rate=0.85,
        ),
    ),
    WriteDoc(
        WriteKind.AGENT,
        AgentActivity,
        "An agent started, finished or failed its work; kept in the context's agents.",
        AgentActivity(agent="planner", activity="started"),
    ),
    WriteDoc(
        WriteKind.IMPORT,
        ImportContext,
        "A whole context, recreated under the subject's id (replace: overwrite an existing one).",
        ImportContext(
            target_path="./my-project",
            created_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
            focus_areas=["documentation"],
            status=Status.RUNNING,
            current_phase=Stage.PLANNING,
        ),
    ),
    WriteDoc(
        WriteKind.DELETE,
        DeleteContext,
        "Remove the context; its writes stay in history.",
        DeleteContext(reason="superseded"),
    ),
)

EVENTS: Final[tuple[EventDoc, ...]] = (
    EventDoc("applied", WriteApplied, "The store applied a write."),
    EventDoc("rejected", WriteRejected, "The store rejected a write; the context is unchanged."),
    EventDoc("pruned", ContextPruned, "The store removed a context (max_contexts or TTL)."),
)

_NEWEST = "evolution_id null or absent: the tenant's most recently created context."

_EXAMPLE_ID: Final = "evo-20260105093000-1a2b3c4d5e6f"

QUERIES: Final[tuple[QueryDoc, ...]] = (
    QueryDoc(
        Query.GET,
        GetRequest,
        EvolutionContext,
        "One context.",
        f"Reply: the context, every field present. {_NEWEST}",
        GetRequest(evolution_id=_EXAMPLE_ID, min_seq=5),
    ),
    QueryDoc(
        Query.LIST,
        ListRequest,
        ContextList,
        "Summaries of every context of the tenant.",
        "Reply: {contexts, applied_seq}, contexts oldest first.",
        ListRequest(),
    ),
    QueryDoc(
        Query.COMPARE,
        CompareRequest,
        Comparison,
        "The three-way comparison of one context.",
        "Reply: before (original_analysis), plan (improvement_plan), after "
        "(evaluation_results), implementation (implementation_log) and research "
        f"(external_research), with version, status and current_phase. {_NEWEST}",
        CompareRequest(evolution_id=_EXAMPLE_ID),
    ),
    QueryDoc(
        Query.EXPORT,
        ExportRequest,
        EvolutionContext,
        "One context, for export.",
        "Reply: the context, as get answers it; not a bundle. A bundle file (the context, "
        "every write and a hash chain; contracts/bundle.py) is built by the client from the "
        f"context's history (ctxstore export). {_NEWEST}",
        ExportRequest(evolution_id=_EXAMPLE_ID),
    ),
    QueryDoc(
        Query.OUTCOME,
        OutcomeRequest,
        OutcomeReply,
        "What became of the write stored at a sequence.",
        "Send min_seq equal to seq, so that the store answers once it has judged that write "
        "(with min_seq 0, a write not applied yet is reported as applied). Reply: applied "
        "true (evolution_id empty, version = seq) or false with code and reason; the store "
        "remembers its latest 10,000 rejections.",
        OutcomeRequest(seq=7, min_seq=7),
    ),
    QueryDoc(
        Query.HISTORY,
        HistoryRequest,
        HistoryPage,
        "One page of a context's write history.",
        "Reply: the writes with seq >= from_seq (at most limit, and fewer rather than exceed "
        "the server's max_payload), each applied or rejected, and next_seq, the from_seq of "
        "the next page (null: no more). The history of a deleted context is still there; an "
        "evolution id with no write at all is not_found. The store reads it from the write "
        "stream, up to the sequence it has applied.",
        HistoryRequest(evolution_id=_EXAMPLE_ID, limit=100),
    ),
    QueryDoc(
        Query.STATS,
        StatsRequest,
        StatsReply,
        "The figures of the store actor that answers.",
        "Store-wide, for any tenant token. Reply: the actor's id and role, the sequence it "
        "has applied and its metric families, the same figures as its Prometheus endpoint "
        "(ctxstore serve --metrics-port): name, type (counter, gauge, histogram), help and "
        "samples with labels. With a leader and standbys each answers for itself.",
        StatsRequest(),
    ),
)

_BY_OP: Final = {q.op: q for q in QUERIES}


def query_doc(op: Query) -> QueryDoc:
    return _BY_OP[op]
