"""The evolution pipeline end to end: five agents on the bus, driven by the engine."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from actors import EvolutionConfig, EvolutionEngine, SharedContextStore, StoreActor
from actors.evolution.agents.logic import ResearchResult
from actors.evolution.agents.rollback import restore_point
from broker import WRITES_STREAM, EmbeddedServer
from contracts import (
    AgentActivity,
    Decoders,
    Stage,
    Status,
    WriteApplied,
    event_filter,
    write_filter,
)

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample_project"
FOCUS = ["documentation", "complexity"]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


async def evolve(
    store: SharedContextStore, project: Path, workdir: Path, **engine_options: object
) -> tuple[EvolutionEngine, object]:
    engine = EvolutionEngine(store, **engine_options)  # type: ignore[arg-type]
    result = await engine.run_evolution(
        EvolutionConfig(project, FOCUS, workdir=workdir, agent_timeout=30)
    )
    return engine, result


async def test_full_evolution_of_the_sample_project(
    store: SharedContextStore, project: Path, tmp_path: Path
) -> None:
    before_files = tree_digest(project)
    async with EvolutionEngine(store) as engine:
        result = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "work", agent_timeout=30)
        )
    assert result.status is Status.COMPLETED, result.error
    ctx = await store.get_context(result.evolution_id)
    assert ctx.current_phase is Stage.COMPLETED
    assert ctx.error_log == []
    assert set(ctx.agents) == {"research", "analysis", "planner", "refactor", "evaluator"}
    assert all(a["state"] == "finished" for a in ctx.agents.values())

    analysis = ctx.original_analysis
    assert analysis["files_analyzed"] == 8
    metrics = ctx.evaluation_results["metrics_comparison"]
    assert metrics["before"]["functions"] == 26
    assert metrics["before"]["docstring_coverage"] == pytest.approx(0.2647, abs=1e-4)
    assert metrics["after"]["docstring_coverage"] == 1.0
    assert metrics["before"]["type_hint_coverage"] == pytest.approx(0.48)
    assert metrics["after"]["type_hint_coverage"] == pytest.approx(0.88)
    assert metrics["before"]["complexity_max"] == metrics["after"]["complexity_max"] == 14
    assert metrics["delta"]["docstring_coverage"] == pytest.approx(0.7353, abs=1e-4)

    plan = ctx.improvement_plan
    assert len(plan["tasks"]) == 42
    assert ctx.external_research["best_practices"]
    log = ctx.implementation_log
    assert len(log["modified_files"]) == 7
    assert len(log["rollback_points"]) == 37
    assert ctx.evaluation_results["success_rate"] == pytest.approx(36 / 42, abs=1e-4)

    # The spec's three-way comparison, read back through the store.
    comparison = await store.get_comparison_data(result.evolution_id)
    assert comparison["before"] == analysis
    assert comparison["plan"] == plan
    assert comparison["implementation"] == log
    assert comparison["after"] == ctx.evaluation_results

    # Every edited file of the working copy still parses; the user's files are untouched.
    for relpath in log["modified_files"]:
        compile((tmp_path / "work" / relpath).read_text(), relpath, "exec")
    assert tree_digest(project) == before_files


async def test_apply_writes_the_result_over_the_target(
    store: SharedContextStore, project: Path, tmp_path: Path
) -> None:
    async with EvolutionEngine(store) as engine:
        result = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "work", apply=True)
        )
    assert result.status is Status.COMPLETED, result.error
    modified = result.context.implementation_log["modified_files"]
    assert modified
    for relpath in modified:
        assert (project / relpath).read_bytes() == (tmp_path / "work" / relpath).read_bytes()


async def _activity_times(nc: Client, evolution_id: str) -> dict[tuple[str, str], float]:
    """(agent, activity) -> stream time of that write, read straight from the write log."""
    js = nc.jetstream()
    sub = await js.subscribe(
        write_filter("default", evolution_id),
        stream=WRITES_STREAM,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    info = await js.stream_info(WRITES_STREAM)
    times: dict[tuple[str, str], float] = {}
    try:
        async with asyncio.timeout(10):
            async for msg in sub.messages:
                body = Decoders.write.decode(msg.data)
                if isinstance(body, AgentActivity):
                    times[(body.agent, body.activity)] = msg.metadata.timestamp.timestamp()
                if msg.metadata.sequence.stream >= info.state.last_seq:
                    break
    finally:
        await sub.unsubscribe()
    return times


async def test_research_and_analysis_overlap_in_time(
    store: SharedContextStore, nc: Client, project: Path, tmp_path: Path
) -> None:
    release = asyncio.Event()
    agent_events = 0

    async def count(msg: Msg) -> None:
        nonlocal agent_events
        event = Decoders.event.decode(msg.data)
        if isinstance(event, WriteApplied) and event.kind == "agent":
            agent_events += 1
            # Research can add only its "started" before it is released, so a second
            # agent event means analysis has begun.
            if agent_events >= 2:
                release.set()

    class WaitingSource:
        """Research that finishes only once analysis has begun: run one after the other,
        this evolution would time out or show research starting after analysis ended."""

        async def research(
            self, focus_areas: Sequence[str], project_facts: Mapping[str, object]
        ) -> ResearchResult:
            await release.wait()
            return ResearchResult(["Add docstrings"], [], [])

    sub = await nc.subscribe(event_filter("default"), cb=count)
    await nc.flush()
    async with EvolutionEngine(store, research_source=WaitingSource()) as engine:
        result = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "w", agent_timeout=20)
        )
    await sub.unsubscribe()
    assert result.status is Status.COMPLETED, result.error
    times = await _activity_times(nc, result.evolution_id)
    assert times[("research", "started")] < times[("analysis", "finished")]
    assert times[("analysis", "started")] < times[("research", "finished")]


async def test_a_failing_agent_marks_the_context_failed(
    store: SharedContextStore, tmp_path: Path
) -> None:
    missing = tmp_path / "does-not-exist"
    async with EvolutionEngine(store) as engine:
        result = await engine.run_evolution(EvolutionConfig(missing, FOCUS, workdir=tmp_path / "w"))
    assert result.status is Status.FAILED
    ctx = await store.get_context(result.evolution_id)
    assert ctx.status is Status.FAILED
    assert ctx.current_phase is Stage.RESEARCH
    assert any("analysis" in e and "not a directory" in e for e in ctx.error_log)
    assert ctx.agents["analysis"]["state"] == "failed"
    assert not ctx.improvement_plan  # the pipeline stopped


async def test_a_hanging_agent_times_out_and_fails_the_context(
    store: SharedContextStore, project: Path, tmp_path: Path
) -> None:
    never = asyncio.Event()

    class HangingSource:
        async def research(
            self, focus_areas: Sequence[str], project_facts: Mapping[str, object]
        ) -> ResearchResult:
            await never.wait()
            raise AssertionError("unreachable")

    async with EvolutionEngine(store, research_source=HangingSource()) as engine:
        async with asyncio.timeout(15):
            result = await engine.run_evolution(
                EvolutionConfig(project, FOCUS, workdir=tmp_path / "w", agent_timeout=0.5)
            )
    assert result.status is Status.FAILED
    assert result.error is not None
    assert "research" in result.error
    assert "0.5s" in result.error


async def test_missing_remote_agents_fail_fast(
    store: SharedContextStore, project: Path, tmp_path: Path
) -> None:
    async with EvolutionEngine(store, local_agents=False) as engine:
        async with asyncio.timeout(10):
            result = await engine.run_evolution(
                EvolutionConfig(project, FOCUS, workdir=tmp_path / "w")
            )
    assert result.status is Status.FAILED
    assert result.error is not None
    assert "no agent is running" in result.error


@pytest.fixture
async def agent_processes(
    server: EmbeddedServer, actor: StoreActor, tmp_path: Path
) -> AsyncIterator[None]:
    env = {**os.environ, "CTXSTORE_HOME": str(tmp_path / "home")}
    procs = []
    try:
        for name in ("research", "analysis", "planner", "refactor", "evaluator"):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "actors.cli",
                "--nats-url",
                server.url,
                "agent",
                name,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
            procs.append(proc)
        async with asyncio.timeout(30):
            for proc in procs:
                assert proc.stdout is not None
                line = await proc.stdout.readline()
                assert b"serving" in line, line
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            await proc.wait()


def _outcome(result: object) -> dict[str, object]:
    ctx = result.context  # type: ignore[attr-defined]
    return {
        "status": ctx.status,
        "metrics": ctx.evaluation_results["metrics_comparison"],
        "tasks": [{k: v for k, v in t.items() if k != "id"} for t in ctx.improvement_plan["tasks"]],
        "modified": ctx.implementation_log["modified_files"],
        "success_rate": ctx.evaluation_results["success_rate"],
        "research": ctx.external_research,
    }


async def test_agents_in_separate_processes_give_the_same_result(
    agent_processes: None, store: SharedContextStore, project: Path, tmp_path: Path
) -> None:
    async with EvolutionEngine(store, local_agents=False) as engine:
        remote = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "remote", agent_timeout=60)
        )
    async with EvolutionEngine(store) as engine:
        local = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "local", agent_timeout=60)
        )
    assert remote.status is Status.COMPLETED, remote.error
    assert _outcome(remote) == _outcome(local)
    writers = {a for a in remote.context.agents}
    assert writers == {"research", "analysis", "planner", "refactor", "evaluator"}


async def test_the_working_copy_can_be_restored_to_each_rollback_point(
    store: SharedContextStore, server: EmbeddedServer, project: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    async with EvolutionEngine(store) as engine:
        result = await engine.run_evolution(EvolutionConfig(project, FOCUS, workdir=workdir))
    assert result.status is Status.COMPLETED, result.error
    log = result.context.implementation_log
    evolved = tree_digest(workdir)
    points = [p["id"] for p in log["rollback_points"]]

    # From another process, with only the store: back to before any edit...
    env = {**os.environ, "CTXSTORE_HOME": str(tmp_path / "home")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "actors.cli",
        "--nats-url",
        server.url,
        "rollback",
        result.evolution_id,
        points[0],
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    assert tree_digest(workdir) == tree_digest(project)
    assert f"{len(log['modified_files'])} file(s) changed" in out.decode()

    # ... to a point in the middle: exactly one task applied more than at the start...
    changed = restore_point(log, points[1])
    assert len(changed) == 1
    # ... and to the end again.
    restore_point(log, points[-1])
    assert tree_digest(workdir) == evolved
    with pytest.raises(ValueError, match="no rollback point"):
        restore_point(log, "checkpoint-999")


async def test_a_recorded_evolution_replays_identically(
    store: SharedContextStore, project: Path, tmp_path: Path
) -> None:
    async with EvolutionEngine(store) as engine:
        result = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "work")
        )
    assert result.status is Status.COMPLETED, result.error
    bundle = await store.export_context(result.evolution_id, tmp_path / "evolution.ctx")
    replayed = await store.replay(bundle)
    assert replayed.identical, replayed.changes
