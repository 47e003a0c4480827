"""A disposable copy of the target project with exact rollback points (in memory, and on
disk when a blob folder is given)."""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["COPY_IGNORE", "WorkingCopy", "restore_files"]

COPY_IGNORE = (
    ".venv",
    "venv",
    ".git",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
)


class WorkingCopy:
    """Edits happen here, never in the source project.

    A checkpoint records every file under the copy (contents deduplicated by SHA-256)
    and every directory, so ``restore`` reproduces that point exactly: later files and
    directories are removed, changed files rewritten.
    """

    def __init__(
        self, root: Path, source: Path | None = None, *, blob_dir: Path | None = None
    ) -> None:
        self.root = root
        self.source = source
        # With a blob folder, every checkpoint's contents also go to disk, content-addressed,
        # so another process can restore the copy later (``restore_files``).
        self.blob_dir = blob_dir
        self._blobs: dict[str, bytes] = {}
        self._saved: dict[str, tuple[dict[str, str], frozenset[str]]] = {}
        self._checkpoints: list[dict[str, Any]] = []

    @classmethod
    def create(cls, source: Path, dest: Path, *, blob_dir: Path | None = None) -> WorkingCopy:
        """Copy ``source`` to ``dest`` (which must not exist or be empty)."""
        source, dest = source.resolve(), dest.resolve()
        if not source.is_dir():
            raise NotADirectoryError(f"not a directory: {source}")
        if dest == source or dest.is_relative_to(source):
            raise ValueError(f"{dest} lies inside the source {source}")
        if dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"{dest} is not empty")
        shutil.copytree(
            source, dest, ignore=shutil.ignore_patterns(*COPY_IGNORE), dirs_exist_ok=True
        )
        return cls(dest, source, blob_dir=blob_dir)

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        """The rollback points taken so far, oldest first (copies)."""
        return [{**c, "files": dict(c["files"])} for c in self._checkpoints]

    def checkpoint(self, label: str) -> dict[str, Any]:
        """Record the copy as it is now; returns the JSON description of the point."""
        files, dirs = self._scan()
        hashes: dict[str, str] = {}
        for relpath, data in sorted(files.items()):
            digest = hashlib.sha256(data).hexdigest()
            if digest not in self._blobs:
                self._blobs[digest] = data
                if self.blob_dir is not None:
                    _save_blob(self.blob_dir, digest, data)
            hashes[relpath] = digest
        point: dict[str, Any] = {
            "id": f"checkpoint-{len(self._checkpoints) + 1}",
            "label": label,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "files": hashes,
        }
        self._saved[point["id"]] = (hashes, dirs)
        self._checkpoints.append(point)
        return {**point, "files": dict(hashes)}

    def restore(self, checkpoint_id: str) -> None:
        """Bring the copy back to exactly the recorded point."""
        try:
            hashes, dirs = self._saved[checkpoint_id]
        except KeyError:
            raise ValueError(f"unknown checkpoint {checkpoint_id!r}") from None
        current_files, current_dirs = self._scan()
        for relpath in current_files.keys() - hashes.keys():
            (self.root / relpath).unlink()
        for relpath in sorted(current_dirs - dirs, key=lambda p: p.count("/"), reverse=True):
            shutil.rmtree(self.root / relpath, ignore_errors=True)
        for relpath in sorted(dirs):
            (self.root / relpath).mkdir(parents=True, exist_ok=True)
        for relpath, digest in hashes.items():
            data = self._blobs[digest]
            if current_files.get(relpath) != data:
                (self.root / relpath).write_bytes(data)

    def changed_files(self) -> list[str]:
        """Files that differ from the source project (added, removed or edited)."""
        return [relpath for relpath, _, _ in self._differences()]

    def diff(self, context: int = 3) -> str:
        """A unified diff of the copy against the source project."""
        parts: list[str] = []
        for relpath, before, after in self._differences():
            try:
                old = before.decode("utf-8").splitlines()
                new = after.decode("utf-8").splitlines()
            except UnicodeDecodeError:
                parts.append(f"Binary files a/{relpath} and b/{relpath} differ")
                continue
            parts.extend(
                difflib.unified_diff(
                    old, new, f"a/{relpath}", f"b/{relpath}", n=context, lineterm=""
                )
            )
        return "\n".join(parts) + ("\n" if parts else "")

    def _differences(self) -> list[tuple[str, bytes, bytes]]:
        if self.source is None:
            raise ValueError("this working copy has no source to compare with")
        original = _read_tree(self.source, ignore=frozenset(COPY_IGNORE))[0]
        current = self._scan()[0]
        return [
            (relpath, original.get(relpath, b""), current.get(relpath, b""))
            for relpath in sorted(original.keys() | current.keys())
            if original.get(relpath) != current.get(relpath)
        ]

    def _scan(self) -> tuple[dict[str, bytes], frozenset[str]]:
        return _read_tree(self.root, ignore=frozenset())


def _save_blob(folder: Path, digest: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / digest
    if not path.exists():
        tmp = folder / f".{digest}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)


def restore_files(root: Path, files: Mapping[str, str], blob_dir: Path) -> list[str]:
    """Make the files under ``root`` exactly ``files`` (relative path -> SHA-256), reading
    contents from ``blob_dir``; returns the paths it changed. Every blob is checked first,
    so a missing or damaged one changes nothing."""
    contents: dict[str, bytes] = {}
    for relpath, digest in files.items():
        try:
            data = (blob_dir / digest).read_bytes()
        except OSError:
            raise FileNotFoundError(f"no saved contents for {relpath} ({digest})") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"saved contents of {relpath} are damaged ({digest})")
        contents[relpath] = data
    current = _read_tree(root, ignore=frozenset())[0]
    changed = sorted(p for p in current.keys() - contents.keys())
    for relpath in changed:
        (root / relpath).unlink()
    for relpath, data in sorted(contents.items()):
        if current.get(relpath) != data:
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / relpath).write_bytes(data)
            changed.append(relpath)
    return sorted(changed)


def _read_tree(root: Path, *, ignore: frozenset[str]) -> tuple[dict[str, bytes], frozenset[str]]:
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ignore]
        base = Path(dirpath)
        for name in dirnames:
            dirs.add((base / name).relative_to(root).as_posix())
        for name in filenames:
            path = base / name
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files, frozenset(dirs)
