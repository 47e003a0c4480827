"""What the console's tests share: a console served on a free loopback port over the test's
real store, and evolutions written the way agents write them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from nats.aio.client import Client

from actors import SharedContextStore, StoreActor
from actors.console import Console, ConsoleServer, create_app
from broker import StoreConfig
from contracts import Stage, WriteKind, write_subject

__all__ = ["Recorded", "console_for", "record_evolution", "reject_write", "served_console"]


@dataclass(frozen=True)
class Recorded:
    evolution_id: str
    target: str
    success_rate: float
    rejected_seq: int


def console_for(config: StoreConfig, **kwargs: Any) -> Console:
    return Console(
        lambda tenant: SharedContextStore(
            config=config.replace(tenant=tenant), name=f"console-{tenant}"
        ),
        **kwargs,
    )


@pytest.fixture
async def served_console(
    actor: StoreActor, config: StoreConfig
) -> AsyncIterator[tuple[Console, str]]:
    """(the console, its base URL ending in '/')."""
    console = console_for(config, tenants=["other"])
    try:
        async with ConsoleServer(
            create_app(console), "127.0.0.1", 0, on_stop=console.closing.set
        ) as server:
            yield console, server.url
    finally:
        await console.aclose()


async def reject_write(nc: Client, evolution_id: str, tenant: str = "default") -> int:
    """A write the store rejects (a negative file count), published without the client, as
    a buggy agent in another language would; returns its stream sequence."""
    ack = await nc.jetstream().publish(
        write_subject(tenant, evolution_id, WriteKind.ORIGINAL_ANALYSIS),
        b'{"type": "original_analysis", "files_analyzed": -1}',
    )
    return int(ack.seq)


async def record_evolution(
    store: SharedContextStore,
    nc: Client,
    target: str,
    *,
    success_rate: float,
    complete: bool = True,
) -> Recorded:
    """An evolution through every phase, with one rejected write after the analysis."""
    eid = await store.create_context(target, ["documentation"])
    ctx = store.context(eid)
    await ctx.update_phase(Stage.RESEARCH)
    await ctx.store_external_research(
        best_practices=["Write docstrings"],
        references=[{"title": "PEP 257"}],
        patterns=[{"name": "Guard clauses", "applicability": 0.8}],
    )
    await ctx.store_original_analysis(
        files_analyzed=3,
        metrics={"complexity": 4.5, "docstring_coverage": 0.25, "lines": 120},
        issues=[{"type": "missing_docstring", "location": "a.py:1"}],
        improvements=[{"type": "add_docstring", "target": "a.py:1"}],
    )
    rejected = await reject_write(nc, eid, store.config.tenant)
    await ctx.update_phase(Stage.PLANNING)
    await ctx.store_improvement_plan(
        tasks=[{"id": "task-1", "action": "add_docstring"}],
        priorities=["task-1"],
        dependencies={"task-1": []},
        estimated_impact=0.6,
    )
    if complete:
        await ctx.update_phase(Stage.IMPLEMENTATION)
        await ctx.store_implementation_log(
            modified_files=["a.py"],
            changes=[{"file": "a.py", "type": "docstring_added"}],
            rollback_points=[
                {
                    "id": "checkpoint-1",
                    # What the evolution measured after implementation: the comparison's after.
                    "state": {
                        "files_analyzed": 3,
                        "metrics": {"complexity": 4.0, "docstring_coverage": 0.75, "lines": 131},
                        "tests": {"passed": 7, "failed": 0},
                    },
                }
            ],
        )
        await ctx.update_phase(Stage.EVALUATION)
        await ctx.store_evaluation_results(
            goals_achieved=[{"task_id": "task-1", "achieved": success_rate >= 0.5}],
            metrics_comparison={
                "before": {"complexity": 4.5, "docstring_coverage": 0.25, "lines": 120},
                "after": {"complexity": 4.0, "docstring_coverage": 0.75, "lines": 131},
                "delta": {"complexity": -0.5, "docstring_coverage": 0.5, "lines": 11},
            },
            success_rate=success_rate,
        )
        await ctx.update_phase(Stage.COMPLETED)
    return Recorded(eid, target, success_rate, rejected)
