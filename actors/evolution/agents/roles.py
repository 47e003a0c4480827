"""The five roles of an evolution, each reading and writing only through the store."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.client import SharedContextStore
from actors.evolution.agents.base import Agent
from actors.evolution.agents.logic import (
    AnalysisResult,
    CatalogueSource,
    Executor,
    ResearchSource,
    WorkingCopy,
    analyze_project,
    default_executors,
    evaluate,
    execute_plan,
    plan_improvements,
    scan_project_facts,
)
from actors.evolution.agents.rollback import blob_folder, compact_log
from contracts import encode

__all__ = [
    "AGENT_NAMES",
    "CodeAnalysisAgent",
    "EvaluatorAgent",
    "PlannerAgent",
    "RefactorAgent",
    "ResearchAgent",
    "build_agent",
]

OPTION_WORKDIR = "workdir"
OPTION_APPLY = "apply"


MAX_TASKS = 200


def _size(payload: Mapping[str, Any]) -> int:
    return len(encode(payload))


def _budget(store: SharedContextStore) -> int:
    # Room for the write's envelope (type tag, headers) under the store's payload limit.
    return store.config.max_payload - 1024


def fit_analysis(payload: dict[str, Any], budget: int) -> dict[str, Any]:
    """Drop per-symbol detail, then the tail of the issue list, until the analysis fits.
    What was dropped is counted in ``metrics`` so nothing disappears silently."""
    if _size(payload) <= budget:
        return payload
    metrics = {
        k: v for k, v in payload["metrics"].items() if k not in ("per_function", "per_class")
    }
    payload = {**payload, "metrics": {**metrics, "detail_dropped": True}}
    issues = list(payload["issues"])
    while issues and _size(payload) > budget:
        issues = issues[: len(issues) * 3 // 4]
        payload = {**payload, "issues": issues}
        payload["metrics"]["issues_listed"] = len(issues)
    return payload


def fit_changes(changes: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """Keep every change; drop their diffs (the working copy has them) if too large."""
    if _size({"changes": changes}) <= budget:
        return changes
    return [{k: v for k, v in c.items() if k != "diff"} for c in changes]


def _workdir(options: Mapping[str, str]) -> Path:
    try:
        return Path(options[OPTION_WORKDIR])
    except KeyError:
        raise ValueError("the request names no working directory (option 'workdir')") from None


def _analyze(target: Path, focus_areas: Sequence[str]) -> AnalysisResult:
    if not target.is_dir():
        raise FileNotFoundError(f"target {target} is not a directory")
    return analyze_project(target, focus_areas)


class ResearchAgent(Agent):
    name = "research"

    def __init__(self, store: SharedContextStore, source: ResearchSource | None = None) -> None:
        super().__init__(store)
        self.source: ResearchSource = source or CatalogueSource()

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        ctx = await self.store.get_context(evolution_id)
        facts = await asyncio.to_thread(scan_project_facts, Path(ctx.target_path))
        result = await self.source.research(ctx.focus_areas, facts)
        await self.store.store_external_research(**result.store_kwargs(), evolution_id=evolution_id)
        return {"best_practices": len(result.best_practices), "patterns": len(result.patterns)}


class CodeAnalysisAgent(Agent):
    name = "analysis"

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        ctx = await self.store.get_context(evolution_id)
        result = await asyncio.to_thread(_analyze, Path(ctx.target_path), ctx.focus_areas)
        payload = fit_analysis(result.store_kwargs(), _budget(self.store))
        await self.store.store_original_analysis(**payload, evolution_id=evolution_id)
        return {"files": result.files_analyzed, "issues": len(result.issues)}


class PlannerAgent(Agent):
    name = "planner"

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        ctx = await self.store.get_context(evolution_id)
        if not ctx.original_analysis:
            raise ValueError("no original_analysis to plan from")
        plan = plan_improvements(ctx.original_analysis, ctx.external_research, max_tasks=MAX_TASKS)
        await self.store.store_improvement_plan(**plan.store_kwargs(), evolution_id=evolution_id)
        return {"tasks": len(plan.tasks), "estimated_impact": plan.estimated_impact}


class RefactorAgent(Agent):
    """Executes the plan on a working copy; with the ``apply`` option, copies the verified
    result over the target's files afterwards."""

    name = "refactor"

    def __init__(
        self, store: SharedContextStore, executors: Sequence[Executor] | None = None
    ) -> None:
        super().__init__(store)
        self.executors = list(executors) if executors is not None else default_executors()

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        ctx = await self.store.get_context(evolution_id)
        plan = ctx.improvement_plan
        target, workdir = Path(ctx.target_path), _workdir(options)
        result = await asyncio.to_thread(self._execute, target, workdir, plan)
        changes = list(result.changes)
        if options.get(OPTION_APPLY) == "true":
            for relpath in result.modified_files:
                await asyncio.to_thread(shutil.copy2, workdir / relpath, target / relpath)
                changes.append({"type": "applied_to_target", "file": relpath})
        points = compact_log(result.rollback_points)
        if points:
            points[0]["workdir"] = str(workdir)
        room = _budget(self.store) - _size({"p": points, "m": result.modified_files})
        await self.store.store_implementation_log(
            modified_files=result.modified_files,
            changes=fit_changes(changes, room),
            rollback_points=points,
            evolution_id=evolution_id,
        )
        return {"modified_files": len(result.modified_files), "skipped": len(result.skipped)}

    def _execute(self, target: Path, workdir: Path, plan: Mapping[str, Any]) -> Any:
        copy = WorkingCopy.create(target, workdir, blob_dir=blob_folder(workdir))
        return execute_plan(
            plan.get("tasks") or [], copy, self.executors, order=plan.get("priorities")
        )


class EvaluatorAgent(Agent):
    """Re-analyses the result and performs the three-way comparison through the store."""

    name = "evaluator"

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        comparison = await self.store.get_comparison_data(evolution_id)
        ctx = await self.store.get_context(evolution_id)
        after = await asyncio.to_thread(_analyze, _workdir(options), ctx.focus_areas)
        result = evaluate(
            comparison["before"], comparison["plan"], comparison["implementation"], after
        )
        await self.store.store_evaluation_results(
            **result.store_kwargs(), evolution_id=evolution_id
        )
        return {"success_rate": result.success_rate}


AGENT_NAMES = (
    ResearchAgent.name,
    CodeAnalysisAgent.name,
    PlannerAgent.name,
    RefactorAgent.name,
    EvaluatorAgent.name,
)


def build_agent(name: str, store: SharedContextStore) -> Agent:
    """The agent called ``name`` (one of ``AGENT_NAMES``), with default collaborators."""
    roles: dict[str, type[Agent]] = {
        ResearchAgent.name: ResearchAgent,
        CodeAnalysisAgent.name: CodeAnalysisAgent,
        PlannerAgent.name: PlannerAgent,
        RefactorAgent.name: RefactorAgent,
        EvaluatorAgent.name: EvaluatorAgent,
    }
    try:
        role = roles[name]
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; expected one of {', '.join(roles)}") from None
    return role(store)
