"""The five roles of an evolution, each reading and writing only through the store."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.client import SharedContextStore
from actors.core.fold import measured_after
from actors.evolution.agents.base import Agent
from actors.evolution.agents.logic import (
    LEARNED_FROM,
    AnalysisResult,
    CatalogueSource,
    Executor,
    ImplementationResult,
    Learning,
    ResearchSource,
    Verifier,
    WorkingCopy,
    analysis_payload,
    analyze_files,
    analyze_project,
    default_executors,
    default_test_command,
    encoded_size,
    evaluate,
    execute_plan,
    plan_improvements,
    scan_project_facts,
)
from actors.evolution.agents.rollback import blob_folder
from contracts import EvolutionContext

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
# The command that verifies edits: absent or "auto" = the project's tests when found,
# "none" = no verification, anything else = a shell command run in the working copy.
OPTION_VERIFY = "verify"
OPTION_VERIFY_TIMEOUT = "verify_timeout"

MAX_TASKS = 200
# Earlier evolutions of other paths examined for a matching content fingerprint.
MAX_FINGERPRINT_CANDIDATES = 25
# Summary figures of the state after implementation: the metrics without lists or detail.
_AFTER_METRICS_LEFT_OUT = ("detail", "issue_counts", "tools")


def _budget(store: SharedContextStore) -> int:
    # Room for the write's envelope (type tag, headers) under the store's payload limit.
    return store.config.max_payload - 1024


def fit_changes(changes: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """Keep every change; drop their free-text detail (the working copy has the edits) and
    then shorten reasons, if too large."""
    if encoded_size({"changes": changes}) <= budget:
        return changes
    changes = [{k: v for k, v in c.items() if k != "detail"} for c in changes]
    if encoded_size({"changes": changes}) <= budget:
        return changes
    return [{**c, "reason": str(c.get("reason", ""))[:80]} if "reason" in c else c for c in changes]


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
        payload = analysis_payload(result, _budget(self.store))
        await self.store.store_original_analysis(**payload, evolution_id=evolution_id)
        return {
            "files": result.files_analyzed,
            "issues": len(result.issues),
            "improvements_listed": len(payload["improvements"]),
        }


class PlannerAgent(Agent):
    """Plans from the analysis and research, and from what earlier evolutions of the same
    project (same path, or same content fingerprint) did."""

    name = "planner"

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        ctx = await self.store.get_context(evolution_id)
        if not ctx.original_analysis:
            raise ValueError("no original_analysis to plan from")
        learning = await self._learning(ctx)
        # Half the payload limit: the implementation log holds an entry and a rollback point
        # per task, so a plan that fills a write would leave its log too large for one.
        budget = _budget(self.store) // 2
        max_tasks = MAX_TASKS
        while True:
            plan = plan_improvements(
                ctx.original_analysis,
                ctx.external_research,
                max_tasks=max_tasks,
                learning=learning,
            )
            size = encoded_size(plan.store_kwargs())
            if size <= budget or max_tasks <= 1:
                break
            max_tasks = max(1, min(max_tasks - 1, int(max_tasks * budget / size * 0.95)))
        await self.store.store_improvement_plan(**plan.store_kwargs(), evolution_id=evolution_id)
        return {
            "tasks": len(plan.tasks),
            "estimated_impact": plan.estimated_impact,
            "excluded": len(plan.excluded),
            "task_limit": max_tasks,
            LEARNED_FROM: learning.evolutions,
        }

    async def _learning(self, ctx: EvolutionContext) -> Learning:
        fingerprint = ctx.original_analysis.get("metrics", {}).get("fingerprint")
        earlier = [
            s
            for s in await self.store.get_all_contexts()
            if s.evolution_id != ctx.evolution_id and "implementation_log" in s.phases
        ]
        same_path = [s for s in earlier if s.target_path == ctx.target_path]
        others = [s for s in earlier if s.target_path != ctx.target_path]
        others = others[-MAX_FINGERPRINT_CANDIDATES:]
        contexts = await asyncio.gather(
            *(self.store.get_context(s.evolution_id) for s in [*same_path, *others])
        )
        matching = [
            c
            for c in contexts
            if c.target_path == ctx.target_path or (fingerprint and fingerprint in _fingerprints(c))
        ]
        matching.sort(key=lambda c: c.created_at)
        return Learning.from_logs((c.evolution_id, c.implementation_log) for c in matching)


def _fingerprints(ctx: EvolutionContext) -> set[str]:
    """The content fingerprints an evolution saw: before, and after implementation."""
    found = {
        ctx.original_analysis.get("metrics", {}).get("fingerprint"),
        measured_after(ctx.implementation_log).get("metrics", {}).get("fingerprint"),
    }
    return {f for f in found if isinstance(f, str)}


class RefactorAgent(Agent):
    """Executes the plan on a working copy, verified by the project's tests; measures the
    state after; with the ``apply`` option, copies the verified result over the target."""

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
        result, after = await asyncio.to_thread(
            self._execute, target, workdir, plan, options, ctx.focus_areas
        )
        changes = list(result.changes)
        if options.get(OPTION_APPLY) == "true":
            for relpath in result.modified_files:
                await asyncio.to_thread(shutil.copy2, workdir / relpath, target / relpath)
                changes.append({"type": "applied_to_target", "file": relpath})
        points = result.rollback_points
        points[0]["workdir"] = str(workdir)
        points[-1]["state"] = after
        room = _budget(self.store) - encoded_size({"p": points, "m": result.modified_files})
        await self.store.store_implementation_log(
            modified_files=result.modified_files,
            changes=fit_changes(changes, room),
            rollback_points=points,
            evolution_id=evolution_id,
        )
        return {"modified_files": len(result.modified_files), **result.counts}

    def _execute(
        self,
        target: Path,
        workdir: Path,
        plan: Mapping[str, Any],
        options: Mapping[str, str],
        focus: Sequence[str],
    ) -> tuple[ImplementationResult, dict[str, Any]]:
        copy = WorkingCopy.create(target, workdir, blob_dir=blob_folder(workdir))
        result = execute_plan(
            plan.get("tasks") or [],
            copy,
            self.executors,
            order=plan.get("priorities"),
            verifier=_verifier(workdir, options),
        )
        analysis = analyze_project(workdir, focus)
        _record_after_hashes(result, analysis)
        metrics = {k: v for k, v in analysis.metrics.items() if k not in _AFTER_METRICS_LEFT_OUT}
        after = {
            "metrics": metrics,
            "tests": result.tests,
            "files_analyzed": analysis.files_analyzed,
        }
        return result, after


def _verifier(workdir: Path, options: Mapping[str, str]) -> Verifier | None:
    choice = options.get(OPTION_VERIFY, "auto").strip()
    try:
        timeout = float(options.get(OPTION_VERIFY_TIMEOUT, "600"))
    except ValueError:
        timeout = 600.0
    if choice == "none":
        return None
    if choice and choice != "auto":
        return Verifier(workdir, choice, timeout)
    command = default_test_command(workdir)
    return Verifier(workdir, command, timeout) if command else None


def _record_after_hashes(result: ImplementationResult, analysis: AnalysisResult) -> None:
    """Each kept task's symbol hash after the edit, so a later evolution knows it is done."""
    by_file = {f.file: f for f in analysis.files}
    for change in result.changes:
        if change.get("outcome") != "kept":
            continue
        facts = by_file.get(str(change.get("file")))
        if facts is None:
            continue
        symbol = change.get("symbol")
        fn = next((f for f in facts.functions if f.name == symbol), None)
        if fn is not None:
            change["after_hash"] = fn.source_hash
        else:
            digest = next((h for name, _, h in facts.classes if name == symbol), None)
            change["after_hash"] = digest or facts.digest[:16]


class EvaluatorAgent(Agent):
    """Re-analyses the edited files and performs the three-way comparison through the store."""

    name = "evaluator"

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        comparison = await self.store.get_comparison_data(evolution_id)
        ctx = await self.store.get_context(evolution_id)
        modified = list(comparison["implementation"].get("modified_files") or [])
        workdir = _workdir(options)
        reanalysis = (
            await asyncio.to_thread(analyze_files, workdir, modified, ctx.focus_areas)
            if modified and workdir.is_dir()
            else None
        )
        result = evaluate(
            comparison["before"],
            comparison["plan"],
            comparison["implementation"],
            comparison["after"],
            reanalysis,
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
