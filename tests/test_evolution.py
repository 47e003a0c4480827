"""The evolution pipeline end to end: five agents on the bus, driven by the engine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
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
    encode,
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
    assert metrics["before"]["simplifications_available"] == 1
    assert metrics["after"]["simplifications_available"] == 0
    # Docstrings need a model: planned and reported as deferred, never generated from names.
    assert metrics["after"]["docstring_coverage"] == metrics["before"]["docstring_coverage"]
    assert metrics["tasks"]["deferred"] > 0
    assert metrics["tests"]["final"]["passed"] == 7

    plan = ctx.improvement_plan
    assert ctx.external_research["best_practices"]
    log = ctx.implementation_log
    kept = {c["file"] for c in log["changes"] if c.get("outcome") == "kept"}
    assert kept
    assert sorted(kept) == log["modified_files"]
    assert ctx.evaluation_results["success_rate"] == 1.0

    # The spec's three-way comparison, read back through the store: after is the state
    # measured after implementation, tests included.
    comparison = await store.get_comparison_data(result.evolution_id)
    assert comparison["before"] == analysis
    assert comparison["plan"] == plan
    assert comparison["implementation"] == log
    assert comparison["after"] == log["rollback_points"][-1]["state"]
    assert comparison["after"]["metrics"]["simplifications_available"] == 0
    assert comparison["after"]["tests"]["baseline"]["passed"] == 7

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
        "metrics": {
            k: v for k, v in ctx.evaluation_results["metrics_comparison"].items() if k != "tests"
        },
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
    # Another copy, differing by a comment only: neither path nor content fingerprint match,
    # so the second evolution has nothing to learn from the first and must plan the same.
    twin = tmp_path / "twin"
    shutil.copytree(project, twin)
    test_file = twin / "tests" / "test_counter.py"
    test_file.write_text(test_file.read_text().rstrip("\n") + "  # twin\n")
    async with EvolutionEngine(store) as engine:
        local = await engine.run_evolution(
            EvolutionConfig(twin, FOCUS, workdir=tmp_path / "local", agent_timeout=60)
        )
    assert remote.status is Status.COMPLETED, remote.error
    assert "learned_from" not in local.context.improvement_plan["dependencies"]
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


CLICKAPP = Path(__file__).resolve().parent / "fixtures" / "clickapp"


def _help(root: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "clickapp.cli", "greet", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout


async def test_a_click_cli_keeps_its_help_and_its_tests_verify_the_edits(
    store: SharedContextStore, tmp_path: Path
) -> None:
    project = tmp_path / "clickapp"
    shutil.copytree(CLICKAPP, project)
    async with EvolutionEngine(store) as engine:
        result = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "work", agent_timeout=60)
        )
    assert result.status is Status.COMPLETED, result.error
    work = tmp_path / "work"
    assert _help(work) == _help(project)
    text = (work / "clickapp" / "cli.py").read_text()
    assert '"""' not in text  # no docstring on a command: it is the --help text
    assert "if shout and name:" in text  # ruff's safe SIM102 fix
    assert "# Sizes are inclusive upper bounds." in text  # comments survive
    changes = {(c["action"], c["symbol"]): c for c in result.context.implementation_log["changes"]}
    assert changes[("simplify", "greet")]["outcome"] == "kept"
    assert changes[("simplify", "label")]["outcome"] == "kept"
    tests = result.comparison["after"]["tests"]
    assert tests["baseline"]["passed"] == tests["final"]["passed"] == 2
    assert "pytest" in tests["command"]


async def test_a_second_evolution_learns_from_the_first(
    store: SharedContextStore, tmp_path: Path
) -> None:
    project = tmp_path / "clickapp"
    shutil.copytree(CLICKAPP, project)
    async with EvolutionEngine(store) as engine:
        first = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "one", agent_timeout=60)
        )
        # The same project elsewhere (same content fingerprint), and its evolved copy.
        again = tmp_path / "again"
        shutil.copytree(CLICKAPP, again)
        second = await engine.run_evolution(
            EvolutionConfig(again, FOCUS, workdir=tmp_path / "two", agent_timeout=60)
        )
        third = await engine.run_evolution(
            EvolutionConfig(tmp_path / "one", FOCUS, workdir=tmp_path / "three", agent_timeout=60)
        )
    assert first.status is second.status is third.status is Status.COMPLETED
    done_or_failed = {
        c["key"]
        for c in first.context.implementation_log["changes"]
        if c.get("outcome") in ("kept", "rolled_back", "no_change")
    }
    assert done_or_failed
    for later in (second, third):
        plan = later.context.improvement_plan
        assert plan["dependencies"]["learned_from"] == [first.evolution_id]
        assert not done_or_failed & {t["key"] for t in plan["tasks"]}
    assert not third.context.implementation_log["modified_files"]


async def test_a_thousand_file_project_fits_the_store_and_finishes(
    store: SharedContextStore, tmp_path: Path
) -> None:
    project = tmp_path / "big"
    for package in range(25):
        folder = project / f"pkg{package:02d}"
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
        for n in range(42):
            (folder / f"mod{n:02d}.py").write_text(
                f"def check_{n}(a, b):\n    if a:\n        if b:\n            return {n}\n"
                f"    return 0\n\n\ndef plain_{n}(x):\n    return x + {n}\n"
            )
    assert len(list(project.rglob("*.py"))) == 1075
    async with EvolutionEngine(store) as engine:
        result = await engine.run_evolution(
            EvolutionConfig(project, FOCUS, workdir=tmp_path / "work", agent_timeout=120)
        )
    assert result.status is Status.COMPLETED, result.error
    ctx = result.context
    limit = store.config.max_payload
    for phase in (ctx.original_analysis, ctx.improvement_plan, ctx.implementation_log):
        assert len(encode(phase)) < limit
    metrics = ctx.original_analysis["metrics"]
    assert metrics["files"] == 1075
    assert metrics["improvement_counts"]["simplify"] == 1050
    assert metrics["detail"]["files_total"] == 1075
    # As many tasks as leave room for their log within the store's limit (64 KiB here).
    assert 50 < len(ctx.improvement_plan["tasks"]) < 200
    kept = [c for c in ctx.implementation_log["changes"] if c.get("outcome") == "kept"]
    assert len(kept) == ctx.evaluation_results["metrics_comparison"]["tasks"]["achieved"] > 50


async def test_ctxstore_evolve_verify_runs_the_given_command_and_rolls_back_what_fails(
    server: EmbeddedServer, actor: StoreActor, tmp_path: Path
) -> None:
    project = tmp_path / "clickapp"
    shutil.copytree(CLICKAPP, project)
    # A check that passes on the original and rejects one of the two simplifications.
    check = 'grep -q "    if shout:" clickapp/cli.py'
    env = {**os.environ, "CTXSTORE_HOME": str(tmp_path / "home")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "actors.cli",
        "--nats-url",
        server.url,
        "evolve",
        str(project),
        "--focus",
        "complexity",
        "--workdir",
        str(tmp_path / "work"),
        "--verify",
        check,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    result = json.loads(out)
    changes = {
        (c["action"], c["symbol"]): c for c in result["comparison"]["implementation"]["changes"]
    }
    assert changes[("simplify", "greet")]["outcome"] == "rolled_back"
    assert changes[("simplify", "label")]["outcome"] == "kept"
    tests = result["comparison"]["after"]["tests"]
    assert tests["command"] == check
    assert tests["final"]["returncode"] == 0
    text = (tmp_path / "work" / "clickapp" / "cli.py").read_text()
    assert "    if shout:" in text
    assert 'return "small"\n    if size < 100:' in text
