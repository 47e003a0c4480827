"""Realistic write bodies: the spec's example payloads, scaled.

``scaled=True`` gives the figure-3 context: the spec's examples grown to 50 issues, 50
improvements and 50 tasks (with the fields the evolve issue asks of a task). ``scaled=False``
keeps the spec's examples at their written size (a few entries each), which is what a
context looks like for most of its life and what the 100,000-context figures use.
"""

from __future__ import annotations

from typing import Any

from contracts import (
    CreateContext,
    EvaluationResults,
    ExternalResearch,
    ImplementationLog,
    ImprovementPlan,
    OriginalAnalysis,
    Stage,
    StageUpdate,
    Write,
)

__all__ = ["evolution_writes", "small_writes"]

_KINDS = ("code_smell", "missing_docstring", "complex_function", "long_function", "no_types")
_ACTIONS = ("add_docstring", "add_return_annotation", "split_function", "rename", "add_test")


def _issue(i: int) -> dict[str, Any]:
    return {
        "type": _KINDS[i % len(_KINDS)],
        "location": f"pkg/module_{i % 17}.py:{40 + i * 7}",
        "severity": ("low", "medium", "high")[i % 3],
        "message": f"function handle_{i} has cyclomatic complexity {8 + i % 9}",
    }


def _improvement(i: int) -> dict[str, Any]:
    return {
        "type": ("docstring", "complexity", "typing")[i % 3],
        "priority": ("high", "medium", "low")[i % 3],
        "target": f"pkg/module_{i % 17}.py:{40 + i * 7}",
    }


def _task(i: int) -> dict[str, Any]:
    return {
        "id": f"task-{i}",
        "file": f"pkg/module_{i % 17}.py",
        "location": f"pkg/module_{i % 17}.py:{40 + i * 7}",
        "action": _ACTIONS[i % len(_ACTIONS)],
        "priority": ("high", "medium", "low")[i % 3],
        "dependencies": [f"task-{i - 1}"] if i % 4 == 3 else [],
        "expected_effect": {"docstring_coverage": 0.01, "complexity": -0.2},
    }


def evolution_writes(seed: int, *, scaled: bool = True) -> list[Write]:
    """The writes of one whole evolution, in order (create first): 10 writes."""
    n = 50 if scaled else 2
    tasks = [_task(i) for i in range(n)]
    return [
        CreateContext(
            target_path=f"./projects/project-{seed}", focus_areas=["documentation", "complexity"]
        ),
        StageUpdate(phase=Stage.RESEARCH),
        ExternalResearch(
            best_practices=["Use type hints", "Add docstrings", "Keep functions short"][
                : 3 if scaled else 2
            ],
            references=[
                {"url": f"https://example.org/guide/{i}", "title": f"Guide {i}"}
                for i in range(5 if scaled else 1)
            ],
            patterns=[
                {"name": "Factory", "applicability": 0.8},
                {"name": "Strategy", "applicability": 0.4},
            ][: 2 if scaled else 1],
        ),
        OriginalAnalysis(
            files_analyzed=10 + seed % 90,
            metrics={"complexity": 3.5, "coverage": 75, "docstring_coverage": 0.42},
            issues=[_issue(i) for i in range(n)],
            improvements=[_improvement(i) for i in range(n)],
        ),
        StageUpdate(phase=Stage.PLANNING),
        ImprovementPlan(
            tasks=tasks,
            priorities=[t["id"] for t in tasks[:10]],
            dependencies={t["id"]: t["dependencies"] for t in tasks if t["dependencies"]},
            estimated_impact=0.7,
        ),
        StageUpdate(phase=Stage.IMPLEMENTATION),
        ImplementationLog(
            modified_files=sorted({t["file"] for t in tasks}),
            changes=[
                {"file": t["file"], "type": "docstring_added", "task": t["id"]} for t in tasks
            ],
            rollback_points=[{"id": "checkpoint-1", "timestamp": "2025-08-17T10:00:00Z"}],
        ),
        EvaluationResults(
            goals_achieved={t["id"]: i % 5 != 0 for i, t in enumerate(tasks)},
            metrics_comparison={
                "before": {"complexity": 3.5, "coverage": 75},
                "after": {"complexity": 3.1, "coverage": 78},
                "delta": {"complexity": -0.4, "coverage": 3},
            },
            success_rate=0.85,
        ),
        StageUpdate(phase=Stage.COMPLETED),
    ]


def small_writes(seed: int) -> list[Write]:
    """A compact evolution of 10 writes (a few hundred bytes each): for filling big streams."""
    return evolution_writes(seed, scaled=False)
