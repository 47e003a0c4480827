"""Planning: tasks from improvements, dependencies and execution order."""

from __future__ import annotations

import json
from typing import Any

from actors.evolution.agents.logic import LEARNED_FROM, Learning, plan_improvements


def improvement(
    number: int, kind: str, file: str, line: int, symbol: str | None, priority: str
) -> dict[str, Any]:
    return {
        "id": f"imp-{number:04d}",
        "type": kind,
        "target": f"{file}:{line}",
        "file": file,
        "line": line,
        "symbol": symbol,
        "priority": priority,
        "rationale": "because",
    }


ANALYSIS = {
    "files_analyzed": 2,
    "metrics": {},
    "issues": [],
    "improvements": [
        improvement(1, "add_docstring", "a.py", 1, "<module>", "high"),
        improvement(2, "reduce_complexity", "a.py", 5, "big", "medium"),
        improvement(3, "add_docstring", "a.py", 5, "big", "high"),
        improvement(4, "add_return_annotation", "a.py", 30, "tail", "low"),
        improvement(5, "add_docstring", "a.py", 30, "tail", "high"),
        improvement(6, "add_docstring", "b.py", 3, "other", "high"),
        improvement(7, "add_tests", "tests", 0, None, "medium"),
        improvement(8, "unknown_kind", "b.py", 9, "x", "high"),
    ],
}
RESEARCH = {
    "best_practices": [
        "Write a docstring for every public module.",
        "Keep cyclomatic complexity per function at or below 10.",
        "Annotate parameters; mark procedures with -> None.",
    ],
    "references": [],
    "patterns": [],
}


def test_one_task_per_known_improvement() -> None:
    plan = plan_improvements(ANALYSIS, RESEARCH)
    assert [t["id"] for t in plan.tasks] == [f"task-{n}" for n in range(1, 8)]
    assert [t["improvement_id"] for t in plan.tasks] == [f"imp-{n:04d}" for n in range(1, 8)]
    task = plan.tasks[2]
    assert task["action"] == "add_docstring"
    assert task["location"] == "a.py:5"
    assert task["expected_effect"] == {"metric": "docstring_coverage", "direction": "increase"}
    assert task["best_practice"] == "Write a docstring for every public module."
    assert plan.tasks[1]["best_practice"].startswith("Keep cyclomatic complexity")
    assert plan.tasks[3]["best_practice"].startswith("Annotate parameters")
    assert plan.tasks[6]["best_practice"] is None


def test_dependencies() -> None:
    plan = plan_improvements(ANALYSIS, RESEARCH)
    assert plan.dependencies == {"task-3": ["task-2"], "task-7": ["task-2"]}
    assert plan.tasks[2]["depends_on"] == ["task-2"]


def test_execution_order() -> None:
    plan = plan_improvements(ANALYSIS, RESEARCH)
    # high first, bottom-up per file; task-3 waits for its medium-priority rewrite task-2
    assert plan.priorities == [
        "task-5",
        "task-1",
        "task-6",
        "task-2",
        "task-3",
        "task-7",
        "task-4",
    ]
    position = {task_id: i for i, task_id in enumerate(plan.priorities)}
    for task_id, deps in plan.dependencies.items():
        assert all(position[d] < position[task_id] for d in deps)


def test_impact_and_json() -> None:
    plan = plan_improvements(ANALYSIS, RESEARCH)
    assert 0.0 < plan.estimated_impact < 1.0
    data = plan.store_kwargs()
    assert set(data) == {"tasks", "priorities", "dependencies", "estimated_impact"}
    assert json.loads(json.dumps(data)) == data
    many = {"improvements": [improvement(n, "add_tests", "t", 0, None, "high") for n in range(99)]}
    assert plan_improvements(many, {}).estimated_impact <= 1.0


def test_empty_and_limited_plans() -> None:
    empty = plan_improvements({"improvements": []}, {})
    assert (empty.tasks, empty.priorities, empty.dependencies) == ([], [], {})
    assert empty.estimated_impact == 0.0
    limited = plan_improvements(ANALYSIS, RESEARCH, max_tasks=3)
    assert [t["improvement_id"] for t in limited.tasks] == ["imp-0001", "imp-0003", "imp-0005"]


def test_deterministic() -> None:
    assert plan_improvements(ANALYSIS, RESEARCH) == plan_improvements(ANALYSIS, RESEARCH)


def _with_hashes(analysis: dict[str, Any]) -> dict[str, Any]:
    imps = [{**i, "source_hash": f"h-{i['symbol']}"} for i in analysis["improvements"]]
    return {**analysis, "improvements": imps}


def test_learning_leaves_out_what_was_done_or_failed_on_the_same_source() -> None:
    analysis = _with_hashes(ANALYSIS)
    first_log = {
        "changes": [
            # Done: the docstring of big, from the same source.
            {
                "key": "add_docstring:a.py:big",
                "action": "add_docstring",
                "outcome": "kept",
                "source_hash": "h-big",
                "after_hash": "h-big-2",
            },
            # Failed verification on the same source: not planned unchanged.
            {
                "key": "reduce_complexity:a.py:big",
                "action": "reduce_complexity",
                "outcome": "rolled_back",
                "source_hash": "h-big",
                "reason": "tests fail",
            },
            # Failed, but on another version of tail: tail changed since, so planned again.
            {
                "key": "add_docstring:a.py:tail",
                "action": "add_docstring",
                "outcome": "no_change",
                "source_hash": "h-old-tail",
                "reason": "model down",
            },
            # Deferred is not a failure: planned again (a model may be there now).
            {
                "key": "add_docstring:b.py:other",
                "action": "add_docstring",
                "outcome": "deferred",
                "source_hash": "h-other",
            },
        ]
    }
    learning = Learning.from_logs([("evo-1", first_log), ("evo-2", {"changes": []})])
    plan = plan_improvements(analysis, RESEARCH, learning=learning)
    keys = {t["key"] for t in plan.tasks}
    assert "add_docstring:a.py:big" not in keys
    assert "reduce_complexity:a.py:big" not in keys
    assert {"add_docstring:a.py:tail", "add_docstring:b.py:other"} <= keys
    assert {e["key"]: e["reason"].split(" (")[0] for e in plan.excluded} == {
        "add_docstring:a.py:big": "done in evo-1",
        "reduce_complexity:a.py:big": "failed in evo-1",
    }
    # The plan names the evolutions it learned from (evo-2 taught nothing).
    assert plan.dependencies[LEARNED_FROM] == ["evo-1"]
    tail = next(t for t in plan.tasks if t["key"] == "add_docstring:a.py:tail")
    assert tail["learned_from"] == ["evo-1"]


def test_kinds_that_keep_failing_are_ranked_lower() -> None:
    analysis = _with_hashes(ANALYSIS)
    failures = {
        "changes": [
            {
                "key": f"add_docstring:z.py:f{n}",
                "action": "add_docstring",
                "outcome": "rolled_back",
                "source_hash": "x",
            }
            for n in range(3)
        ]
    }
    plain = plan_improvements(analysis, RESEARCH)
    learned = plan_improvements(
        analysis, RESEARCH, learning=Learning.from_logs([("evo-9", failures)])
    )
    first = {t["id"]: t["action"] for t in plain.tasks}
    assert first[plain.priorities[0]] == "add_docstring"  # high priority comes first...
    order = [next(t["action"] for t in learned.tasks if t["id"] == i) for i in learned.priorities]
    # ...unless that kind failed in every earlier attempt: then it goes after its peers.
    high = [a for a in order if a in ("add_docstring",)]
    assert order.index("add_docstring") > order.index("add_tests")
    assert high
    assert all(
        "failed in 100%" in t["learned"] for t in learned.tasks if t["action"] == "add_docstring"
    )
    # With max_tasks the failing kind is what gets cut.
    cut = plan_improvements(
        analysis, RESEARCH, max_tasks=2, learning=Learning.from_logs([("evo-9", failures)])
    )
    assert "add_docstring" not in {t["action"] for t in cut.tasks}
