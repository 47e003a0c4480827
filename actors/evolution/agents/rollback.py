"""Rollback points as the implementation log stores them, and restoring a working copy to one.

The refactor agent saves every version of every file it edits, content-addressed, in a folder
beside the working copy (``<workdir>.rollback``); the log holds only hashes: the first point
lists the original of every edited file, each later one only the files its task changed. So
any process can bring the working copy back to any point later:
``ctxstore rollback ID CHECKPOINT``. Files the evolution never edited are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.evolution.agents.logic import restore_files

__all__ = ["blob_folder", "expand_points", "restore_point"]


def blob_folder(workdir: Path) -> Path:
    return workdir.with_name(workdir.name + ".rollback")


def expand_points(compact: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Checkpoint id -> the hash of every edited file at that point."""
    points: dict[str, dict[str, str]] = {}
    files: dict[str, str] = {}
    for entry in compact:
        if "files" in entry:
            files = dict(entry["files"])
        files.update(entry.get("changed", {}))
        points[str(entry["id"])] = dict(files)
    return points


def restore_point(implementation_log: Mapping[str, Any], checkpoint_id: str) -> list[str]:
    """Bring the logged working copy back to ``checkpoint_id``; returns the files changed."""
    compact = implementation_log.get("rollback_points") or []
    if not compact:
        raise ValueError("this context's implementation log has no rollback points")
    points = expand_points(compact)
    if checkpoint_id not in points:
        raise ValueError(f"no rollback point {checkpoint_id!r}; the log has {', '.join(points)}")
    first = compact[0]
    if "workdir" not in first:
        raise ValueError("the implementation log does not say where the working copy is")
    workdir = Path(first["workdir"])
    return restore_files(workdir, points[checkpoint_id], blob_folder(workdir))
