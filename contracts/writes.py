"""Writes: the bodies published on ``ctxstore.write.<tenant>.<evolution_id>.<kind>``.

Each body is a JSON object tagged by ``"type"``, which must equal the subject's kind token.
Unknown fields, wrong types, negative counts and ratios outside 0..1 are rejected, and the
error names the field and the reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from contracts.vocabulary import Phase, Stage, Status, Timestamp, WriteKind

__all__ = [
    "PHASE_WRITES",
    "AgentActivity",
    "CreateContext",
    "DeleteContext",
    "EvaluationResults",
    "ExternalResearch",
    "ImplementationLog",
    "ImportContext",
    "ImprovementPlan",
    "OriginalAnalysis",
    "PhaseWrite",
    "StageUpdate",
    "Write",
    "phase_data",
]

Count = Annotated[int, msgspec.Meta(ge=0)]
Ratio = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Text = Annotated[str, msgspec.Meta(max_length=65_536)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
JSONObject = dict[str, Any]
# Checked in ExternalResearch.__post_init__; stated here for the JSON Schema.
Pattern = Annotated[
    JSONObject,
    msgspec.Meta(
        extra_json_schema={
            "properties": {
                "applicability": {"type": ["number", "null"], "minimum": 0, "maximum": 1}
            }
        }
    ),
]


class _Write(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", kw_only=True
):
    pass


class CreateContext(_Write, frozen=True, kw_only=True, tag=WriteKind.CREATE.value):
    """Create the context named by the subject's evolution id (the writer picks the id)."""

    target_path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    focus_areas: Annotated[list[Name], msgspec.Meta(max_length=64)] = []


class StageUpdate(_Write, frozen=True, kw_only=True, tag=WriteKind.STAGE.value):
    """Move the evolution to a stage; optionally set the status and log an error."""

    phase: Stage
    status: Status | None = None
    error: Text | None = None


class AgentActivity(_Write, frozen=True, kw_only=True, tag=WriteKind.AGENT.value):
    """An agent started, finished or failed its work on the context (kept in ``ctx.agents``)."""

    agent: Name
    activity: Literal["started", "finished", "failed"]
    detail: Text | None = None


class DeleteContext(_Write, frozen=True, kw_only=True, tag=WriteKind.DELETE.value):
    """Remove the context from the store; its writes stay in the stream (history)."""

    reason: Text = ""


class OriginalAnalysis(_Write, frozen=True, kw_only=True, tag=Phase.ORIGINAL_ANALYSIS.value):
    """Phase write: the code analysis. It replaces the whole phase: a field left out takes its
    default, it is not kept from an earlier write."""

    files_analyzed: Count
    metrics: JSONObject = {}
    issues: list[JSONObject] = []
    improvements: list[JSONObject] = []


class ExternalResearch(_Write, frozen=True, kw_only=True, tag=Phase.EXTERNAL_RESEARCH.value):
    """Phase write: the research. It replaces the whole phase: a field left out takes its
    default, it is not kept from an earlier write."""

    best_practices: list[Text] = []
    references: list[JSONObject] = []
    patterns: list[Pattern] = []

    def __post_init__(self) -> None:
        for i, pattern in enumerate(self.patterns):
            value = pattern.get("applicability")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"patterns[{i}].applicability must be a number in 0..1")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"patterns[{i}].applicability must be within 0..1, got {value}")


class ImprovementPlan(_Write, frozen=True, kw_only=True, tag=Phase.IMPROVEMENT_PLAN.value):
    """Phase write: the plan. It replaces the whole phase: a field left out takes its
    default, it is not kept from an earlier write."""

    tasks: list[JSONObject] = []
    priorities: list[Name] = []
    dependencies: dict[str, list[str]] = {}
    estimated_impact: Ratio = 0.0


class ImplementationLog(_Write, frozen=True, kw_only=True, tag=Phase.IMPLEMENTATION_LOG.value):
    """Phase write: what was implemented. It replaces the whole phase: a field left out takes
    its default, it is not kept from an earlier write."""

    modified_files: list[Annotated[str, msgspec.Meta(max_length=4096)]] = []
    changes: list[JSONObject] = []
    rollback_points: list[JSONObject] = []


class EvaluationResults(_Write, frozen=True, kw_only=True, tag=Phase.EVALUATION_RESULTS.value):
    """Phase write: the evaluation. It replaces the whole phase: a field left out takes its
    default, it is not kept from an earlier write."""

    goals_achieved: list[Any] | JSONObject = []
    metrics_comparison: JSONObject = {}
    success_rate: Ratio = 0.0


class ImportContext(_Write, frozen=True, kw_only=True, tag=WriteKind.IMPORT.value):
    """A whole context, as exported, recreated under the subject's evolution id."""

    target_path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    created_at: Timestamp
    focus_areas: list[Name] = []
    original_analysis: JSONObject = {}
    external_research: JSONObject = {}
    improvement_plan: JSONObject = {}
    implementation_log: JSONObject = {}
    evaluation_results: JSONObject = {}
    status: Status = Status.PENDING
    current_phase: Stage = Stage.INITIALIZED
    error_log: list[str] = []
    replace: bool = False


PhaseWrite = (
    OriginalAnalysis | ExternalResearch | ImprovementPlan | ImplementationLog | EvaluationResults
)
Write = CreateContext | StageUpdate | DeleteContext | ImportContext | AgentActivity | PhaseWrite

PHASE_WRITES: dict[Phase, type[PhaseWrite]] = {
    Phase.ORIGINAL_ANALYSIS: OriginalAnalysis,
    Phase.EXTERNAL_RESEARCH: ExternalResearch,
    Phase.IMPROVEMENT_PLAN: ImprovementPlan,
    Phase.IMPLEMENTATION_LOG: ImplementationLog,
    Phase.EVALUATION_RESULTS: EvaluationResults,
}


def phase_data(write: PhaseWrite) -> JSONObject:
    """The write's fields as the plain dict the context holds: ``ctx.improvement_plan["tasks"]``."""
    return msgspec.structs.asdict(write)
