"""The client's whole API against a real store: every method, as an agent uses it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from actors import (
    BundleError,
    ConflictError,
    ContextNotFoundError,
    ContextStoreError,
    InvalidWriteError,
    SharedContextStore,
    StoreActor,
    StoreClosedError,
    get_context_store,
)
from broker import WRITES_STREAM, EmbeddedServer, StoreConfig, connect
from contracts import Stage, Status

ANALYSIS: dict[str, Any] = dict(
    files_analyzed=10,
    metrics={"complexity": 3.5, "coverage": 75},
    issues=[{"type": "code_smell", "location": "file:42"}],
    improvements=[{"type": "docstring", "priority": "high"}],
)
RESEARCH: dict[str, Any] = dict(
    best_practices=["Use type hints", "Add docstrings"],
    references=[{"url": "...", "title": "..."}],
    patterns=[{"name": "Factory", "applicability": 0.8}],
)
PLAN: dict[str, Any] = dict(
    tasks=[{"id": "task-1", "action": "add_docstring"}, {"id": "task-2", "action": "hint"}],
    priorities=["task-1", "task-2"],
    dependencies={"task-2": ["task-1"]},
    estimated_impact=0.7,
)
IMPLEMENTATION: dict[str, Any] = dict(
    modified_files=["agent.py", "planner.py"],
    changes=[{"file": "agent.py", "type": "docstring_added"}],
    rollback_points=[
        {"id": "checkpoint-1", "timestamp": "...", "state": {"metrics": {"complexity": 3.1}}}
    ],
)
EVALUATION: dict[str, Any] = dict(
    goals_achieved=["task-1"],
    metrics_comparison={"before": {"complexity": 3.5}, "after": {"complexity": 3.1}},
    success_rate=0.85,
)


def read_text(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def read_json(path: str | Path) -> Any:
    return json.loads(read_text(path))


async def stream_last_seq(nc: Client) -> int:
    info = await nc.jetstream().stream_info(WRITES_STREAM)
    return int(info.state.last_seq)


async def fill_all_phases(store: SharedContextStore, evolution_id: str | None = None) -> None:
    await store.store_original_analysis(**ANALYSIS, evolution_id=evolution_id)
    await store.store_external_research(**RESEARCH, evolution_id=evolution_id)
    await store.store_improvement_plan(**PLAN, evolution_id=evolution_id)
    await store.store_implementation_log(**IMPLEMENTATION, evolution_id=evolution_id)
    await store.store_evaluation_results(**EVALUATION, evolution_id=evolution_id)


# -- create / get ------------------------------------------------------------------------


async def test_create_context_returns_an_id_that_reads_back(store: SharedContextStore) -> None:
    eid = await store.create_context("./my-project", ["documentation", "complexity"])
    assert store.current_evolution_id == eid
    ctx = await store.get_context(eid)
    assert ctx.evolution_id == eid
    assert ctx.target_path == "./my-project"
    assert ctx.focus_areas == ["documentation", "complexity"]
    assert ctx.status is Status.PENDING
    assert ctx.current_phase is Stage.INITIALIZED
    assert ctx.original_analysis == {}
    assert ctx.evaluation_results == {}
    assert ctx.error_log == []
    assert ctx.version == store.last_seq > 0


async def test_create_context_accepts_a_path_and_a_chosen_id(
    store: SharedContextStore, tmp_path: Path
) -> None:
    eid = await store.create_context(tmp_path, evolution_id="evo-chosen_1")
    assert eid == "evo-chosen_1"
    ctx = await store.get_context()
    assert ctx.target_path == str(tmp_path)
    assert ctx.focus_areas == []


async def test_create_context_with_an_existing_id_raises_conflict(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    await store.create_context("./a", evolution_id="evo-dup")
    before = await stream_last_seq(nc)
    with pytest.raises(ConflictError):
        await store_b.create_context("./b", evolution_id="evo-dup")
    assert await stream_last_seq(nc) == before  # the server refused it: nothing stored
    ctx = await store.get_context("evo-dup")
    assert ctx.target_path == "./a"


async def test_create_context_with_an_invalid_id_raises_invalid_write(
    store: SharedContextStore,
) -> None:
    with pytest.raises(InvalidWriteError):
        await store.create_context("./a", evolution_id="has.dots")


async def test_get_context_by_id_default_current_and_newest_for_fresh_client(
    store: SharedContextStore, config: StoreConfig
) -> None:
    first = await store.create_context("./first")
    second = await store.create_context("./second")
    assert (await store.get_context()).evolution_id == second  # the one it created last
    assert (await store.get_context(first)).target_path == "./first"
    assert (await store.get_context()).evolution_id == second  # a read changes nothing
    store.use(first)
    assert (await store.get_context()).evolution_id == first  # the one chosen with use()
    async with SharedContextStore(config=config, name="fresh") as fresh:
        assert fresh.current_evolution_id is None
        ctx = await fresh.get_context()
        assert ctx.evolution_id == second  # the newest
        assert fresh.current_evolution_id is None  # read, not adopted


async def test_get_context_with_no_context_at_all_raises_not_found(
    store: SharedContextStore,
) -> None:
    with pytest.raises(ContextNotFoundError):
        await store.get_context()


async def test_write_without_any_context_raises(store: SharedContextStore, nc: Client) -> None:
    with pytest.raises(ContextStoreError, match="evolution_id"):
        await store.store_original_analysis(**ANALYSIS)
    with pytest.raises(ContextStoreError, match="evolution_id"):
        await store.update_phase(Stage.RESEARCH)


# -- phases and status -------------------------------------------------------------------


async def test_update_phase_moves_stage_and_status(store: SharedContextStore) -> None:
    eid = await store.create_context("./p")
    receipt = await store.update_phase("research")
    assert receipt  # true, as the spec's bool was
    assert (receipt.evolution_id, receipt.seq) == (eid, store.last_seq)
    ctx = await store.get_context()
    assert (ctx.current_phase, ctx.status) == (Stage.RESEARCH, Status.RUNNING)
    await store.update_phase(Stage.PLANNING, eid)
    ctx = await store.get_context()
    assert (ctx.current_phase, ctx.status) == (Stage.PLANNING, Status.RUNNING)
    await store.update_phase(Stage.COMPLETED)
    ctx = await store.get_context()
    assert (ctx.current_phase, ctx.status) == (Stage.COMPLETED, Status.COMPLETED)
    await store.update_phase("evaluation", status="pending")
    ctx = await store.get_context()
    assert (ctx.current_phase, ctx.status) == (Stage.EVALUATION, Status.PENDING)


@pytest.mark.parametrize(
    ("phase", "status"), [("bogus", None), ("research", "sleeping"), ("", None)]
)
async def test_update_phase_invalid_raises_and_writes_nothing(
    store: SharedContextStore, nc: Client, phase: str, status: str | None
) -> None:
    await store.create_context("./p")
    before = await stream_last_seq(nc)
    with pytest.raises(InvalidWriteError):
        await store.update_phase(phase, status=status)
    assert await stream_last_seq(nc) == before
    ctx = await store.get_context()
    assert ctx.current_phase is Stage.INITIALIZED


async def test_mark_failed_keeps_stage_and_logs_error(store: SharedContextStore) -> None:
    eid = await store.create_context("./p")
    await store.update_phase(Stage.IMPLEMENTATION)
    receipt = await store.mark_failed("RefactorAgent timed out")
    assert receipt
    assert (receipt.evolution_id, receipt.seq) == (eid, store.last_seq)
    ctx = await store.get_context()
    assert ctx.status is Status.FAILED
    assert ctx.current_phase is Stage.IMPLEMENTATION
    assert ctx.error_log == ["RefactorAgent timed out"]


# -- the five phase writes ---------------------------------------------------------------


async def test_store_methods_take_the_spec_keywords_and_read_as_in_the_spec(
    store: SharedContextStore,
) -> None:
    await store.create_context("./p", ["documentation"])
    receipts = [
        await store.store_original_analysis(**ANALYSIS),
        await store.store_external_research(**RESEARCH),
        await store.store_improvement_plan(**PLAN),
        await store.store_implementation_log(**IMPLEMENTATION),
        await store.store_evaluation_results(**EVALUATION),
    ]
    ctx = await store.get_context()
    assert ctx.original_analysis == ANALYSIS
    assert ctx.original_analysis["improvements"] == [{"type": "docstring", "priority": "high"}]
    assert ctx.external_research == RESEARCH
    assert ctx.external_research["best_practices"] == ["Use type hints", "Add docstrings"]
    assert ctx.improvement_plan == PLAN
    assert ctx.improvement_plan["tasks"][0]["id"] == "task-1"
    assert ctx.implementation_log == IMPLEMENTATION
    assert ctx.evaluation_results == EVALUATION
    assert ctx.evaluation_results["success_rate"] == 0.85
    seqs = [r.seq for r in receipts]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5
    assert all(r.evolution_id == ctx.evolution_id and not r.duplicate for r in receipts)
    assert ctx.phase_versions == {
        "original_analysis": seqs[0],
        "external_research": seqs[1],
        "improvement_plan": seqs[2],
        "implementation_log": seqs[3],
        "evaluation_results": seqs[4],
    }
    assert ctx.version == seqs[-1]


async def test_a_phase_write_replaces_only_its_own_phase(store: SharedContextStore) -> None:
    await store.create_context("./p")
    await fill_all_phases(store)
    await store.store_original_analysis(
        files_analyzed=3, metrics={}, issues=[], improvements=[{"type": "x"}]
    )
    ctx = await store.get_context()
    assert ctx.original_analysis["files_analyzed"] == 3
    assert ctx.external_research == RESEARCH
    assert ctx.improvement_plan == PLAN


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("store_original_analysis", {**ANALYSIS, "files_analyzed": -1}),
        ("store_improvement_plan", {**PLAN, "estimated_impact": 1.5}),
        ("store_evaluation_results", {**EVALUATION, "success_rate": -0.1}),
        pytest.param(
            "store_external_research",
            {**RESEARCH, "patterns": [{"name": "Factory", "applicability": 2}]},
        ),
    ],
)
async def test_invalid_phase_values_raise_before_anything_is_sent(
    store: SharedContextStore, nc: Client, method: str, kwargs: dict[str, Any]
) -> None:
    await store.create_context("./p")
    before = await stream_last_seq(nc)
    with pytest.raises(InvalidWriteError):
        await getattr(store, method)(**kwargs)
    assert await stream_last_seq(nc) == before
    ctx = await store.get_context()
    assert ctx.phase_versions == {}


# -- comparison and listing --------------------------------------------------------------


async def test_get_comparison_data_gives_before_plan_after_implementation(
    store: SharedContextStore,
) -> None:
    eid = await store.create_context("./p")
    await fill_all_phases(store)
    comparison = await store.get_comparison_data()
    assert comparison["before"] == ANALYSIS
    assert comparison["plan"] == PLAN
    # after: the state measured after implementation, kept with its last rollback point.
    assert comparison["after"] == {"metrics": {"complexity": 3.1}}
    assert comparison["implementation"] == IMPLEMENTATION
    assert comparison["research"] == RESEARCH
    assert comparison["evolution_id"] == eid
    assert comparison["version"] == store.last_seq
    assert comparison["before"]["metrics"] == {"complexity": 3.5, "coverage": 75}
    other = await store.create_context("./other")
    assert (await store.get_comparison_data(eid))["plan"] == PLAN
    assert (await store.get_comparison_data(other))["plan"] == {}
    # Read once, then written: the next read shows the write (replies are kept per version).
    await store.store_improvement_plan(
        tasks=[], priorities=[], dependencies={}, estimated_impact=0.2, evolution_id=eid
    )
    again = await store.get_comparison_data(eid)
    assert again["plan"]["estimated_impact"] == 0.2
    assert again["version"] == store.last_seq


async def test_get_all_contexts_lists_summaries_oldest_first(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    assert await store.get_all_contexts() == []
    first = await store.create_context("./one", ["docs"])
    await store.store_original_analysis(**ANALYSIS)
    await store.mark_failed("boom")
    second = await store_b.create_context("./two")
    listing = await store.get_all_contexts()
    assert [c["evolution_id"] for c in listing] == [first, second]
    one, two = listing
    assert one["target_path"] == "./one"
    assert one["focus_areas"] == ["docs"]
    assert one["phases"] == ["original_analysis"]
    assert one["status"] == "failed"
    assert one["errors"] == 1
    assert two["phases"] == []
    assert two["status"] == "pending"
    # Typed summaries, plain JSON on the wire.
    assert json.loads(msgspec.json.encode(listing))[0]["status"] == "failed"


# -- export / import ---------------------------------------------------------------------


async def test_export_then_import_under_a_new_id(
    store: SharedContextStore, config: StoreConfig
) -> None:
    eid = await store.create_context("./p", ["docs"])
    await fill_all_phases(store)
    await store.mark_failed("evaluation failed")
    path = await store.export_context()
    assert Path(path) == config.export_path / f"{eid}.json"
    assert read_json(path)["context"]["evolution_id"] == eid
    new = await store.import_context(path, evolution_id="evo-copy")
    assert new == "evo-copy"
    original, copy = await store.get_context(eid), await store.get_context("evo-copy")
    for field in (
        "created_at",
        "target_path",
        "focus_areas",
        "original_analysis",
        "external_research",
        "improvement_plan",
        "implementation_log",
        "evaluation_results",
        "status",
        "current_phase",
        "error_log",
    ):
        assert getattr(copy, field) == getattr(original, field), field
    assert copy.version > original.version


async def test_export_to_a_chosen_path(store: SharedContextStore, tmp_path: Path) -> None:
    eid = await store.create_context("./p")
    target = tmp_path / "sub" / "ctx.json"
    assert await store.export_context(eid, target) == str(target)
    assert read_json(target)["context"]["target_path"] == "./p"


async def test_import_over_an_existing_id_conflicts_unless_replace(
    store: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    await store.store_original_analysis(**ANALYSIS)
    path = await store.export_context()
    await store.store_improvement_plan(**PLAN)
    before = await stream_last_seq(nc)
    with pytest.raises(ConflictError):
        await store.import_context(path)
    assert await stream_last_seq(nc) == before  # refused before anything was stored
    ctx = await store.get_context(eid)
    assert ctx.improvement_plan == PLAN  # not overwritten
    assert ctx.original_analysis == ANALYSIS
    assert ctx.error_log == []
    assert await store.import_context(path, replace=True) == eid
    ctx = await store.get_context(eid)
    assert ctx.original_analysis == ANALYSIS
    assert ctx.improvement_plan == {}  # replaced by the exported state


async def test_import_into_a_fresh_server(store: SharedContextStore, tmp_path: Path) -> None:
    eid = await store.create_context("./p", ["complexity"])
    await fill_all_phases(store)
    await store.update_phase(Stage.COMPLETED)
    original = await store.get_context()
    path = await store.export_context()
    async with EmbeddedServer(tmp_path / "fresh") as fresh:
        cfg = StoreConfig.build({}, nats_url=fresh.url, export_path=tmp_path / "fresh-exports")
        conn = await connect(fresh.url, name="fresh-actor", long_running=True)
        try:
            async with StoreActor(conn, cfg), SharedContextStore(config=cfg) as other:
                assert await other.import_context(path) == eid
                ctx = await other.get_context()
                assert ctx.evolution_id == eid
                assert ctx.created_at == original.created_at
                assert ctx.improvement_plan == PLAN
                assert ctx.evaluation_results == EVALUATION
                assert (ctx.status, ctx.current_phase) == (Status.COMPLETED, Stage.COMPLETED)
                assert [c["evolution_id"] for c in await other.get_all_contexts()] == [eid]
        finally:
            await conn.close()


def _truncated(text: str) -> str:
    return text[: len(text) // 2]


def _wrong_format(text: str) -> str:
    doc = json.loads(text)
    doc["format"] = "something-else"
    return json.dumps(doc)


def _bad_context(text: str) -> str:
    doc = json.loads(text)
    doc["context"]["original_analysis"] = "not an object"
    return json.dumps(doc)


def _no_target(text: str) -> str:
    doc = json.loads(text)
    del doc["context"]["target_path"]
    return json.dumps(doc)


def _not_object(text: str) -> str:
    return "[1, 2, 3]"


def _empty(text: str) -> str:
    return ""


@pytest.mark.parametrize(
    "corrupt", [_truncated, _wrong_format, _bad_context, _no_target, _not_object, _empty]
)
async def test_import_of_a_malformed_file_raises_and_writes_nothing(
    store: SharedContextStore, nc: Client, tmp_path: Path, corrupt: Any
) -> None:
    await store.create_context("./p")
    await store.store_original_analysis(**ANALYSIS)
    path = await store.export_context()
    bad = tmp_path / "bad.json"
    write_text(bad, corrupt(read_text(path)))
    before = await stream_last_seq(nc)
    with pytest.raises(BundleError):
        await store.import_context(bad, evolution_id="evo-imported")
    assert await stream_last_seq(nc) == before
    with pytest.raises(ContextNotFoundError):
        await store.get_context("evo-imported")


async def test_import_of_a_missing_file_raises_a_bundle_error(
    store: SharedContextStore, tmp_path: Path
) -> None:
    with pytest.raises(BundleError, match="cannot read"):
        await store.import_context(tmp_path / "nope.json")


# -- several agents, one context ---------------------------------------------------------


async def test_a_second_client_works_on_a_context_by_evolution_id(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    eid = await store.create_context("./p")
    await store_b.store_external_research(**RESEARCH, evolution_id=eid)
    await store_b.update_phase(Stage.RESEARCH, evolution_id=eid)
    await store_b.store_original_analysis(**ANALYSIS, evolution_id=eid)
    assert store_b.current_evolution_id is None  # writes by id leave the default alone
    store_b.use(eid)
    await store_b.store_improvement_plan(**PLAN)  # now its current context
    ctx = await store.get_context()
    assert ctx.external_research == RESEARCH
    assert ctx.original_analysis == ANALYSIS
    assert ctx.improvement_plan == PLAN
    assert ctx.current_phase is Stage.RESEARCH
    assert (await store_b.get_comparison_data(evolution_id=eid))["before"] == ANALYSIS
    assert (await store_b.get_context(evolution_id=eid)).evolution_id == eid


# -- lifecycle ---------------------------------------------------------------------------


async def test_async_with_opens_and_closes(actor: StoreActor, config: StoreConfig) -> None:
    client = SharedContextStore(config=config)
    assert not client.is_closed
    async with client as opened:
        assert opened is client
        assert client.url is not None
        eid = await client.create_context("./p")
    assert client.is_closed
    assert client.url is None
    with pytest.raises(StoreClosedError):
        await client.get_context(eid)
    with pytest.raises(StoreClosedError):
        await client.store_original_analysis(**ANALYSIS)
    with pytest.raises(StoreClosedError):
        await client.create_context("./q")
    with pytest.raises(StoreClosedError):
        await client.open()
    await client.aclose()  # closing twice is fine


async def test_client_opens_on_first_use(actor: StoreActor, config: StoreConfig) -> None:
    client = SharedContextStore(config=config)
    try:
        eid = await client.create_context("./p")
        assert (await client.get_context()).evolution_id == eid
    finally:
        await client.aclose()
    with pytest.raises(StoreClosedError):
        await client.get_all_contexts()


async def test_get_context_store_returns_one_instance_per_loop() -> None:
    first = get_context_store()
    assert get_context_store() is first
    others: list[SharedContextStore] = []

    def in_another_loop() -> None:
        async def main() -> None:
            others.append(get_context_store())
            others.append(get_context_store())

        asyncio.run(main())

    thread = threading.Thread(target=in_another_loop)
    thread.start()
    thread.join(timeout=30)
    assert len(others) == 2
    assert others[0] is others[1]
    assert others[0] is not first
    await first.aclose()
    replacement = get_context_store()
    assert replacement is not first
    assert not replacement.is_closed
    await replacement.aclose()


# -- the spec's examples, as written -----------------------------------------------------

# Verbatim from the spec (Data Flow Through Phases); only the helpers they call but do not
# define are supplied below, and ``store`` is the test's client.
SPEC_PHASES = """
async def research_phase():
    # ResearchAgent → external_research
    await store.store_external_research(
        best_practices=["Use type hints", "Add docstrings"],
        references=[{"url": "...", "title": "..."}],
        patterns=[{"name": "Factory", "applicability": 0.8}]
    )

    # CodeAnalysisAgent → original_analysis
    await store.store_original_analysis(
        files_analyzed=10,
        metrics={"complexity": 3.5, "coverage": 75},
        issues=[{"type": "code_smell", "location": "file:42"}],
        improvements=[{"type": "docstring", "priority": "high"}]
    )

async def planning_phase():
    context = await store.get_context()

    # Use actual improvements from analysis
    improvements = context.original_analysis["improvements"]
    best_practices = context.external_research["best_practices"]

    # Create targeted tasks
    tasks = create_tasks_from_improvements(improvements, best_practices)

    # Store plan
    await store.store_improvement_plan(
        tasks=tasks,
        priorities=["task-1", "task-2"],
        dependencies={},
        estimated_impact=0.7
    )

async def implementation_phase():
    context = await store.get_context()
    tasks = context.improvement_plan["tasks"]

    # Execute with external services
    changes = await execute_with_bedrock(tasks)

    # Store implementation details
    await store.store_implementation_log(
        modified_files=["agent.py", "planner.py"],
        changes=[{"file": "agent.py", "type": "docstring_added"}],
        rollback_points=[{"id": "checkpoint-1", "timestamp": "..."}]
    )

async def evaluation_phase():
    # Get comprehensive comparison data
    comparison = await store.get_comparison_data()

    # Three-way comparison
    before = comparison["before"]      # original_analysis
    plan = comparison["plan"]          # improvement_plan
    after = comparison["after"]        # current state
    implementation = comparison["implementation"]  # what was done

    # Evaluate goals achievement
    goals_achieved = evaluate_goals(before, plan, after)

    # Store results
    await store.store_evaluation_results(
        goals_achieved=goals_achieved,
        metrics_comparison={
            "before": before["metrics"],
            "after": current_metrics,
            "delta": calculate_delta(before, after)
        },
        success_rate=0.85
    )
"""


def _spec_namespace(store: SharedContextStore, seen: dict[str, Any]) -> dict[str, Any]:
    def create_tasks_from_improvements(
        improvements: list[dict[str, Any]], best_practices: list[str]
    ) -> list[dict[str, Any]]:
        seen["improvements"] = improvements
        seen["best_practices"] = best_practices
        return [
            {"id": f"task-{i}", "type": imp["type"], "practice": best_practices[0]}
            for i, imp in enumerate(improvements, 1)
        ]

    async def execute_with_bedrock(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen["tasks"] = tasks
        return [{"task": t["id"], "done": True} for t in tasks]

    def evaluate_goals(
        before: dict[str, Any], plan: dict[str, Any], after: dict[str, Any]
    ) -> list[str]:
        seen["evaluated"] = (before, plan, after)
        return [t["id"] for t in plan["tasks"]]

    def calculate_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        return {"complexity": -0.4}

    return {
        "store": store,
        "create_tasks_from_improvements": create_tasks_from_improvements,
        "execute_with_bedrock": execute_with_bedrock,
        "evaluate_goals": evaluate_goals,
        "calculate_delta": calculate_delta,
        "current_metrics": {"complexity": 3.1, "coverage": 80},
    }


async def test_the_spec_phase_examples_run_as_written(store: SharedContextStore) -> None:
    seen: dict[str, Any] = {}
    namespace = _spec_namespace(store, seen)
    exec(compile(SPEC_PHASES, "spec-examples", "exec"), namespace)
    eid = await store.create_context("./my-project", ["documentation", "complexity"])
    await namespace["research_phase"]()
    await namespace["planning_phase"]()
    await namespace["implementation_phase"]()
    await namespace["evaluation_phase"]()

    assert seen["improvements"] == [{"type": "docstring", "priority": "high"}]
    assert seen["best_practices"] == ["Use type hints", "Add docstrings"]
    assert seen["tasks"] == [{"id": "task-1", "type": "docstring", "practice": "Use type hints"}]
    before, plan, after = seen["evaluated"]
    assert before["files_analyzed"] == 10
    assert plan["tasks"] == seen["tasks"]
    assert after == {}  # nothing evaluated yet when the evaluator reads
    ctx = await store.get_context(eid)
    assert ctx.improvement_plan["estimated_impact"] == 0.7
    assert ctx.implementation_log["modified_files"] == ["agent.py", "planner.py"]
    assert ctx.evaluation_results == {
        "goals_achieved": ["task-1"],
        "metrics_comparison": {
            "before": {"complexity": 3.5, "coverage": 75},
            "after": {"complexity": 3.1, "coverage": 80},
            "delta": {"complexity": -0.4},
        },
        "success_rate": 0.85,
    }


async def test_the_spec_phase_examples_run_in_parallel_agents(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    # Research and analysis by two agents at once, as Phase 1 describes.
    await store.create_context("./my-project")
    seen: dict[str, Any] = {}
    store_b.use((await store_b.get_context()).evolution_id)  # b takes up the newest context
    ns_a, ns_b = _spec_namespace(store, seen), _spec_namespace(store_b, seen)
    exec(compile(SPEC_PHASES, "spec-examples", "exec"), ns_a)
    exec(compile(SPEC_PHASES, "spec-examples", "exec"), ns_b)
    await asyncio.gather(ns_a["research_phase"](), ns_b["research_phase"]())
    await ns_b["planning_phase"]()
    await ns_a["implementation_phase"]()
    await ns_b["evaluation_phase"]()
    ctx = await store.get_context()
    assert set(ctx.phase_versions) == {
        "original_analysis",
        "external_research",
        "improvement_plan",
        "implementation_log",
        "evaluation_results",
    }


SPEC_USAGE = """
async def usage():
    # Access context
    context = await store.get_context()
    print(f"Evolution ID: {context.evolution_id}")
    print(f"Files analyzed: {context.original_analysis['files_analyzed']}")
    print(f"Tasks created: {len(context.improvement_plan['tasks'])}")
    print(f"Goals achieved: {context.evaluation_results['goals_achieved']}")

    # Export for analysis
    export_path = await store.export_context()
    print(f"Context exported to: {export_path}")
"""


@pytest.fixture
async def default_store(
    actor: StoreActor, server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SharedContextStore]:
    monkeypatch.setenv("NATS_URL", server.url)
    monkeypatch.setenv("CONTEXT_STORE_EXPORT_PATH", str(tmp_path / "spec-exports"))
    store = get_context_store()
    yield store
    await store.aclose()


async def test_the_spec_usage_example_runs_as_written(
    default_store: SharedContextStore,
    store_b: SharedContextStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The engine's run is played by another agent writing the phases.
    eid = await store_b.create_context("./my-project", ["documentation", "complexity"])
    await fill_all_phases(store_b)
    namespace: dict[str, Any] = {"store": get_context_store()}
    assert namespace["store"] is default_store
    exec(compile(SPEC_USAGE, "spec-usage", "exec"), namespace)
    await namespace["usage"]()
    out = capsys.readouterr().out.splitlines()
    export_path = tmp_path / "spec-exports" / f"{eid}.json"
    assert out == [
        f"Evolution ID: {eid}",
        "Files analyzed: 10",
        "Tasks created: 2",
        "Goals achieved: ['task-1']",
        f"Context exported to: {export_path}",
    ]
    assert export_path.is_file()
