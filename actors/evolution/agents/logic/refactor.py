"""Run a plan's tasks against a working copy through pluggable executors.

Rollback points: one before any edit (``before-evolution``), then one after each applied
task, so any single edit can be undone. A task that is skipped, or whose executor
raises, leaves the copy exactly as the last rollback point (it is restored).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .executors import Change, Executor, Skip
from .workcopy import WorkingCopy

__all__ = ["ImplementationResult", "execute_plan"]

JSON = dict[str, Any]


@dataclass(frozen=True)
class ImplementationResult:
    """What the refactor agent stores as ``implementation_log`` (plus ``skipped``)."""

    modified_files: list[str]
    changes: list[JSON]
    rollback_points: list[JSON]
    skipped: list[JSON]

    def to_dict(self) -> JSON:
        """Every field as plain data."""
        return asdict(self)

    def store_kwargs(self) -> JSON:
        """Keyword arguments for ``store_implementation_log`` (skips are in ``changes``)."""
        data = self.to_dict()
        del data["skipped"]
        return data


def execute_plan(
    plan_tasks: Sequence[Mapping[str, Any]],
    copy: WorkingCopy,
    executors: Sequence[Executor],
    *,
    order: Sequence[str] | None = None,
) -> ImplementationResult:
    """Apply each task with the first executor that supports its action.

    Tasks run in ``order`` (the plan's ``priorities``) when given, else as listed, moved
    only as far as needed to come after their ``depends_on``. A dependency orders tasks;
    it does not gate them: a task still runs when its dependency was skipped.
    """
    start = copy.checkpoint("before-evolution")
    rollback_points = [start]
    changes: list[JSON] = []
    skipped: list[JSON] = []
    for task in _ordered(plan_tasks, order):
        task_id = str(task.get("id", ""))
        action = str(task.get("action", ""))
        outcome = _run(task, copy, executors)
        if isinstance(outcome, Skip):
            copy.restore(rollback_points[-1]["id"])
            skip = {"task_id": task_id, "action": action, "reason": outcome.reason}
            skipped.append(skip)
            changes.append(
                {
                    "task_id": task_id,
                    "file": task.get("file"),
                    "type": "skipped",
                    "symbol": task.get("symbol"),
                    "line": task.get("line"),
                    "action": action,
                    "reason": outcome.reason,
                }
            )
            continue
        changes.append(outcome.to_dict(task_id))
        label = f"after {task_id}: {action} {outcome.file}:{outcome.symbol}"
        rollback_points.append(copy.checkpoint(label))
    before, after = start["files"], rollback_points[-1]["files"]
    modified = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return ImplementationResult(
        modified_files=modified,
        changes=changes,
        rollback_points=rollback_points,
        skipped=skipped,
    )


def _run(
    task: Mapping[str, Any], copy: WorkingCopy, executors: Sequence[Executor]
) -> Change | Skip:
    action = str(task.get("action", ""))
    executor = next((e for e in executors if e.supports(action)), None)
    if executor is None:
        return Skip(f"no executor supports action {action!r}")
    try:
        return executor.apply(task, copy.root)
    except Exception as exc:
        # One faulty executor must not end the whole run; the copy is restored by the caller.
        return Skip(f"{type(executor).__name__} failed: {type(exc).__name__}: {exc}")


def _ordered(
    tasks: Sequence[Mapping[str, Any]], order: Sequence[str] | None
) -> list[Mapping[str, Any]]:
    """Stable topological order; works on indices so tasks without ids are kept too."""
    position = {task_id: i for i, task_id in enumerate(order or ())}
    rank = sorted(
        range(len(tasks)),
        key=lambda i: (position.get(str(tasks[i].get("id")), len(position)), i),
    )
    rank_of = {index: r for r, index in enumerate(rank)}
    index_of: dict[str, int] = {}
    for i, task in enumerate(tasks):
        index_of.setdefault(str(task.get("id")), i)
    waiting: dict[int, set[int]] = {}
    for i, task in enumerate(tasks):
        deps = {index_of.get(str(d), i) for d in task.get("depends_on") or ()}
        waiting[i] = deps - {i}
    ready = [(rank_of[i], i) for i, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    result: list[int] = []
    while ready:
        _, index = heapq.heappop(ready)
        result.append(index)
        for other, deps in waiting.items():
            if index in deps:
                deps.discard(index)
                if not deps:
                    heapq.heappush(ready, (rank_of[other], other))
    # Cyclic leftovers keep their listed order rather than being dropped.
    done = set(result)
    result.extend(i for i in rank if i not in done)
    return [tasks[i] for i in result]
