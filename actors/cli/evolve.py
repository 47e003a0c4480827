"""``ctxstore evolve``, ``agent`` and ``rollback``: the evolution application."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

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
    "classes",
    "complexity",
    "complexity_max",
    "docstring_coverage",
    "type_hint_coverage",
    "lines",
)


def _print_progress(progress: Progress) -> None:
    steps = {Stage.RESEARCH: 1, Stage.PLANNING: 2, Stage.IMPLEMENTATION: 3, Stage.EVALUATION: 4}
    step = steps.get(progress.stage, 0)
    if progress.state == "started":
        print(f"[{step}/4] {progress.stage.value:<15} {progress.detail} ...", flush=True)
    else:
        print(
            f"[{step}/4] {progress.stage.value:<15} {progress.state} "
            f"in {progress.elapsed:.2f}s {progress.detail}".rstrip(),
            flush=True,
        )


def _print_summary(result: EvolutionResult) -> None:
    comparison = result.comparison
    before, plan = comparison["before"], comparison["plan"]
    implementation, after = comparison["implementation"], comparison["after"]
    metrics = after.get("metrics_comparison", {})
    print()
    if metrics:
        rows = []
        for name in _SUMMARY_METRICS:
            if name in metrics.get("before", {}):
                rows.append(
                    (
                        name,
                        metrics["before"].get(name, "-"),
                        metrics.get("after", {}).get(name, "-"),
                        metrics.get("delta", {}).get(name, "-"),
                    )
                )
        print(table(rows, ["METRIC", "BEFORE", "AFTER", "DELTA"]))
        print()
    tasks = plan.get("tasks", [])
    changes = implementation.get("changes", [])
    applied = [c for c in changes if c.get("type") not in ("skipped", "applied_to_target")]
    skipped = [c for c in changes if c.get("type") == "skipped"]
    goals = after.get("goals_achieved", [])
    achieved = sum(1 for g in goals if isinstance(g, dict) and g.get("achieved"))
    rows3 = [
        (
            "before",
            f"{before.get('files_analyzed', 0)} files, {len(before.get('issues', []))} "
            f"issues, {len(before.get('improvements', []))} improvements",
        ),
        ("plan", f"{len(tasks)} tasks, estimated impact {plan.get('estimated_impact', 0)}"),
        (
            "implementation",
            f"{len(applied)} changes in "
            f"{len(implementation.get('modified_files', []))} files, {len(skipped)} skipped, "
            f"{len(implementation.get('rollback_points', []))} rollback points",
        ),
        (
            "after",
            f"{achieved}/{len(goals)} goals achieved, success rate {after.get('success_rate', 0)}",
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
    )
    async with client(args) as store:
        progress = None if args.json else _print_progress
        async with EvolutionEngine(
            store, local_agents=not args.remote_agents, on_progress=progress
        ) as engine:
            result = await engine.run_evolution(config)
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
