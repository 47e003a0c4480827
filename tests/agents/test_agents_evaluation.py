"""Evaluation: per-task verdicts from a re-analysis of the edited files, and the measured state."""

from __future__ import annotations

import json
from pathlib import Path

from actors.evolution.agents.logic import analyze_files, compare_metrics, evaluate

PLAN = {
    "tasks": [
        {"id": "task-1", "action": "add_docstring", "file": "m.py", "symbol": "documented"},
        {"id": "task-2", "action": "reduce_complexity", "file": "m.py", "symbol": "branchy"},
        {"id": "task-3", "action": "add_docstring", "file": "m.py", "symbol": "undone"},
        {"id": "task-4", "action": "simplify", "file": "m.py", "symbol": "gone"},
        {"id": "task-5", "action": "add_tests", "file": "tests", "symbol": None},
    ]
}
LOG = {
    "changes": [
        {"task_id": "task-1", "outcome": "kept", "detail": "docstring"},
        {"task_id": "task-2", "outcome": "kept", "detail": "ruff safe fixes SIM102: 12 -> 11"},
        {"task_id": "task-3", "outcome": "rolled_back", "reason": "the project's tests fail"},
        {"task_id": "task-4", "outcome": "kept"},
        {"task_id": "task-5", "outcome": "deferred", "reason": "no executor here can do it"},
    ]
}
BRANCHY = (
    "def branchy(x):\n"
    + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(11))
    + "    return -1\n"
)
SOURCE = (
    '"""Doc."""\n\n\ndef documented():\n    """Say hello to the caller."""\n\n\n'
    "def undone():\n    pass\n\n\n" + BRANCHY
)


def test_goals_come_from_the_reanalysis_and_deferred_tasks_do_not_count(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(SOURCE)
    after = {"metrics": {"complexity_max": 12, "docstring_coverage": 0.75}, "tests": {"runs": 2}}
    before = {"metrics": {"complexity_max": 12, "docstring_coverage": 0.5, "flag": True}}
    result = evaluate(before, PLAN, LOG, after, analyze_files(tmp_path, ["m.py"]))
    goals = {g["task_id"]: g for g in result.goals_achieved}
    assert goals["task-1"]["achieved"] is True
    assert "has a docstring" in goals["task-1"]["evidence"]
    # Lowered but still above ruff's limit: kept, not achieved, and the evidence says why.
    assert goals["task-2"]["achieved"] is False
    assert "complexity now 12" in goals["task-2"]["evidence"]
    assert goals["task-3"] == {
        "task_id": "task-3",
        "action": "add_docstring",
        "status": "rolled_back",
        "achieved": False,
        "evidence": "the project's tests fail",
    }
    assert "no longer exists" in goals["task-4"]["evidence"]
    assert goals["task-5"]["status"] == "deferred"
    # 1 achieved out of 4 attempted; the deferred task is reported, not counted.
    assert result.success_rate == 0.25
    tasks = result.metrics_comparison["tasks"]
    assert tasks == {"planned": 5, "attempted": 4, "achieved": 1, "deferred": 1, "rolled_back": 1}
    assert result.metrics_comparison["tests"] == {"runs": 2}
    assert result.metrics_comparison["delta"] == {"complexity_max": 0, "docstring_coverage": 0.25}
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


def test_metrics_comparison_numeric_only() -> None:
    result = compare_metrics({"a": 1, "b": True, "c": [1], "d": 0.5}, {"a": 3, "d": 0.25})
    assert result == {
        "before": {"a": 1, "d": 0.5},
        "after": {"a": 3, "d": 0.25},
        "delta": {"a": 2, "d": -0.25},
    }


def test_nothing_attempted_is_a_zero_rate_not_an_error() -> None:
    result = evaluate({}, {"tasks": []}, {}, {})
    assert result.success_rate == 0.0
    assert result.goals_achieved == []
