"""Turn the stored analysis and research into an ordered, dependency-aware task plan.

Ordering rules (deterministic):

* A structural rewrite of a symbol (``reduce_complexity``, ``split_function``) runs
  before surface edits of the same symbol (docstring, annotations): the docstring should
  describe the reshaped function, and a rewrite may replace the signature.
* ``add_tests`` runs after every structural rewrite, so tests pin the final shape.
* Otherwise tasks run by priority (high first; a kind that keeps failing in earlier
  evolutions of the project drops one level), then file, then bottom-up by line, so the
  line numbers recorded for tasks not yet run stay accurate while a file is being edited.
  Correctness does not rely on this: executors locate their target by qualified symbol
  name in the current file, not by line.

Learning (see ``learning``): a task done or failed in an earlier evolution of the same project,
on the same source, is not planned again; the plan says which evolutions it learned from
(``dependencies["learned_from"]``: the plan depends on their outcomes) and what it left out.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .learning import Learning, task_key

__all__ = ["ACTION_EFFECTS", "LEARNED_FROM", "PlanResult", "plan_improvements"]

JSON = dict[str, Any]

PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}
STRUCTURAL_ACTIONS = frozenset({"reduce_complexity", "simplify", "split_function"})
# Key of ``dependencies`` naming the earlier evolutions the plan learned from; task ids are
# "task-N", so it cannot collide with one.
LEARNED_FROM = "learned_from"
SURFACE_ACTIONS = frozenset({"add_docstring", "add_return_annotation", "add_annotations"})
ACTION_EFFECTS: dict[str, JSON] = {
    "add_docstring": {"metric": "docstring_coverage", "direction": "increase"},
    "add_return_annotation": {"metric": "type_hint_coverage", "direction": "increase"},
    "add_annotations": {"metric": "type_hint_coverage", "direction": "increase"},
    "reduce_complexity": {"metric": "complexity_max", "direction": "decrease"},
    "simplify": {"metric": "simplifications_available", "direction": "decrease"},
    "split_function": {"metric": "function_length_max", "direction": "decrease"},
    "add_tests": {"metric": "test_files", "direction": "increase"},
}
# Words by which a stored best-practice sentence is recognised as backing an action.
_PRACTICE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "add_docstring": ("docstring",),
    "add_return_annotation": ("-> none", "return type", "annotat"),
    "add_annotations": ("annotat", "type hint"),
    "reduce_complexity": ("complexity", "guard clause"),
    "simplify": ("complexity", "nested conditional"),
    "split_function": ("extract helper", "short", "single-purpose"),
    "add_tests": ("test",),
}
# Chance that one task of this kind visibly improves the project: a rough, fixed heuristic.
_ACTION_WEIGHT = {
    "add_docstring": 0.03,
    "add_return_annotation": 0.02,
    "add_annotations": 0.03,
    "reduce_complexity": 0.10,
    "simplify": 0.05,
    "split_function": 0.08,
    "add_tests": 0.15,
}
_PRIORITY_FACTOR = {"high": 1.0, "medium": 0.6, "low": 0.3}
_ACTION_ORDER = tuple(ACTION_EFFECTS)


@dataclass(frozen=True)
class PlanResult:
    """What the planner stores as ``improvement_plan`` (``excluded`` is reported, not stored
    whole: its count goes in the planner's summary)."""

    tasks: list[JSON]
    priorities: list[str]
    dependencies: dict[str, list[str]]
    estimated_impact: float
    excluded: list[JSON] = field(default_factory=list)

    def to_dict(self) -> JSON:
        """A deep copy as the plain dict the store holds."""
        return asdict(self)

    def store_kwargs(self) -> JSON:
        """Keyword arguments for ``store_improvement_plan``."""
        data = self.to_dict()
        del data["excluded"]
        return data


def plan_improvements(
    analysis: Mapping[str, Any],
    research: Mapping[str, Any],
    *,
    max_tasks: int | None = None,
    learning: Learning | None = None,
) -> PlanResult:
    """One task per known improvement of ``analysis["improvements"]``, less those that
    ``learning`` says were done or failed before on the same source.

    Task ids follow the analysis order (file, line); ``priorities`` is the execution
    order; ``dependencies`` lists only tasks that have some. With ``max_tasks`` the
    highest-priority tasks are kept (by the same ordering, before dependencies).
    """
    learning = learning or Learning()
    practices = [str(p) for p in research.get("best_practices") or []]
    improvements: list[Mapping[str, Any]] = []
    excluded: list[JSON] = []
    for imp in analysis.get("improvements") or []:
        if not isinstance(imp, Mapping) or imp.get("type") not in ACTION_EFFECTS:
            continue
        key = task_key(imp.get("type"), imp.get("file"), imp.get("symbol"))
        reason = learning.exclusion(key, imp.get("source_hash"))
        if reason is None:
            improvements.append(imp)
        else:
            excluded.append({"key": key, "reason": reason})

    def rank(imp: Mapping[str, Any]) -> tuple[Any, ...]:
        # A kind that keeps failing drops one priority level, behind that level's others.
        failing = int(learning.keeps_failing(str(imp.get("type"))))
        priority, *rest = _sort_key(imp)
        return (priority + failing, failing, *rest)

    if max_tasks is not None:
        keep = sorted(range(len(improvements)), key=lambda i: rank(improvements[i]))
        kept = set(keep[:max_tasks])
        improvements = [imp for i, imp in enumerate(improvements) if i in kept]
    tasks = [_task(number, imp, practices) for number, imp in enumerate(improvements, start=1)]
    for task in tasks:
        sources = learning.sources(task["key"])
        if learning.keeps_failing(task["action"]):
            rate = learning.failure_rate(task["action"])
            task["learned"] = f"{task['action']} failed in {rate:.0%} of earlier attempts"
            sources = sorted(set(sources) | set(learning.evolutions))
        if sources:
            task["learned_from"] = sources
    _link_dependencies(tasks)
    dependencies = {t["id"]: list(t["depends_on"]) for t in tasks if t["depends_on"]}
    if learning.evolutions:
        dependencies[LEARNED_FROM] = list(learning.evolutions)
    return PlanResult(
        tasks=tasks,
        priorities=_execution_order(tasks, learning),
        dependencies=dependencies,
        estimated_impact=_estimated_impact(tasks),
        excluded=excluded,
    )


def _task(number: int, improvement: Mapping[str, Any], practices: Sequence[str]) -> JSON:
    action = str(improvement["type"])
    file = str(improvement.get("file", ""))
    line = _as_int(improvement.get("line"))
    priority = str(improvement.get("priority", "medium"))
    return {
        "id": f"task-{number}",
        "improvement_id": improvement.get("id"),
        "key": task_key(action, file, improvement.get("symbol")),
        "source_hash": improvement.get("source_hash"),
        "action": action,
        "file": file,
        "line": line,
        "symbol": improvement.get("symbol"),
        "location": str(improvement.get("target") or f"{file}:{line}"),
        "priority": priority if priority in PRIORITY_RANK else "medium",
        "depends_on": [],
        "expected_effect": dict(ACTION_EFFECTS[action]),
        "best_practice": _matching_practice(action, practices),
        "rationale": improvement.get("rationale"),
    }


def _matching_practice(action: str, practices: Sequence[str]) -> str | None:
    keywords = _PRACTICE_KEYWORDS[action]
    for practice in practices:
        lowered = practice.lower()
        if any(word in lowered for word in keywords):
            return practice
    return None


def _link_dependencies(tasks: list[JSON]) -> None:
    structural = [t for t in tasks if t["action"] in STRUCTURAL_ACTIONS]
    for task in tasks:
        if task["action"] in SURFACE_ACTIONS:
            deps = [
                s["id"]
                for s in structural
                if (s["file"], s["symbol"]) == (task["file"], task["symbol"])
            ]
        elif task["action"] == "add_tests":
            deps = [s["id"] for s in structural]
        else:
            deps = []
        task["depends_on"] = deps


def _sort_key(task: Mapping[str, Any]) -> tuple[int, str, int, int, str]:
    action = str(task.get("action", task.get("type", "")))
    return (
        PRIORITY_RANK.get(str(task.get("priority")), 1),
        str(task.get("file", "")),
        -_as_int(task.get("line")),
        _ACTION_ORDER.index(action) if action in _ACTION_ORDER else len(_ACTION_ORDER),
        str(task.get("id", "")),
    )


def _execution_order(tasks: Sequence[JSON], learning: Learning | None = None) -> list[str]:
    """Kahn's topological sort, always taking the best-ranked ready task."""
    by_id = {t["id"]: t for t in tasks}
    waiting = {t["id"]: {d for d in t["depends_on"] if d in by_id} for t in tasks}

    def key(task: Mapping[str, Any]) -> tuple[Any, ...]:
        priority, *rest = _sort_key(task)
        failing = int(learning is not None and learning.keeps_failing(str(task["action"])))
        return (priority + failing, failing, *rest)

    ready = [(key(t), t["id"]) for t in tasks if not waiting[t["id"]]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, task_id = heapq.heappop(ready)
        order.append(task_id)
        for other, deps in waiting.items():
            if task_id in deps:
                deps.discard(task_id)
                if not deps:
                    heapq.heappush(ready, (key(by_id[other]), other))
    # Only a cycle leaves tasks behind; run them last rather than dropping them.
    order.extend(sorted((t for t in waiting if t not in order), key=lambda i: key(by_id[i])))
    return order


def _estimated_impact(tasks: Sequence[JSON]) -> float:
    """1 - P(no task helps), treating tasks as independent chances; always within 0..1."""
    miss = 1.0
    for task in tasks:
        chance = _ACTION_WEIGHT[task["action"]] * _PRIORITY_FACTOR[task["priority"]]
        miss *= 1.0 - chance
    return round(1.0 - miss, 2)


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0
