"""Evaluation: goals judged from the re-analysis, metric deltas, success rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from actors.evolution.agents.logic import analyze_project, compare_metrics, evaluate


def task(task_id: str, action: str, file: str, symbol: str | None) -> dict[str, Any]:
    return {"id": task_id, "action": action, "file": file, "symbol": symbol, "line": 1}


PLAN = {
    "tasks": [
        task("task-1", "add_docstring", "a.py", "f"),
        task("task-2", "add_return_annotation", "a.py", "f"),
        task("task-3", "reduce_complexity", "a.py", "g"),
        task("task-4", "add_docstring", "b.py", "<module>"),
    ]
}
IMPLEMENTATION = {
    "changes": [
        {"task_id": "task-1", "type": "docstring_added"},
        {"task_id": "task-2", "type": "return_annotation_added"},
        {"task_id": "task-3", "type": "skipped", "reason": "no executor"},
        {"task_id": "task-4", "type": "docstring_added"},
    ]
}
BEFORE = {
    "metrics": {
        "docstring_coverage": 0.25,
        "complexity": 3.0,
        "functions": 2,
        "tests_present": False,
        "per_function": [],
    }
}


def after(improvements: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "docstring_coverage": 0.75,
        "complexity": 3.0,
        "functions": 2,
        "tests_present": False,
        "per_file": [
            {"file": "a.py", "parsed": True},
            {"file": "b.py", "parsed": True},
        ],
        "per_function": [{"file": "a.py", "name": "f"}, {"file": "a.py", "name": "g"}],
        "per_class": [],
    }
    metrics.update(overrides)
    return {"files_analyzed": 2, "metrics": metrics, "issues": [], "improvements": improvements}


def test_goals_from_reanalysis() -> None:
    still = [{"type": "reduce_complexity", "file": "a.py", "symbol": "g"}]
    result = evaluate(BEFORE, PLAN, IMPLEMENTATION, after(still))
    achieved = {g["task_id"]: g["achieved"] for g in result.goals_achieved}
    assert achieved == {"task-1": True, "task-2": True, "task-3": False, "task-4": True}
    assert result.success_rate == 0.75
    goal = result.goals_achieved[2]
    assert goal["action"] == "reduce_complexity"
    assert "still proposes reduce_complexity" in goal["evidence"]
    assert "skipped" in goal["evidence"]


def test_metrics_comparison_numeric_only() -> None:
    result = evaluate(BEFORE, PLAN, IMPLEMENTATION, after([]))
    comparison = result.metrics_comparison
    assert comparison["delta"] == {"complexity": 0.0, "docstring_coverage": 0.5, "functions": 0}
    assert "tests_present" not in comparison["before"]
    assert "per_function" not in comparison["after"]
    assert compare_metrics({"a": 0.1}, {"a": 0.3, "b": 1}) == {
        "before": {"a": 0.1},
        "after": {"a": 0.3, "b": 1},
        "delta": {"a": 0.2},
    }


def test_missing_symbol_or_broken_file_is_not_achieved() -> None:
    gone = after([], per_function=[{"file": "a.py", "name": "g"}])
    goals = evaluate(BEFORE, PLAN, IMPLEMENTATION, gone).goals_achieved
    assert goals[0]["achieved"] is False
    assert "no longer exists" in goals[0]["evidence"]
    broken = after([])
    broken["issues"] = [{"type": "syntax_error", "file": "b.py", "line": 1}]
    goals = evaluate(BEFORE, PLAN, IMPLEMENTATION, broken).goals_achieved
    assert goals[3]["achieved"] is False
    assert "no longer parses" in goals[3]["evidence"]


def test_metrics_only_falls_back_to_log() -> None:
    result = evaluate(BEFORE, PLAN, IMPLEMENTATION, {"docstring_coverage": 1.0})
    assert [g["achieved"] for g in result.goals_achieved] == [True, True, False, True]
    assert "no re-analysis" in result.goals_achieved[0]["evidence"]
    assert result.metrics_comparison["delta"] == {"docstring_coverage": 0.75}


def test_no_tasks_and_json() -> None:
    result = evaluate(BEFORE, {"tasks": []}, {}, after([]))
    assert result.success_rate == 0.0
    assert result.goals_achieved == []
    data = result.store_kwargs()
    assert set(data) == {"goals_achieved", "metrics_comparison", "success_rate"}
    assert json.loads(json.dumps(data)) == data


def test_add_tests_goal(tmp_path: Path) -> None:
    plan = {"tasks": [task("task-1", "add_tests", "tests", None)]}
    (tmp_path / "m.py").write_text('"""Doc."""\n', encoding="utf-8")
    before = analyze_project(tmp_path, []).to_dict()
    assert evaluate(before, plan, {}, analyze_project(tmp_path, [])).success_rate == 0.0
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_m.py").write_text("", encoding="utf-8")
    assert evaluate(before, plan, {}, analyze_project(tmp_path, [])).success_rate == 1.0
