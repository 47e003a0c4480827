"""The pure state transition: stored writes in, contexts out. No NATS here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from actors.core.fold import (
    Applied,
    Limits,
    Rejected,
    StoredWrite,
    StoreState,
    compare,
    measured_after,
    summarize,
)
from actors.core.held import decoded
from contracts import (
    AgentActivity,
    CreateContext,
    DeleteContext,
    ErrorCode,
    EvaluationResults,
    ExternalResearch,
    ImplementationLog,
    ImportContext,
    ImprovementPlan,
    OriginalAnalysis,
    Stage,
    StageUpdate,
    Status,
    Write,
    WriteKind,
    encode,
    write_subject,
)

T0 = datetime(2025, 8, 17, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_write=64 * 1024)


class Log:
    """Builds a write log as the stream would hold it: consecutive sequences."""

    def __init__(self) -> None:
        self.writes: list[StoredWrite] = []

    def add(
        self,
        eid: str,
        body: Write | bytes,
        *,
        kind: str | None = None,
        tenant: str = "default",
        writer: str | None = "agent",
    ) -> StoredWrite:
        if isinstance(body, bytes):
            assert kind is not None
            data = body
        else:
            kind = kind or str(body.__struct_config__.tag)
            data = encode(body)
        seq = len(self.writes) + 1
        write = StoredWrite(
            seq=seq,
            time=T0 + timedelta(seconds=seq),
            subject=f"ctxstore.write.{tenant}.{eid}.{kind}",
            data=data,
            writer=writer,
        )
        self.writes.append(write)
        return write


def replay(writes: list[StoredWrite], limits: Limits = LIMITS) -> StoreState:
    state = StoreState(limits)
    for w in writes:
        state.apply(w)
    return state


def a_full_log() -> Log:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./one", focus_areas=["docs"]))
    log.add("evo-1", StageUpdate(phase=Stage.RESEARCH))
    log.add("evo-1", ExternalResearch(best_practices=["hints"]))
    log.add("evo-1", OriginalAnalysis(files_analyzed=10, improvements=[{"type": "docstring"}]))
    log.add("evo-2", CreateContext(target_path="./two"))
    log.add(
        "evo-1", b'{"type": "original_analysis", "files_analyzed": -1}', kind="original_analysis"
    )
    log.add("evo-1", ImprovementPlan(tasks=[{"id": "t1"}], estimated_impact=0.5))
    log.add("evo-1", AgentActivity(agent="planner", activity="finished"))
    log.add("evo-2", StageUpdate(phase=Stage.PLANNING, status=Status.FAILED, error="boom"))
    log.add("evo-1", ImplementationLog(modified_files=["a.py"]))
    log.add("evo-1", EvaluationResults(goals_achieved=["t1"], success_rate=1.0))
    log.add("evo-1", StageUpdate(phase=Stage.COMPLETED))
    log.add("evo-3", OriginalAnalysis(files_analyzed=1))  # unknown context
    log.add("evo-2", b"{oops", kind="external_research")
    return log


def test_replaying_the_same_log_gives_the_same_state() -> None:
    log = a_full_log()
    first, second = replay(log.writes), replay(log.writes)
    assert first.contexts == second.contexts
    assert first.applied_seq == second.applied_seq == len(log.writes)
    assert msgspec.json.encode(first.contexts[("default", "evo-1")]) == msgspec.json.encode(
        second.contexts[("default", "evo-1")]
    )
    one = first.get("default", "evo-1")
    assert one is not None
    assert one.status is Status.COMPLETED
    assert one.current_phase is Stage.COMPLETED
    assert one.original_analysis["files_analyzed"] == 10
    assert one.external_research["best_practices"] == ["hints"]
    assert one.improvement_plan["tasks"] == [{"id": "t1"}]
    assert one.evaluation_results["success_rate"] == 1.0
    assert one.agents["planner"]["state"] == "finished"
    assert one.version == 12
    assert one.phase_versions == {
        "external_research": 3,
        "original_analysis": 4,
        "improvement_plan": 7,
        "implementation_log": 10,
        "evaluation_results": 11,
    }
    assert len(one.error_log) == 1
    two = first.get("default", "evo-2")
    assert two is not None
    assert (two.status, two.current_phase) == (Status.FAILED, Stage.PLANNING)
    assert two.error_log[0] == "boom"
    assert two.error_log[1].startswith("seq 14 external_research: ")
    assert ("default", "evo-3") not in first.contexts


def test_replay_in_two_halves_equals_replay_at_once() -> None:
    log = a_full_log()
    state = replay(log.writes[:6])
    for w in log.writes[6:]:
        state.apply(w)
    assert state.contexts == replay(log.writes).contexts


def test_a_redelivered_sequence_is_ignored() -> None:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./p"))
    analysis = log.add("evo-1", OriginalAnalysis(files_analyzed=1))
    state = replay(log.writes)
    snapshot = dict(state.contexts)
    assert state.apply(analysis) is None
    # Even different data under an applied sequence changes nothing.
    forged = StoredWrite(
        seq=analysis.seq,
        time=analysis.time,
        subject=analysis.subject,
        data=encode(OriginalAnalysis(files_analyzed=99)),
    )
    assert state.apply(forged) is None
    assert state.apply(log.writes[0]) is None
    assert state.contexts == snapshot
    assert state.applied_seq == 2
    ctx = state.get("default", "evo-1")
    assert ctx is not None
    assert ctx.original_analysis["files_analyzed"] == 1


def test_a_rejection_logs_the_reason_and_moves_the_version_only() -> None:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./p"))
    log.add("evo-1", OriginalAnalysis(files_analyzed=1, metrics={"m": 1}))
    state = replay(log.writes)
    before = state.get("default", "evo-1")
    bad = log.add(
        "evo-1",
        b'{"type": "original_analysis", "files_analyzed": "ten"}',
        kind="original_analysis",
    )
    outcome = state.apply(bad)
    assert isinstance(outcome, Rejected)
    assert outcome.code is ErrorCode.INVALID
    assert "$.files_analyzed" in outcome.reason
    assert outcome.evolution_id == "evo-1"
    remembered = state.outcome(bad.seq)
    assert remembered is not None
    assert (remembered.applied, remembered.code, remembered.reason) == (
        False,
        outcome.code,
        outcome.reason,
    )
    assert remembered.evolution_id == "evo-1"
    assert remembered.version == bad.seq
    analysis = state.outcome(2)
    assert analysis is not None
    assert analysis.applied
    after = state.get("default", "evo-1")
    assert before is not None
    assert after is not None
    assert after.original_analysis == before.original_analysis
    assert after.phase_versions == before.phase_versions
    assert after.status == before.status
    assert after.version == bad.seq
    assert after.updated_at == bad.time
    assert after.error_log == [f"seq 3 original_analysis: {outcome.reason}"]
    assert outcome.context is not None
    assert decoded(outcome.context) == after


@pytest.mark.parametrize(
    ("kind", "data", "code", "names"),
    [
        (
            "original_analysis",
            b'{"type": "original_analysis", "files_analyzed": -1}',
            "invalid",
            "files_analyzed",
        ),
        (
            "improvement_plan",
            b'{"type": "improvement_plan", "estimated_impact": 2}',
            "invalid",
            "estimated_impact",
        ),
        (
            "evaluation_results",
            b'{"type": "evaluation_results", "success_rate": 1.5}',
            "invalid",
            "success_rate",
        ),
        (
            "external_research",
            b'{"type": "external_research", "patterns": [{"applicability": 2}]}',
            "invalid",
            "applicability",
        ),
        (
            "original_analysis",
            b'{"type": "original_analysis", "files_analyzed": 1, "x": 1}',
            "invalid",
            "`x`",
        ),
        (
            "original_analysis",
            b'{"type": "stage", "phase": "research"}',
            "invalid",
            "does not match",
        ),
        ("nonsense", b'{"type": "stage", "phase": "research"}', "invalid", "unknown write kind"),
        ("original_analysis", b"x" * (64 * 1024 + 1), "too_large", "exceeds"),
        ("create", b'{"type": "create", "target_path": "./again"}', "conflict", "already exists"),
        ("create", b'{"type": "create", "target_path": ""}', "invalid", "target_path"),
        ("import", b'{"type": "import", "target_path": "./i"}', "invalid", "created_at"),
    ],
)
def test_every_kind_of_invalid_write_is_rejected_with_its_reason(
    kind: str, data: bytes, code: str, names: str
) -> None:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./p"))
    state = replay(log.writes)
    outcome = state.apply(log.add("evo-1", data, kind=kind))
    assert isinstance(outcome, Rejected)
    assert outcome.code == code
    assert names in outcome.reason
    ctx = state.get("default", "evo-1")
    assert ctx is not None
    assert ctx.target_path == "./p"
    assert ctx.phase_versions == {}
    assert names in ctx.error_log[-1]


def test_a_write_to_an_unknown_context_is_rejected_without_creating_it() -> None:
    log = Log()
    outcome = replay([]).apply(log.add("evo-x", OriginalAnalysis(files_analyzed=1)))
    assert isinstance(outcome, Rejected)
    assert outcome.code is ErrorCode.NOT_FOUND
    assert outcome.context is None


def test_a_malformed_subject_is_rejected() -> None:
    state = StoreState(LIMITS)
    bad = StoredWrite(seq=1, time=T0, subject="ctxstore.write.default.a.b.stage", data=b"{}")
    outcome = state.apply(bad)
    assert isinstance(outcome, Rejected)
    assert outcome.code is ErrorCode.INVALID
    assert state.applied_seq == 1
    assert state.contexts == {}


def test_phase_writes_never_overwrite_other_phases() -> None:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./p"))
    log.add("evo-1", ExternalResearch(best_practices=["a"]))
    log.add("evo-1", OriginalAnalysis(files_analyzed=2))
    log.add("evo-1", ExternalResearch(best_practices=["b"]))
    ctx = replay(log.writes).get("default", "evo-1")
    assert ctx is not None
    assert ctx.external_research["best_practices"] == ["b"]
    assert ctx.original_analysis["files_analyzed"] == 2
    assert ctx.phase_versions == {"external_research": 4, "original_analysis": 3}


def test_newest_context_tenants_and_delete() -> None:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./1"))
    log.add("evo-2", CreateContext(target_path="./2"))
    log.add("evo-9", CreateContext(target_path="./other"), tenant="other")
    state = replay(log.writes)
    newest = state.get("default", None)
    assert newest is not None
    assert newest.evolution_id == "evo-2"
    other = state.get("other", None)
    assert other is not None
    assert other.tenant == "other"
    assert state.get("other", "evo-1") is None
    assert [c.evolution_id for c in state.of_tenant("default")] == ["evo-1", "evo-2"]
    outcome = state.apply(log.add("evo-2", DeleteContext(reason="done")))
    assert isinstance(outcome, Applied)
    assert outcome.context is None
    assert state.get("default", "evo-2") is None
    relinked = state.get("default", None)
    assert relinked is not None
    assert relinked.evolution_id == "evo-1"
    state.apply(log.add("evo-1", DeleteContext()))
    assert state.get("default", None) is None


def test_stage_updates_set_status() -> None:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./p"))
    state = replay(log.writes)
    state.apply(log.add("evo-1", StageUpdate(phase=Stage.IMPLEMENTATION)))
    ctx = state.get("default", "evo-1")
    assert ctx is not None
    assert (ctx.current_phase, ctx.status) == (Stage.IMPLEMENTATION, Status.RUNNING)
    state.apply(log.add("evo-1", StageUpdate(phase=Stage.COMPLETED)))
    ctx = state.get("default", "evo-1")
    assert ctx is not None
    assert ctx.status is Status.COMPLETED
    state.apply(
        log.add("evo-1", StageUpdate(phase=Stage.EVALUATION, status=Status.FAILED, error="e"))
    )
    ctx = state.get("default", "evo-1")
    assert ctx is not None
    assert (ctx.current_phase, ctx.status, ctx.error_log) == (
        Stage.EVALUATION,
        Status.FAILED,
        ["e"],
    )


def test_capacity_refuses_new_contexts_only() -> None:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./1"))
    log.add("evo-2", CreateContext(target_path="./2"))
    log.add("evo-1", OriginalAnalysis(files_analyzed=1))
    state = replay(log.writes, Limits(max_write=64 * 1024, max_contexts=1))
    rejected = state.outcome(2)
    assert rejected is not None
    assert not rejected.applied
    assert rejected.code is ErrorCode.CAPACITY
    assert state.get("default", "evo-2") is None
    ctx = state.get("default", "evo-1")
    assert ctx is not None
    assert ctx.original_analysis["files_analyzed"] == 1


def test_import_creates_and_replaces_only_when_asked() -> None:
    created = T0 - timedelta(days=3)
    body = ImportContext(
        target_path="./imp",
        created_at=created,
        improvement_plan={"tasks": [{"id": "t"}]},
        status=Status.COMPLETED,
        current_phase=Stage.COMPLETED,
        error_log=["old error"],
    )
    log = Log()
    log.add("evo-i", body)
    state = replay(log.writes)
    ctx = state.get("default", "evo-i")
    assert ctx is not None
    assert ctx.created_at == created
    assert ctx.improvement_plan == {"tasks": [{"id": "t"}]}
    assert (ctx.status, ctx.error_log) == (Status.COMPLETED, ["old error"])
    again = state.apply(log.add("evo-i", msgspec.structs.replace(body, target_path="./x")))
    assert isinstance(again, Rejected)
    assert again.code is ErrorCode.CONFLICT
    forced = msgspec.structs.replace(body, target_path="./x", replace=True)
    assert isinstance(state.apply(log.add("evo-i", forced)), Applied)
    ctx = state.get("default", "evo-i")
    assert ctx is not None
    assert ctx.target_path == "./x"


def test_the_comparisons_after_is_the_last_measured_state() -> None:
    log = {
        "rollback_points": [
            {"id": "checkpoint-1", "state": {"metrics": {"complexity": 9}}},
            {"id": "checkpoint-2", "state": {"metrics": {"complexity": 3}, "tests": {"runs": 1}}},
            {"id": "checkpoint-3"},
        ]
    }
    assert measured_after(log) == {"metrics": {"complexity": 3}, "tests": {"runs": 1}}
    assert measured_after({}) == {}
    assert measured_after({"rollback_points": "nonsense"}) == {}


def test_summary_and_comparison_read_the_context() -> None:
    state = replay(a_full_log().writes)
    ctx = state.get("default", "evo-1")
    held = state.held("default", "evo-1")
    assert ctx is not None
    assert held is not None
    comparison = compare(held)
    assert comparison.before == ctx.original_analysis
    assert comparison.plan == ctx.improvement_plan
    # after is the state measured after implementation (kept with the last rollback point).
    assert comparison.after == measured_after(ctx.implementation_log)
    assert comparison.implementation == ctx.implementation_log
    assert comparison.research == ctx.external_research
    summary = summarize(held)
    assert summary.phases == [
        "original_analysis",
        "external_research",
        "improvement_plan",
        "implementation_log",
        "evaluation_results",
    ]
    assert summary.errors == 1
    assert summary.version == ctx.version


def test_subjects_built_by_contracts_are_what_the_state_parses() -> None:
    log = Log()
    log.add("evo-1", CreateContext(target_path="./p"))
    state = replay(log.writes)
    write = StoredWrite(
        seq=2,
        time=T0,
        subject=write_subject("default", "evo-1", WriteKind.IMPLEMENTATION_LOG),
        data=encode(ImplementationLog(modified_files=["a.py"])),
    )
    assert isinstance(state.apply(write), Applied)
