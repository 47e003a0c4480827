"""``ctxstore``: run the store, and look at what it holds.

With no ``--nats-url`` (and no ``NATS_URL``), every command uses the local store directory
(``--home``, default ``$CTXSTORE_HOME`` or ``~/.local/share/ctxstore``): ``serve`` runs the
embedded server there; other commands use that server while it runs, or start the embedded
server and a store actor on the same directory for the length of the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from actors.agents import AGENT_NAMES, AgentHost, build_agent
from actors.agents.rollback import restore_point
from actors.cli_history import parse_point
from actors.cli_history import register as register_history_commands
from actors.client import SharedContextStore
from actors.engine import EvolutionConfig, EvolutionEngine, EvolutionResult, Progress
from actors.errors import ContextStoreError
from actors.local import LocalStack, default_home
from actors.store_actor import StoreActor
from broker import BrokerError, ConfigError, StoreConfig, connect
from contracts import Stage, Status

__all__ = ["main"]

Command = Callable[[argparse.Namespace], Awaitable[int]]


def _table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _dump(value: Any) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=False)


def _client(args: argparse.Namespace) -> SharedContextStore:
    return SharedContextStore(args.nats_url, home=args.home, name="ctxstore-cli")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until_signal_or_stopped(actor: StoreActor) -> None:
    """Until SIGINT/SIGTERM, or until the actor stops on its own: then raise why, so the
    process exits non-zero and its supervisor restarts it (the restart replays)."""
    signalled = asyncio.create_task(_wait_for_signal())
    stopped = asyncio.create_task(actor.wait())
    try:
        await asyncio.wait({signalled, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
        stopped.cancel()
    if stopped.done() and not stopped.cancelled():
        stopped.result()  # raises the failure
        raise RuntimeError("the store actor stopped")


async def cmd_serve(args: argparse.Namespace) -> int:
    config = StoreConfig.build(nats_url=args.nats_url, backend=args.backend)
    if config.nats_url:
        nc = await connect(config.nats_url, name="ctxstore-actor", long_running=True)
        try:
            async with StoreActor(nc, config, owns_process=True) as actor:
                print(f"store actor serving {config.nats_url} (seq {actor.state.applied_seq})")
                print(f"agents connect with: NATS_URL={config.nats_url}", flush=True)
                await _until_signal_or_stopped(actor)
        finally:
            await nc.close()
        return 0
    home = args.store_dir or args.home
    async with LocalStack(home, config, port=args.port) as stack:
        print(f"ctxstore serving on {stack.url} (store dir {home})")
        print(f"agents connect with: NATS_URL={stack.url}", flush=True)
        await _wait_for_signal()
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with _client(args) as store:
        contexts = await store.get_all_contexts()
    if args.json:
        print(json.dumps(contexts, indent=2))
        return 0
    if not contexts:
        print("no contexts")
        return 0
    rows = [
        (
            c["evolution_id"],
            c["created_at"][:19].replace("T", " "),
            c["status"],
            c["current_phase"],
            len(c["phases"]),
            c["version"],
            c["target_path"],
        )
        for c in contexts
    ]
    print(_table(rows, ["ID", "CREATED", "STATUS", "PHASE", "PHASES", "VERSION", "TARGET"]))
    return 0


def _phase_line(name: str, data: dict[str, Any]) -> tuple[str, str]:
    if not data:
        return name, "-"
    parts = []
    for key, value in data.items():
        if isinstance(value, list | dict):
            parts.append(f"{key}: {len(value)}")
        else:
            parts.append(f"{key}: {value}")
    return name, ", ".join(parts)


async def cmd_show(args: argparse.Namespace) -> int:
    async with _client(args) as store:
        ctx = await store.get_context(args.evolution_id, at=args.at)
    if args.json:
        print(_dump(ctx))
        return 0
    if args.at is not None:
        print(f"as of       {args.at}")
    print(f"evolution   {ctx.evolution_id}")
    print(f"target      {ctx.target_path}")
    print(f"focus       {', '.join(ctx.focus_areas) or '-'}")
    print(f"created     {ctx.created_at.isoformat()}")
    print(f"status      {ctx.status}   phase {ctx.current_phase}   version {ctx.version}")
    print()
    phases = [
        _phase_line(name, getattr(ctx, name))
        for name in (
            "external_research",
            "original_analysis",
            "improvement_plan",
            "implementation_log",
            "evaluation_results",
        )
    ]
    print(_table(phases, ["PHASE", "CONTENT"]))
    if ctx.error_log:
        print("\nerrors:")
        for entry in ctx.error_log:
            print(f"  - {entry}")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    """The spec's four phases, with two agents in parallel for the first."""
    async with _client(args) as store:
        eid = await store.create_context(args.target, ["documentation", "complexity"])
        print(f"created {eid}")
        async with SharedContextStore(store.url, home=args.home, name="research-agent") as other:
            await store.update_phase("research")
            await asyncio.gather(
                other.store_external_research(
                    best_practices=["Use type hints", "Add docstrings"],
                    references=[{"url": "https://peps.python.org/pep-0257/", "title": "PEP 257"}],
                    patterns=[{"name": "Factory", "applicability": 0.8}],
                    evolution_id=eid,
                ),
                store.store_original_analysis(
                    files_analyzed=10,
                    metrics={"complexity": 3.5, "coverage": 75},
                    issues=[{"type": "code_smell", "location": "file:42"}],
                    improvements=[{"type": "docstring", "priority": "high"}],
                ),
            )
        print("phase 1: research and analysis stored in parallel")
        await store.update_phase("planning")
        context = await store.get_context()
        improvements = context.original_analysis["improvements"]
        tasks = [{"id": f"task-{i + 1}", **imp} for i, imp in enumerate(improvements)]
        await store.store_improvement_plan(
            tasks=tasks,
            priorities=[t["id"] for t in tasks],
            dependencies={},
            estimated_impact=0.7,
        )
        print(f"phase 2: plan with {len(tasks)} task(s)")
        await store.update_phase("implementation")
        await store.store_implementation_log(
            modified_files=["agent.py"],
            changes=[{"file": "agent.py", "type": "docstring_added"}],
            rollback_points=[{"id": "checkpoint-1", "timestamp": context.created_at.isoformat()}],
        )
        print("phase 3: implementation logged")
        await store.update_phase("evaluation")
        comparison = await store.get_comparison_data()
        await store.store_evaluation_results(
            goals_achieved=[t["id"] for t in comparison["plan"]["tasks"]],
            metrics_comparison={
                "before": comparison["before"]["metrics"],
                "after": {"complexity": 3.1, "coverage": 80},
                "delta": {"complexity": -0.4, "coverage": 5},
            },
            success_rate=1.0,
        )
        await store.update_phase("completed")
        print("phase 4: evaluation stored; evolution completed")
        print(f"\nshow it with: ctxstore show {eid}")
    return 0


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
        print(_table(rows, ["METRIC", "BEFORE", "AFTER", "DELTA"]))
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
    print(_table(rows3, ["THREE-WAY", "SUMMARY"]))
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
    async with _client(args) as store:
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
    async with _client(args) as store:
        agent = build_agent(args.name, SharedContextStore(store.url, name=f"{args.name}-agent"))
        url = store.url
        assert url is not None
        nc = await connect(url, name=f"ctxstore-agent-{args.name}", long_running=True)
        try:
            async with agent.store, AgentHost(nc, [agent], tenant=store.config.tenant):
                print(f"agent {args.name} serving on {url}", flush=True)
                await _wait_for_signal()
        finally:
            await nc.close()
    return 0


async def cmd_rollback(args: argparse.Namespace) -> int:
    async with _client(args) as store:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctxstore", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home",
        type=Path,
        default=default_home(),
        help="local store directory (default: %(default)s)",
    )
    parser.add_argument(
        "--nats-url", default=None, help="use this NATS server (default: $NATS_URL or local)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server and the store actor until stopped")
    serve.add_argument("--port", type=int, default=0, help="client port (default: any free)")
    serve.add_argument("--store-dir", type=Path, default=None, help="server store directory")
    serve.add_argument("--backend", choices=["memory", "file"], default=None)
    serve.set_defaults(run=cmd_serve)

    lst = sub.add_parser("list", help="list contexts")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(run=cmd_list)

    show = sub.add_parser("show", help="show one context (default: the newest)")
    show.add_argument("evolution_id", nargs="?", default=None)
    show.add_argument("--json", action="store_true")
    show.add_argument(
        "--at", type=parse_point, default=None, help="as it was at a sequence or ISO time"
    )
    show.set_defaults(run=cmd_show)
    register_history_commands(sub)

    evolve = sub.add_parser("evolve", help="run an evolution of a Python project")
    evolve.add_argument("path", help="the project to evolve")
    evolve.add_argument(
        "--focus",
        nargs="+",
        default=["documentation"],
        help="focus areas (e.g. documentation complexity typing)",
    )
    evolve.add_argument(
        "--apply", action="store_true", help="write the result over the project's files"
    )
    evolve.add_argument("--workdir", type=Path, default=None, help="where the working copy goes")
    evolve.add_argument("--agent-timeout", type=float, default=120.0)
    evolve.add_argument(
        "--remote-agents",
        action="store_true",
        help="use agents started with 'ctxstore agent NAME' instead of in-process ones",
    )
    evolve.add_argument("--json", action="store_true", help="print the results as JSON")
    evolve.set_defaults(run=cmd_evolve)

    rollback = sub.add_parser(
        "rollback", help="bring an evolution's working copy back to a rollback point"
    )
    rollback.add_argument("evolution_id")
    rollback.add_argument("checkpoint", help="e.g. checkpoint-1 (before any edit)")
    rollback.set_defaults(run=cmd_rollback)

    agent = sub.add_parser("agent", help="run one agent against a shared server")
    agent.add_argument("name", choices=AGENT_NAMES)
    agent.set_defaults(run=cmd_agent)

    demo = sub.add_parser("demo", help="run the spec's four phases against the store")
    demo.add_argument("--target", default="./my-project")
    demo.set_defaults(run=cmd_demo)
    return parser


def _run(coro: Awaitable[int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command: Command = args.run
    try:
        return _run(command(args))
    except (ContextStoreError, ConfigError, BrokerError) as exc:
        print(f"ctxstore: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
