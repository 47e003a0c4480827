"""Agents keep their phase results within the store's payload limit without losing count."""

from __future__ import annotations

from actors.evolution.agents.roles import fit_analysis, fit_changes
from actors.evolution.agents.rollback import compact_log, expand_points
from contracts import encode


def test_fit_analysis_drops_detail_then_issues_and_says_so() -> None:
    issues = [
        {"type": "missing_docstring", "location": f"a.py:{i}", "pad": "x" * 80} for i in range(500)
    ]
    payload = {
        "files_analyzed": 3,
        "metrics": {"functions": 500, "per_function": [{"name": f"f{i}"} for i in range(500)]},
        "issues": issues,
        "improvements": [],
    }
    fitted = fit_analysis(payload, 20_000)
    assert len(encode(fitted)) <= 20_000
    assert "per_function" not in fitted["metrics"]
    assert fitted["metrics"]["detail_dropped"] is True
    assert fitted["metrics"]["issues_listed"] == len(fitted["issues"]) < 500
    assert fitted["issues"] == issues[: len(fitted["issues"])]  # the head, in order
    assert fitted["metrics"]["functions"] == 500


def test_fit_analysis_leaves_a_small_analysis_alone() -> None:
    payload = {
        "files_analyzed": 1,
        "metrics": {"per_function": []},
        "issues": [],
        "improvements": [],
    }
    assert fit_analysis(payload, 10_000) is payload


def test_compact_log_keeps_what_is_needed_to_rebuild_each_point() -> None:
    points = [
        {"id": "checkpoint-1", "files": {"a.py": "1", "b.py": "1"}},
        {"id": "checkpoint-2", "files": {"a.py": "2", "b.py": "1"}},
        {"id": "checkpoint-3", "files": {"a.py": "2"}},
    ]
    compact = compact_log(points)
    assert compact[0]["files"] == {"a.py": "1", "b.py": "1"}
    assert compact[1] == {"id": "checkpoint-2", "changed": {"a.py": "2"}, "removed": []}
    assert compact[2] == {"id": "checkpoint-3", "changed": {}, "removed": ["b.py"]}
    assert expand_points(compact) == {p["id"]: p["files"] for p in points}


def test_fit_changes_drops_diffs_only_when_needed() -> None:
    changes = [{"task_id": f"t{i}", "diff": "-a\n+b\n" * 50} for i in range(100)]
    assert fit_changes(changes, 1_000_000) is changes
    slim = fit_changes(changes, 10_000)
    assert [c["task_id"] for c in slim] == [c["task_id"] for c in changes]
    assert all("diff" not in c for c in slim)
