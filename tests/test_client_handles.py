"""Context handles (``store.context(eid)``), typed results, and the current evolution.

A handle is bound to one evolution: its reads and writes never depend on what else the
client did. The spec's methods default ``evolution_id`` to the current evolution of the
calling task, which only ``create_context``, ``import_context``, ``replay`` and ``use``
set; reads never change it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors import (
    ContextNotFoundError,
    ContextStoreError,
    InvalidWriteError,
    SharedContextStore,
    StoreActor,
    get_context_store,
)
from actors.client import ContextHandle, WriteReceipt
from broker import EmbeddedServer
from contracts import (
    Comparison,
    ContextSummary,
    CreateContext,
    EvolutionContext,
    ImprovementPlan,
    Stage,
    Status,
    WriteApplied,
)
from contracts.history import ContextDiff

ANALYSIS: dict[str, Any] = dict(
    files_analyzed=10, metrics={"complexity": 3.5}, issues=[], improvements=[{"type": "doc"}]
)
PLAN: dict[str, Any] = dict(
    tasks=[{"id": "task-1"}], priorities=["task-1"], dependencies={}, estimated_impact=0.7
)


def read_json(path: str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@pytest.fixture
async def default_store(
    actor: StoreActor, server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SharedContextStore]:
    monkeypatch.setenv("NATS_URL", server.url)
    monkeypatch.setenv("CONTEXT_STORE_EXPORT_PATH", str(tmp_path / "exports"))
    store = get_context_store()
    yield store
    await store.aclose()


# -- handles -------------------------------------------------------------------------------


async def test_a_handle_reads_and_writes_one_context_with_typed_results(
    store: SharedContextStore, tmp_path: Path
) -> None:
    eid = await store.create_context("./p", ["docs"])
    ctx = store.context(eid)
    assert isinstance(ctx, ContextHandle)
    assert ctx.evolution_id == eid
    phase = await ctx.update_phase(Stage.RESEARCH)
    analysis = await ctx.store_original_analysis(**ANALYSIS)
    plan = await ctx.write(ImprovementPlan(**PLAN))  # any write body
    for receipt in (phase, analysis, plan):
        assert isinstance(receipt, WriteReceipt)
        assert receipt.evolution_id == eid
        assert receipt  # truthy, as the spec's bool was
    assert phase.seq < analysis.seq < plan.seq

    got = await ctx.get()
    assert isinstance(got, EvolutionContext)
    assert (got.current_phase, got.version) == (Stage.RESEARCH, plan.seq)
    assert got.improvement_plan == PLAN
    comparison = await ctx.comparison()
    assert isinstance(comparison, Comparison)
    assert (comparison.before, comparison.plan) == (ANALYSIS, PLAN)
    assert [h.kind for h in await ctx.history()] == [
        "create",
        "stage",
        "original_analysis",
        "improvement_plan",
    ]
    diff = await ctx.diff(phase.seq, plan.seq)
    assert isinstance(diff, ContextDiff)
    assert {c.path.split(".")[0] for c in diff.changes} >= {"original_analysis"}
    assert (await ctx.get(at=phase.seq)).original_analysis == {}
    path = await ctx.export(tmp_path / "ctx.json")
    assert read_json(path)["context"]["evolution_id"] == eid
    failed = await ctx.mark_failed("boom")
    assert (await ctx.get()).status is Status.FAILED
    assert failed.seq > plan.seq


async def test_a_handle_can_create_its_context_and_watch_it(store: SharedContextStore) -> None:
    ctx = store.context("evo-handle")
    async with ctx.watch() as events:
        created = await ctx.write(CreateContext(target_path="./p"))
        await ctx.record_activity("planner", "started")
        async with asyncio.timeout(10):
            first, second = await anext(events), await anext(events)
    assert isinstance(first, WriteApplied)
    assert (first.seq, first.kind, second.kind) == (created.seq, "create", "agent")
    assert (await ctx.get()).agents["planner"]["state"] == "started"
    assert store.current_evolution_id is None  # a handle changes nothing else
    with pytest.raises(ContextStoreError, match="exists"):
        await ctx.write(CreateContext(target_path="./again"))


@pytest.mark.parametrize("bad", ["", "a.b", "has space", "*"])
def test_a_handle_needs_a_valid_id(store: SharedContextStore, bad: str) -> None:
    with pytest.raises(InvalidWriteError, match="evolution_id"):
        store.context(bad)


# -- typed results of the spec's methods ----------------------------------------------------


async def test_the_spec_methods_return_typed_results_that_read_as_the_spec_shows(
    store: SharedContextStore,
) -> None:
    eid = await store.create_context("./p", ["docs"])
    receipt = await store.update_phase("research")
    assert isinstance(receipt, WriteReceipt)
    assert receipt.evolution_id == eid
    await store.store_original_analysis(**ANALYSIS)
    comparison = await store.get_comparison_data()
    assert isinstance(comparison, Comparison)
    assert comparison["before"] == comparison.before == ANALYSIS
    assert comparison["before"]["metrics"] == {"complexity": 3.5}
    assert "after" in comparison
    assert "nothing" not in comparison
    with pytest.raises(KeyError):
        comparison["nothing"]
    assert dict(comparison)["evolution_id"] == eid
    [summary] = await store.get_all_contexts()
    assert isinstance(summary, ContextSummary)
    assert summary["evolution_id"] == summary.evolution_id == eid
    assert summary["status"] == "running"
    assert summary["phases"] == ["original_analysis"]
    # Plain data when needed, as the wire has it.
    assert json.loads(msgspec.json.encode([summary]))[0]["focus_areas"] == ["docs"]
    assert summary.as_dict()["target_path"] == "./p"


# -- the current evolution: per task, set by creating or by use(), never by reading ----------


async def test_reads_never_change_the_current_evolution(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    first = await store.create_context("./first")
    second = await store_b.create_context("./second")
    assert store.current_evolution_id == first
    assert (await store.get_context(second)).evolution_id == second
    await store.get_comparison_data(second)
    await store.history(second)
    await store.export_context(second)
    assert store.current_evolution_id == first
    assert (await store.get_context()).evolution_id == first
    # A write with an explicit id does not move it either.
    await store.store_improvement_plan(**PLAN, evolution_id=second)
    await store.update_phase("research")
    assert (await store.get_context(first)).current_phase is Stage.RESEARCH
    assert (await store.get_context(second)).current_phase is Stage.INITIALIZED


async def test_with_no_current_evolution_reads_see_the_newest_without_adopting_it(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    await store.create_context("./older")
    newest = await store.create_context("./newest")
    assert store_b.current_evolution_id is None
    assert (await store_b.get_context()).evolution_id == newest
    assert (await store_b.get_comparison_data()).evolution_id == newest
    assert store_b.current_evolution_id is None
    with pytest.raises(ContextStoreError, match="evolution_id"):
        await store_b.update_phase("research")  # a write never guesses its context
    handle = store_b.use(newest)
    assert handle.evolution_id == store_b.current_evolution_id == newest
    await store_b.update_phase("research")
    assert (await store.get_context(newest)).current_phase is Stage.RESEARCH


async def test_concurrent_tasks_on_the_default_store_each_write_their_own_context(
    default_store: SharedContextStore,
) -> None:
    started = asyncio.Barrier(2)

    async def agent(name: str) -> str:
        store = get_context_store()
        assert store is default_store
        eid = await store.create_context(f"./{name}")
        await started.wait()  # both have created theirs before either writes
        for i in range(5):
            await store.store_original_analysis(
                files_analyzed=i, metrics={"by": name}, issues=[], improvements=[]
            )
            await store.update_phase("research")
            assert (await store.get_context()).original_analysis["metrics"] == {"by": name}
        return eid

    a, b = await asyncio.gather(agent("a"), agent("b"))
    assert a != b
    for eid, name in ((a, "a"), (b, "b")):
        ctx = await default_store.get_context(eid)
        assert ctx.original_analysis == {
            "files_analyzed": 4,
            "metrics": {"by": name},
            "issues": [],
            "improvements": [],
        }
        assert [h.kind for h in await default_store.history(eid)] == ["create"] + [
            "original_analysis",
            "stage",
        ] * 5
    assert default_store.current_evolution_id is None  # the tasks' choices stayed theirs


async def test_a_task_inherits_the_current_evolution_and_keeps_its_own_changes(
    store: SharedContextStore,
) -> None:
    parent = await store.create_context("./parent")

    async def child() -> tuple[str | None, str]:
        inherited = store.current_evolution_id
        return inherited, await store.create_context("./child")

    inherited, created = await asyncio.create_task(child())
    assert inherited == parent
    assert store.current_evolution_id == parent
    assert created != parent


async def test_import_and_replay_make_their_context_current(
    store: SharedContextStore, tmp_path: Path
) -> None:
    eid = await store.create_context("./p")
    path = await store.export_context(eid, tmp_path / "b.json")
    assert await store.import_context(path, evolution_id="evo-imported") == "evo-imported"
    assert store.current_evolution_id == "evo-imported"
    result = await store.replay(path)
    assert store.current_evolution_id == result.evolution_id
    with pytest.raises(ContextNotFoundError):
        await store.get_context("evo-none")
    assert store.current_evolution_id == result.evolution_id
