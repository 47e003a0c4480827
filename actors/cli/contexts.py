"""``ctxstore list``, ``show`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from actors.cli.common import client, dump, table
from actors.client import SharedContextStore

__all__ = ["cmd_demo", "cmd_list", "cmd_show"]


async def cmd_list(args: argparse.Namespace) -> int:
    async with client(args) as store:
        contexts = await store.get_all_contexts()
    if args.json:
        print(dump(contexts))
        return 0
    if not contexts:
        print("no contexts")
        return 0
    rows = [
        (
            c.evolution_id,
            f"{c.created_at:%Y-%m-%d %H:%M:%S}",
            c.status,
            c.current_phase,
            len(c.phases),
            c.version,
            c.target_path,
        )
        for c in contexts
    ]
    print(table(rows, ["ID", "CREATED", "STATUS", "PHASE", "PHASES", "VERSION", "TARGET"]))
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
    async with client(args) as store:
        ctx = await store.get_context(args.evolution_id, at=args.at)
    if args.json:
        print(dump(ctx))
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
    print(table(phases, ["PHASE", "CONTENT"]))
    if ctx.error_log:
        print("\nerrors:")
        for entry in ctx.error_log:
            print(f"  - {entry}")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    """The spec's four phases, with two agents in parallel for the first."""
    async with client(args) as store:
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
