"""Run a plan's tasks on a working copy, verify them with the project's tests, keep what
passes.

1. Every task is done in memory, file by file, by the first executor that can.
2. If anything was edited, the project's tests run once on the untouched copy (the
   baseline), then the edited files are written, each once.
3. The tests run on the edited copy. If they regress, the edits are bisected: halves are
   re-applied from the original files until each edit that breaks the tests is found; those
   are rolled back (``rolled_back``), the rest kept.

Rollback points: ``before-evolution`` holds the original of every file the kept edits touch,
then one point per kept task holds the files it changed, so any prefix of the kept edits can
be restored (``ctxstore rollback``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .edit_task import Edited, Executor, Skip, task_symbol
from .executors import ReturnNoneExecutor, RuffSimplifyExecutor
from .learning import task_key
from .model import ModelExecutor
from .verify import TestRun, Verifier
from .workcopy import WorkingCopy

__all__ = ["MAX_TEST_RUNS", "ImplementationResult", "default_executors", "execute_plan"]

JSON = dict[str, Any]
# Test runs one implementation may make (baseline, check, bisection, final state). Each bad
# edit costs about two runs per halving, so this finds a few bad edits among hundreds.
MAX_TEST_RUNS = 24
_UNVERIFIED = TestRun(returncode=-1, duration=0.0, output_tail="out of test runs")
# Actions a model-backed executor can do and rules cannot.
_NEEDS_MODEL = frozenset({"add_docstring", "reduce_complexity", "split_function"})


def default_executors() -> list[Executor]:
    """The built-in executors, in the order they are consulted, plus the model-backed one
    when ``CTXSTORE_MODEL_URL`` configures it."""
    executors: list[Executor] = [RuffSimplifyExecutor(), ReturnNoneExecutor()]
    model = ModelExecutor.from_env()
    if model is not None:
        executors.append(model)
    return executors


@dataclass
class _Outcome:
    task: Mapping[str, Any]
    edited: Edited | None = None
    skip: Skip | None = None
    file: str = ""

    @property
    def task_id(self) -> str:
        return str(self.task.get("id", ""))


@dataclass
class ImplementationResult:
    """What the refactor agent stores as ``implementation_log`` (plus test runs)."""

    modified_files: list[str]
    changes: list[JSON]
    rollback_points: list[JSON]
    tests: JSON = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def store_kwargs(self) -> JSON:
        """Keyword arguments for ``store_implementation_log``."""
        return {
            "modified_files": self.modified_files,
            "changes": self.changes,
            "rollback_points": self.rollback_points,
        }


def execute_plan(
    plan_tasks: Sequence[Mapping[str, Any]],
    copy: WorkingCopy,
    executors: Sequence[Executor],
    *,
    order: Sequence[str] | None = None,
    verifier: Verifier | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImplementationResult:
    """Do the tasks (in ``order``, the plan's priorities, moved only as far as their
    ``depends_on`` needs), verify, and log every task's outcome."""
    tasks = _ordered(plan_tasks, order)
    _prefetch(tasks, copy, executors)
    outcomes, states = _apply(tasks, copy, executors, progress)
    touched = {o.file for o in outcomes if o.edited is not None}
    # Edits are made in memory first: with none, the project's tests need not run at all;
    # with some, the baseline runs on the copy before they are written.
    baseline = verifier.start() if verifier is not None and touched else None
    _write(copy, states, touched)
    rolled_back: dict[str, TestRun] = {}
    final_run = baseline
    if verifier is not None and touched and verifier.can_judge:
        ok, final_run = verifier.check()
        if not ok:
            edited = [o.task_id for o in outcomes if o.edited is not None]
            kept, rolled_back, final_run = _bisect(
                tasks, edited, copy, executors, verifier, touched
            )
            again, states = _apply(tasks, copy, executors, None, keep=kept)
            _write(copy, states, touched)
            redone = {o.task_id: o for o in again if o.task_id in kept}
            outcomes = [redone.get(o.task_id, o) for o in outcomes]
            if final_run is None:
                final_run = verifier.run()
    points = _rollback_points(copy, states)
    verified = verifier is not None and verifier.can_judge
    changes = [_change(o, rolled_back, verified) for o in outcomes]
    modified = sorted({relpath for _, relpath, _ in states})
    counts: dict[str, int] = {}
    for change in changes:
        counts[change["outcome"]] = counts.get(change["outcome"], 0) + 1
    tests: JSON = {}
    if verifier is not None:
        tests = {
            "command": verifier.describe(),
            "note": "" if touched else "not run: nothing was edited",
            "baseline": baseline.to_dict() if baseline else None,
            "final": final_run.to_dict() if final_run else None,
            "runs": len(verifier.runs),
            "judged": verifier.can_judge,
        }
    return ImplementationResult(modified, changes, points, tests, counts)


def _apply(
    tasks: Sequence[Mapping[str, Any]],
    copy: WorkingCopy,
    executors: Sequence[Executor],
    progress: Callable[[str, int, int], None] | None,
    *,
    keep: set[str] | None = None,
) -> tuple[list[_Outcome], list[tuple[str, str, str]]]:
    """Do ``tasks`` on the original files (only those in ``keep``, when given), in memory.
    Returns outcomes and (task id, file, text after the task) per edit."""
    texts: dict[str, str] = {}
    outcomes: list[_Outcome] = []
    states: list[tuple[str, str, str]] = []
    for number, task in enumerate(tasks, start=1):
        if progress is not None:
            progress("implementation", number, len(tasks))
        outcome = _Outcome(task, file=str(task.get("file") or ""))
        outcomes.append(outcome)
        if keep is not None and str(task.get("id")) not in keep:
            continue
        relpath = outcome.file
        if relpath not in texts:
            try:
                texts[relpath] = copy.original(relpath).text
            except (OSError, ValueError, SyntaxError, LookupError) as exc:
                outcome.skip = Skip(f"{relpath or 'the task'} cannot be read: {exc}")
                continue
        result = _run(task, texts[relpath], relpath, executors)
        if isinstance(result, Skip):
            outcome.skip = result
            continue
        outcome.edited = result
        texts[relpath] = result.text
        states.append((outcome.task_id, relpath, result.text))
    return outcomes, states


def _prefetch(
    tasks: Sequence[Mapping[str, Any]], copy: WorkingCopy, executors: Sequence[Executor]
) -> None:
    """Let executors that wait on a service (a model) ask for all their replies at once."""
    jobs: list[tuple[Mapping[str, Any], str, str]] = []
    for task in tasks:
        relpath = str(task.get("file") or "")
        try:
            jobs.append((task, copy.original(relpath).text, relpath))
        except (OSError, ValueError, SyntaxError, LookupError):
            continue
    for executor in executors:
        prefetch = getattr(executor, "prefetch", None)
        if callable(prefetch):
            prefetch(jobs)


def _write(copy: WorkingCopy, states: Sequence[tuple[str, str, str]], touched: set[str]) -> None:
    """Each touched file as the last state names it, or as it was originally."""
    final = {relpath: text for _, relpath, text in states}
    for relpath in sorted(touched):
        copy.write(relpath, final.get(relpath, copy.original(relpath).text))


def _run(
    task: Mapping[str, Any], text: str, relpath: str, executors: Sequence[Executor]
) -> Edited | Skip:
    action = str(task.get("action", ""))
    capable = [e for e in executors if e.supports(action)]
    if not capable:
        hint = (
            " well without a model (set CTXSTORE_MODEL_URL for a model-backed executor)"
            if action in _NEEDS_MODEL
            else ""
        )
        return Skip(f"no executor here can do {action}{hint}", deferred=True)
    skips: list[Skip] = []
    for executor in capable:
        try:
            result = executor.edit(task, text, relpath)
        except Exception as exc:
            # One faulty executor must not end the whole run; the text is left as it was.
            result = Skip(f"{executor.name} failed: {type(exc).__name__}: {exc}")
        if isinstance(result, Edited):
            return result
        skips.append(result)
    return Skip("; ".join(s.reason for s in skips), deferred=all(s.deferred for s in skips))


def _bisect(
    tasks: Sequence[Mapping[str, Any]],
    edited: Sequence[str],
    copy: WorkingCopy,
    executors: Sequence[Executor],
    verifier: Verifier,
    touched: set[str],
) -> tuple[set[str], dict[str, TestRun], TestRun | None]:
    """Find the edits the tests reject: a half that passes together with what is already
    known good is kept, a failing single edit is rolled back."""
    good: set[str] = set()
    bad: dict[str, TestRun] = {}
    last: tuple[frozenset[str], TestRun] | None = None

    def search(candidates: Sequence[str]) -> None:
        nonlocal last
        if len(verifier.runs) >= MAX_TEST_RUNS:
            # Out of test runs: what could not be verified is not kept.
            for task_id in candidates:
                bad[task_id] = _UNVERIFIED
            return
        chosen = good | set(candidates)
        _, states = _apply(tasks, copy, executors, None, keep=chosen)
        _write(copy, states, touched)
        ok, run = verifier.check()
        last = (frozenset(chosen), run)
        if ok:
            good.update(candidates)
        elif len(candidates) == 1:
            bad[candidates[0]] = run
        else:
            middle = len(candidates) // 2
            search(candidates[:middle])
            search(candidates[middle:])

    if len(edited) == 1:
        # The whole set, this one edit, already failed.
        bad[edited[0]] = verifier.runs[-1]
    else:
        middle = len(edited) // 2
        search(edited[:middle])
        search(edited[middle:])
    final = last[1] if last is not None and last[0] == frozenset(good) else None
    return good, bad, final


def _change(outcome: _Outcome, rolled_back: Mapping[str, TestRun], verified: bool) -> JSON:
    task = outcome.task
    action = str(task.get("action", ""))
    entry: JSON = {
        "task_id": outcome.task_id,
        "key": task.get("key") or task_key(action, task.get("file"), task.get("symbol")),
        "action": action,
        "file": task.get("file"),
        "symbol": task_symbol(task),
        "line": task.get("line"),
        "source_hash": task.get("source_hash"),
    }
    if outcome.task_id in rolled_back:
        run = rolled_back[outcome.task_id]
        failing = ", ".join(sorted(run.failed_ids)[:5]) or f"exit code {run.returncode}"
        reason = (
            f"not verified within {MAX_TEST_RUNS} test runs"
            if run is _UNVERIFIED
            else f"the project's tests fail with this edit: {failing}"
        )
        edit = outcome.edited
        entry.update(
            outcome="rolled_back",
            type=edit.type if edit else "edit",
            executor=edit.executor if edit else None,
            reason=reason,
        )
    elif outcome.edited is not None:
        edit = outcome.edited
        entry.update(
            outcome="kept",
            type=edit.type,
            executor=edit.executor,
            detail=edit.detail,
            verified=verified,
        )
        if edit.measures:
            entry.update(edit.measures)
    else:
        skip = outcome.skip or Skip("not run")
        entry.update(
            outcome="deferred" if skip.deferred else "no_change", type="skipped", reason=skip.reason
        )
    return entry


def _rollback_points(copy: WorkingCopy, states: Sequence[tuple[str, str, str]]) -> list[JSON]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    touched = sorted({relpath for _, relpath, _ in states})
    first: JSON = {
        "id": "checkpoint-1",
        "label": "before-evolution",
        "timestamp": now,
        "files": {rel: copy.save(copy.encode(rel, copy.original(rel).text)) for rel in touched},
    }
    points = [first]
    for number, (task_id, relpath, text) in enumerate(states, start=2):
        points.append(
            {
                "id": f"checkpoint-{number}",
                "label": f"after {task_id}",
                "timestamp": now,
                "changed": {relpath: copy.save(copy.encode(relpath, text))},
            }
        )
    return points


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
    dependants: dict[int, list[int]] = {}
    for i, task in enumerate(tasks):
        deps = {index_of.get(str(d), i) for d in task.get("depends_on") or ()} - {i}
        waiting[i] = deps
        for dep in deps:
            dependants.setdefault(dep, []).append(i)
    ready = [(rank_of[i], i) for i, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    result: list[int] = []
    while ready:
        _, index = heapq.heappop(ready)
        result.append(index)
        for other in dependants.get(index, ()):
            deps = waiting[other]
            deps.discard(index)
            if not deps:
                heapq.heappush(ready, (rank_of[other], other))
    # Cyclic leftovers keep their listed order rather than being dropped.
    done = set(result)
    result.extend(i for i in rank if i not in done)
    return [tasks[i] for i in result]
