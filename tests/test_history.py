"""History and time travel: every write as stored, and any past version, from the stream."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client

from actors import ContextNotFoundError, SharedContextStore
from actors.cli import main
from actors.core.timeline import diff_contexts
from contracts import EvolutionContext, Stage, Status, WriteKind, write_subject
from contracts.history import Change

ANALYSIS: dict[str, Any] = dict(
    files_analyzed=10,
    metrics={"complexity": 3.5, "coverage": 75},
    issues=[{"type": "code_smell", "location": "file:42"}],
    improvements=[{"type": "docstring", "priority": "high"}],
)
RESEARCH: dict[str, Any] = dict(
    best_practices=["Use type hints"],
    references=[{"url": "https://peps.python.org/pep-0257/", "title": "PEP 257"}],
    patterns=[{"name": "Factory", "applicability": 0.8}],
)


async def record_evolution(
    store: SharedContextStore, other: SharedContextStore, nc: Client
) -> tuple[str, list[EvolutionContext]]:
    """Create a context and write to it from two agents and a plain connection; return the
    context as the store answered after each write."""
    seen: list[EvolutionContext] = []
    eid = await store.create_context("./proj", ["documentation"])
    seen.append(await store.get_context())
    await store.update_phase(Stage.RESEARCH)
    seen.append(await store.get_context())
    await other.store_external_research(**RESEARCH, evolution_id=eid)
    await store.store_original_analysis(**ANALYSIS)
    seen.append(await store.get_context())
    # A write the store rejects (negative count), published without our client.
    await nc.jetstream().publish(
        write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS),
        b'{"type": "original_analysis", "files_analyzed": -1}',
    )
    await store.update_phase(Stage.PLANNING)
    seen.append(await store.get_context())
    await store.store_original_analysis(**{**ANALYSIS, "metrics": {"complexity": 2.0}})
    await store.update_phase(Stage.PLANNING, status=Status.FAILED, error="planner timed out")
    seen.append(await store.get_context())
    return eid, seen


async def test_history_lists_every_write_in_order_with_writer_size_and_outcome(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid, seen = await record_evolution(store, store_b, nc)
    history = await store.history(eid)
    assert [e.kind for e in history] == [
        "create",
        "stage",
        "external_research",
        "original_analysis",
        "original_analysis",
        "stage",
        "original_analysis",
        "stage",
    ]
    seqs = [e.seq for e in history]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert history[-1].seq == seen[-1].version
    assert [e.writer for e in history[:4]] == ["agent-a", "agent-a", "agent-b", "agent-a"]
    assert history[4].writer is None  # the plain connection sent no writer header
    assert all(e.size > 0 for e in history)
    times = [e.time for e in history]
    assert times == sorted(times)
    assert history[0].time == seen[0].created_at
    rejected = [e for e in history if not e.applied]
    assert len(rejected) == 1
    assert rejected[0].code == "invalid"
    assert "files_analyzed" in (rejected[0].reason or "")
    assert history[1].stage == "research"
    assert history[-1].stage == "planning"
    # The rejection is in the live context's error_log, with the same sequence.
    assert f"seq {rejected[0].seq} original_analysis" in seen[-1].error_log[0]


async def test_get_context_at_a_sequence_is_the_context_as_the_store_served_it(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid, seen = await record_evolution(store, store_b, nc)
    for ctx in seen:
        assert await store.get_context(eid, at=ctx.version) == ctx
    # Writes to another context do not change this one's past.
    await store_b.create_context("./other")
    assert store_b.last_seq > seen[-1].version
    assert await store.get_context(eid, at=store_b.last_seq) == seen[-1]
    # Without `at`, the live context, as before.
    assert await store.get_context(eid) == seen[-1]
    assert await store.get_context() == seen[-1]


async def test_get_context_at_a_time(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid, seen = await record_evolution(store, store_b, nc)
    history = await store.history(eid)
    by_seq = {e.seq: e for e in history}
    for ctx in seen:
        assert await store.get_context(eid, at=by_seq[ctx.version].time) == ctx
    assert await store.get_context(eid, at=history[-1].time + timedelta(days=1)) == seen[-1]
    with pytest.raises(ContextNotFoundError, match="did not exist"):
        await store.get_context(eid, at=history[0].time - timedelta(microseconds=1))


async def test_before_creation_and_unknown_ids_are_not_found(store: SharedContextStore) -> None:
    eid = await store.create_context("./p")
    first = (await store.history(eid))[0].seq
    with pytest.raises(ContextNotFoundError):
        await store.get_context(eid, at=first - 1)
    with pytest.raises(ContextNotFoundError):
        await store.history("evo-never-created")
    with pytest.raises(ContextNotFoundError):
        await store.get_context("evo-never-created", at=1)


async def test_diff_between_versions_field_by_field(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid, seen = await record_evolution(store, store_b, nc)
    diff = await store.diff(eid, seen[0].version, seen[2].version)
    assert (diff.a, diff.b) == (seen[0].version, seen[2].version)
    changes = {c.path: c for c in diff.changes}
    assert changes["status"] == Change(
        path="status", op="changed", before="pending", after="running"
    )
    assert changes["current_phase"].after == "research"
    assert changes["original_analysis"].op == "added"
    assert changes["original_analysis"].after == ANALYSIS
    assert changes["external_research"].op == "added"
    assert "version" not in changes
    assert "updated_at" not in changes

    later = await store.diff(eid, seen[2].version, seen[-1].version)
    paths = {c.path: c for c in later.changes}
    assert paths["original_analysis.metrics.complexity"] == Change(
        path="original_analysis.metrics.complexity", op="changed", before=3.5, after=2.0
    )
    assert paths["original_analysis.metrics.coverage"].op == "removed"
    assert paths["status"].after == "failed"
    assert paths["error_log[0]"].op == "added"
    assert paths["error_log[1]"] == Change(
        path="error_log[1]", op="added", after="planner timed out"
    )
    assert "external_research" not in paths  # unchanged
    # Default b: now.
    assert (await store.diff(eid, seen[2].version)).changes == later.changes
    assert (await store.diff(eid, seen[1].version, seen[1].version)).identical


def test_diff_contexts_nested_keys_and_lists() -> None:
    base = EvolutionContext(
        evolution_id="e",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        target_path="./p",
        improvement_plan={"tasks": [{"id": "t1", "p": 1}, {"id": "t2"}], "impact": 0.5},
    )
    other = EvolutionContext(
        evolution_id="e",
        created_at=base.created_at,
        target_path="./p",
        improvement_plan={"tasks": [{"id": "t1", "p": 2, "new": True}], "owner": "x"},
    )
    changes = diff_contexts(base, other)
    assert changes == [
        Change(path="improvement_plan.tasks[0].p", op="changed", before=1, after=2),
        Change(path="improvement_plan.tasks[0].new", op="added", after=True),
        Change(path="improvement_plan.tasks[1]", op="removed", before={"id": "t2"}),
        Change(path="improvement_plan.impact", op="removed", before=0.5),
        Change(path="improvement_plan.owner", op="added", after="x"),
    ]
    assert diff_contexts(other, other) == []


async def run_cli(*argv: str) -> tuple[int, str]:
    """Run ``ctxstore`` in a thread (it runs its own event loop), capturing its output."""
    import contextlib
    import io

    out = io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out):
            return main(list(argv))

    code = await asyncio.to_thread(call)
    return code, out.getvalue()


async def test_cli_history_show_at_and_diff(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid, seen = await record_evolution(store, store_b, nc)
    url = store.url
    assert url is not None
    code, out = await run_cli("--nats-url", url, "history", eid)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "WRITE", "WRITER", "BYTES", "OUTCOME"]
    assert len(lines) == 2 + 8
    assert "agent-b" in lines[4]
    assert "external_research" in lines[4]
    assert "REJECTED invalid" in lines[6]

    code, out = await run_cli("--nats-url", url, "history", eid, "--json")
    assert [e["seq"] for e in json.loads(out)] == [e.seq for e in await store.history(eid)]

    code, out = await run_cli(
        "--nats-url", url, "show", eid, "--at", str(seen[1].version), "--json"
    )
    assert code == 0
    assert json.loads(out)["current_phase"] == "research"
    assert json.loads(out)["original_analysis"] == {}

    when = (await store.history(eid))[1].time.isoformat()
    code, out = await run_cli("--nats-url", url, "show", eid, "--at", when)
    assert code == 0
    assert "as of" in out
    assert "research" in out

    code, out = await run_cli(
        "--nats-url", url, "diff", eid, str(seen[0].version), str(seen[2].version)
    )
    assert code == 0
    assert f"version {seen[0].version} -> {seen[2].version}" in out
    assert any(line.split()[:2] == ["changed", "status"] for line in out.splitlines())
    assert any(line.split()[:2] == ["added", "original_analysis"] for line in out.splitlines())
