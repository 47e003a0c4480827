"""Rollback points as the implementation log stores them, and restoring a working copy to one.

The refactor agent saves every checkpoint's file contents, content-addressed, in a folder
beside the working copy (``<workdir>.rollback``); the log holds only hashes. So any process
can bring the working copy back to any point later: ``ctxstore rollback ID CHECKPOINT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.evolution.agents.logic import restore_files

__all__ = ["blob_folder", "compact_log", "expand_points", "restore_point"]


def blob_folder(workdir: Path) -> Path:
    return workdir.with_name(workdir.name + ".rollback")


def compact_log(rollback_points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rollback points as stored: the first lists every file's hash, each later one only
    the files that changed since the point before (the rest are as in that point)."""
    compact: list[dict[str, Any]] = []
    previous: Mapping[str, str] = {}
    for i, point in enumerate(rollback_points):
        files: Mapping[str, str] = point.get("files", {})
        entry = {k: v for k, v in point.items() if k != "files"}
        if i == 0:
            entry["files"] = dict(files)
        else:
            entry["changed"] = {p: h for p, h in files.items() if previous.get(p) != h}
            entry["removed"] = sorted(previous.keys() - files.keys())
        compact.append(entry)
        previous = files
    return compact


def expand_points(compact: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Checkpoint id -> every file's hash at that point (the inverse of ``compact_log``)."""
    points: dict[str, dict[str, str]] = {}
    files: dict[str, str] = {}
    for entry in compact:
        if "files" in entry:
            files = dict(entry["files"])
        files.update(entry.get("changed", {}))
        for gone in entry.get("removed", []):
            files.pop(gone, None)
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
