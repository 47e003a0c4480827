"""``ctxstore evolve``, ``agent`` and ``rollback``: the evolution application."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TextIO

import msgspec

from actors.cli.common import client, stop_signals, table
from actors.client import SharedContextStore
from actors.evolution import EvolutionConfig, EvolutionEngine, EvolutionResult, Progress
from actors.evolution.agents import AgentHost, build_agent
from actors.evolution.agents.rollback import restore_point
from broker import connect
from broker.redact import redact
from contracts import Stage, Status

__all__ = ["cmd_agent", "cmd_evolve", "cmd_rollback"]

_SUMMARY_METRICS = (
    "files",
    "functions",
    "complexity",
    "complexity_max",
    "high_complexity_functions",
    "simplifications_available",
    "docstring_coverage",
    "type_hint_coverage",
    "lines",
)
_STEPS = {Stage.RESEARCH: 1, Stage.PLANNING: 2, Stage.IMPLEMENTATION: 3, Stage.EVALUATION: 4}
_OUTCOMES = ("kept", "rolled_back", "no_change", "deferred")
_BAR = 24


class PhaseBars:
    """One progress line per phase: a live bar and elapsed time on a terminal, a plain line
    per step elsewhere. The bus tells phases, not steps inside them, so a running phase's bar
    sweeps rather than fills."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._current: Progress | None = None
        self._started = 0.0
        self._ticker: asyncio.Task[None] | None = None

    def __call__(self, progress: Progress) -> None:
        step = _STEPS.get(progress.stage, 0)
        if progress.state == "started":
            self._current, self._started = progress, time.perf_counter()
            if self.live:
                self._draw(step, progress.stage.value, progress.detail, 0.0, None)
                if self._ticker is None:
                    self._ticker = asyncio.get_running_loop().create_task(self._tick())
            else:
                print(f"[{step}/4] {progress.stage.value:<15} {progress.detail} ...", flush=True)
            return
        self._current = None
        if self.live:
            self._draw(
                step, progress.stage.value, progress.detail, progress.elapsed, progress.state
            )
            self.stream.write("\n")
            self.stream.flush()
        else:
            print(
                f"[{step}/4] {progress.stage.value:<15} {progress.state} "
                f"in {progress.elapsed:.2f}s {progress.detail}".rstrip(),
                flush=True,
            )

    def _draw(self, step: int, stage: str, detail: str, elapsed: float, done: str | None) -> None:
        if done is not None:
            bar = "#" * _BAR if done == "finished" else "!" * _BAR
        else:
            head = int(elapsed * 8) % _BAR
            bar = "".join("=" if i == head else "-" for i in range(_BAR))
        line = f"[{step}/4] {stage:<15} [{bar}] {elapsed:6.1f}s {done or 'running'} {detail}"
        self.stream.write("\r" + line[:120].ljust(120))
        self.stream.flush()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.125)
            current = self._current
            if current is not None:
                elapsed = time.perf_counter() - self._started
                step = _STEPS.get(current.stage, 0)
                self._draw(step, current.stage.value, current.detail, elapsed, None)

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None


def _print_summary(result: EvolutionResult) -> None:
    comparison = result.comparison
    before, plan = comparison["before"], comparison["plan"]
    implementation, after = comparison["implementation"], comparison["after"]
    evaluation = result.context.evaluation_results
    metrics = evaluation.get("metrics_comparison", {})
    print()
    if metrics:
        rows = [
            (
                name,
                metrics["before"].get(name, "-"),
                metrics.get("after", {}).get(name, "-"),
                metrics.get("delta", {}).get(name, "-"),
            )
            for name in _SUMMARY_METRICS
            if name in metrics.get("before", {})
        ]
        print(table(rows, ["METRIC", "BEFORE", "AFTER", "DELTA"]))
        print()
    tasks = plan.get("tasks", [])
    changes = [c for c in implementation.get("changes", []) if "outcome" in c]
    outcome = {k: sum(1 for c in changes if c["outcome"] == k) for k in _OUTCOMES}
    counts = metrics.get("tasks", {})
    tests = after.get("tests") or {}
    final = tests.get("final") or {}
    baseline = tests.get("baseline") or {}
    if not tests:
        verified = "tests: none found to verify with (use --verify CMD)"
    elif not baseline:
        verified = f"tests: {tests.get('command')}: {tests.get('note') or 'not run'}"
    elif not tests.get("judged"):
        verified = (
            f"tests: {tests.get('command')} fails before any edit (exit "
            f"{baseline.get('returncode')}): edits kept unverified"
        )
    else:
        verified = (
            f"tests: {tests.get('command')}: {final.get('passed', 0)} passed, "
            f"{final.get('failed', 0)} failed, {tests.get('runs', 0)} run(s)"
        )
    learned = plan.get("dependencies", {}).get("learned_from") or []
    issues = sum((before.get("metrics", {}).get("issue_counts") or {}).values())
    rows3 = [
        ("before", f"{before.get('files_analyzed', 0)} files, {issues} issues"),
        (
            "plan",
            f"{len(tasks)} tasks, estimated impact {plan.get('estimated_impact', 0)}"
            + (f", learned from {', '.join(learned)}" if learned else ""),
        ),
        (
            "implementation",
            f"{outcome['kept']} kept, {outcome['rolled_back']} rolled back, "
            f"{outcome['no_change']} without change, {outcome['deferred']} deferred; "
            f"{len(implementation.get('modified_files', []))} files",
        ),
        ("after", verified),
        (
            "evaluation",
            f"{counts.get('achieved', 0)}/{counts.get('attempted', 0)} attempted goals "
            f"achieved, success rate {evaluation.get('success_rate', 0)}",
        ),
    ]
    print(table(rows3, ["THREE-WAY", "SUMMARY"]))
    print()
    print(f"evolution  {result.evolution_id}  ({result.status.value})")
    if result.error:
        print(f"error      {result.error}")
    print(f"workdir    {result.workdir}")
    print(f"show:      ctxstore show {result.evolution_id}")
    print(f"export:    ctxstore export {result.evolution_id} -o {result.evolution_id}.ctx")
    print(f"replay:    ctxstore replay {result.evolution_id}.ctx")


async def cmd_evolve(args: argparse.Namespace) -> int:
    config = EvolutionConfig(
        target_path=args.path,
        focus_areas=args.focus,
        apply=args.apply,
        workdir=args.workdir,
        agent_timeout=args.agent_timeout,
        verify=args.verify,
        verify_timeout=args.verify_timeout,
    )
    bars = None if args.json else PhaseBars()
    try:
        async with (
            client(args) as store,
            EvolutionEngine(store, local_agents=not args.remote_agents, on_progress=bars) as engine,
        ):
            result = await engine.run_evolution(config)
    finally:
        if bars is not None:
            bars.close()
    if args.json:
        print(json.dumps(msgspec.to_builtins(result.as_dict()), indent=2))
    else:
        _print_summary(result)
    return 0 if result.status is Status.COMPLETED else 1


async def cmd_agent(args: argparse.Namespace) -> int:
    async with client(args) as store:
        url = store.servers
        assert url is not None
        config = store.config.replace(nats_url=url)
        agent = build_agent(args.name, SharedContextStore(config=config, name=f"{args.name}-agent"))
        nc = await connect(
            url, name=f"ctxstore-agent-{args.name}", long_running=True, auth=config.auth
        )
        try:
            async with agent.store, AgentHost(nc, [agent], tenant=store.config.tenant):
                with stop_signals() as signalled:
                    print(f"agent {args.name} serving on {redact(url)}", flush=True)
                    await signalled.wait()
        finally:
            await nc.close()
    return 0


async def cmd_rollback(args: argparse.Namespace) -> int:
    async with client(args) as store:
        ctx = await store.get_context(args.evolution_id)
    try:
        changed = await asyncio.to_thread(restore_point, ctx.implementation_log, args.checkpoint)
    except (ValueError, OSError) as exc:
        print(f"ctxstore: {exc}", file=sys.stderr)
        return 1
    workdir = ctx.implementation_log["rollback_points"][0]["workdir"]
    print(f"{workdir} is back at {args.checkpoint}: {len(changed)} file(s) changed")
    for relpath in changed:
        print(f"  {relpath}")
    return 0
