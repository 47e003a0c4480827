"""Working copies, rollback points and plan execution."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from actors.evolution.agents.logic import (
    Change,
    Skip,
    WorkingCopy,
    default_executors,
    execute_plan,
)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tree_dirs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "core.py").write_text(
        "def run(x: int):\n    print(x)\n\n\ndef value() -> int:\n    return 1\n",
        encoding="utf-8",
    )
    (root / "pkg" / "data.bin").write_bytes(bytes(range(256)))
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "x.py").write_text("x = 1\n", encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n", encoding="utf-8")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "core.pyc").write_bytes(b"\0")
    return root


def test_create_copies_without_tooling(source: Path, tmp_path: Path) -> None:
    copy = WorkingCopy.create(source, tmp_path / "copy")
    assert sorted(tree_bytes(copy.root)) == ["pkg/core.py", "pkg/data.bin"]
    assert copy.changed_files() == []
    assert copy.diff() == ""
    with pytest.raises(FileExistsError):
        WorkingCopy.create(source, tmp_path / "copy")
    with pytest.raises(ValueError, match="inside"):
        WorkingCopy.create(source, source / "nested")


def test_restore_brings_back_exact_bytes(source: Path, tmp_path: Path) -> None:
    copy = WorkingCopy.create(source, tmp_path / "copy")
    point = copy.checkpoint("start")
    assert point["id"] == "checkpoint-1"
    assert point["label"] == "start"
    assert point["timestamp"].endswith("+00:00")
    core = (source / "pkg" / "core.py").read_bytes()
    assert point["files"]["pkg/core.py"] == hashlib.sha256(core).hexdigest()
    snapshot, dirs = tree_bytes(copy.root), tree_dirs(copy.root)

    (copy.root / "pkg" / "core.py").write_text("broken(", encoding="utf-8")
    (copy.root / "pkg" / "data.bin").unlink()
    (copy.root / "new" / "deep").mkdir(parents=True)
    (copy.root / "new" / "deep" / "f.txt").write_text("x", encoding="utf-8")
    second = copy.checkpoint("messy")
    assert second["id"] == "checkpoint-2"

    copy.restore("checkpoint-1")
    assert tree_bytes(copy.root) == snapshot
    assert tree_dirs(copy.root) == dirs
    copy.restore("checkpoint-2")
    assert (copy.root / "new" / "deep" / "f.txt").read_text(encoding="utf-8") == "x"
    assert not (copy.root / "pkg" / "data.bin").exists()
    with pytest.raises(ValueError, match="unknown checkpoint"):
        copy.restore("checkpoint-9")
    assert [c["id"] for c in copy.checkpoints] == ["checkpoint-1", "checkpoint-2"]


def test_execute_plan_applies_and_logs(source: Path, tmp_path: Path) -> None:
    original = tree_bytes(source)
    copy = WorkingCopy.create(source, tmp_path / "copy")
    tasks = [
        {"id": "task-1", "action": "add_docstring", "file": "pkg/core.py", "symbol": "run"},
        {"id": "task-2", "action": "add_return_annotation", "file": "pkg/core.py", "symbol": "run"},
        {"id": "task-3", "action": "reduce_complexity", "file": "pkg/core.py", "symbol": "run"},
        {"id": "task-4", "action": "add_docstring", "file": "pkg/core.py", "symbol": "value"},
    ]
    result = execute_plan(tasks, copy, default_executors(), order=["task-4", "task-2"])
    assert result.modified_files == ["pkg/core.py"]
    assert [(c["task_id"], c["type"]) for c in result.changes] == [
        ("task-4", "docstring_added"),
        ("task-2", "return_annotation_added"),
        ("task-1", "docstring_added"),
        ("task-3", "skipped"),
    ]
    assert result.skipped == [
        {
            "task_id": "task-3",
            "action": "reduce_complexity",
            "reason": "no executor supports action 'reduce_complexity'",
        }
    ]
    assert [p["label"].split(":")[0] for p in result.rollback_points] == [
        "before-evolution",
        "after task-4",
        "after task-2",
        "after task-1",
    ]
    assert (copy.root / "pkg" / "core.py").read_text(encoding="utf-8") == (
        'def run(x: int) -> None:\n    """Run the given x."""\n    print(x)\n\n\n'
        'def value() -> int:\n    """Return the value."""\n    return 1\n'
    )
    assert tree_bytes(source) == original
    data = result.store_kwargs()
    assert set(data) == {"modified_files", "changes", "rollback_points"}
    assert json.loads(json.dumps(data)) == data
    assert '+    """Run the given x."""' in result.changes[2]["diff"]
    copy.restore(result.rollback_points[0]["id"])
    copied = {k: v for k, v in original.items() if k in ("pkg/core.py", "pkg/data.bin")}
    assert tree_bytes(copy.root) == copied


class Vandal:
    """Writes garbage, then fails: the run must undo it."""

    def __init__(self, *, raise_error: bool) -> None:
        self.raise_error = raise_error

    def supports(self, action: str) -> bool:
        return action == "vandalise"

    def apply(self, task: Mapping[str, Any], workdir: Path) -> Change | Skip:
        (workdir / "pkg" / "core.py").write_text("garbage(", encoding="utf-8")
        (workdir / "junk.txt").write_text("junk", encoding="utf-8")
        if self.raise_error:
            raise RuntimeError("boom")
        return Skip("changed my mind")


@pytest.mark.parametrize("raise_error", [True, False])
def test_failing_executor_leaves_no_trace(source: Path, tmp_path: Path, raise_error: bool) -> None:
    copy = WorkingCopy.create(source, tmp_path / "copy")
    before = tree_bytes(copy.root)
    tasks = [{"id": "task-1", "action": "vandalise", "file": "pkg/core.py", "symbol": "run"}]
    result = execute_plan(tasks, copy, [Vandal(raise_error=raise_error), *default_executors()])
    assert tree_bytes(copy.root) == before
    assert result.modified_files == []
    reason = result.skipped[0]["reason"]
    assert ("RuntimeError: boom" in reason) if raise_error else (reason == "changed my mind")
    assert len(result.rollback_points) == 1


def test_dependencies_override_listed_order(source: Path, tmp_path: Path) -> None:
    copy = WorkingCopy.create(source, tmp_path / "copy")
    tasks: list[dict[str, Any]] = [
        {
            "id": "task-1",
            "action": "add_docstring",
            "file": "pkg/core.py",
            "symbol": "run",
            "depends_on": ["task-2"],
        },
        {"id": "task-2", "action": "split_function", "file": "pkg/core.py", "symbol": "run"},
    ]
    result = execute_plan(tasks, copy, default_executors())
    assert [c["task_id"] for c in result.changes] == ["task-2", "task-1"]
    assert [c["type"] for c in result.changes] == ["skipped", "docstring_added"]
