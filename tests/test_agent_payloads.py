"""Agents keep their phase results within the store's payload limit without losing count."""

from __future__ import annotations

from pathlib import Path

from actors.evolution.agents.logic import analysis_payload, analyze_project, encoded_size
from actors.evolution.agents.roles import fit_changes
from actors.evolution.agents.rollback import expand_points

MODULE = "def f{n}(a, b):\n    if a:\n        if b:\n            return 1\n    return 2\n"


def test_a_large_analysis_is_cut_to_the_budget_with_complete_summaries(tmp_path: Path) -> None:
    for n in range(120):
        (tmp_path / f"m{n:03d}.py").write_text(MODULE.format(n=n))
    result = analyze_project(tmp_path, ["complexity"])
    full = encoded_size(result.to_dict())
    payload = analysis_payload(result, 20_000)
    assert encoded_size(payload) <= 20_000 < full
    metrics = payload["metrics"]
    # The summary is whole: every file, function and finding counted.
    assert metrics["files"] == metrics["detail"]["files_total"] == 120
    assert metrics["improvement_counts"]["simplify"] == 120
    assert metrics["issue_counts"]["missing_docstring"] == 240
    # The lists are cut, and say so.
    assert metrics["improvements_listed"] == len(payload["improvements"]) < len(result.improvements)
    assert metrics["detail"]["files_listed"] == len(metrics["detail"]["per_file"]) < 120
    assert metrics["issues_listed"] == len(payload["issues"])


def test_a_small_analysis_is_stored_whole(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(MODULE.format(n=1))
    result = analyze_project(tmp_path, [])
    payload = analysis_payload(result, 200_000)
    assert payload["improvements"] == sorted(
        result.improvements, key=lambda i: payload["improvements"].index(i)
    )
    assert len(payload["improvements"]) == len(result.improvements)
    assert payload["metrics"]["detail"]["files_listed"] == 1


def test_rollback_points_rebuild_each_point_from_changed_files() -> None:
    compact = [
        {"id": "checkpoint-1", "files": {"a.py": "1", "b.py": "1"}},
        {"id": "checkpoint-2", "changed": {"a.py": "2"}},
        {"id": "checkpoint-3", "changed": {"b.py": "3"}},
    ]
    assert expand_points(compact) == {
        "checkpoint-1": {"a.py": "1", "b.py": "1"},
        "checkpoint-2": {"a.py": "2", "b.py": "1"},
        "checkpoint-3": {"a.py": "2", "b.py": "3"},
    }


def test_fit_changes_drops_detail_only_when_needed() -> None:
    changes = [{"task_id": f"t{i}", "detail": "x" * 300} for i in range(100)]
    assert fit_changes(changes, 1_000_000) is changes
    slim = fit_changes(changes, 10_000)
    assert [c["task_id"] for c in slim] == [c["task_id"] for c in changes]
    assert all("detail" not in c for c in slim)
