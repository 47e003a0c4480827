"""A disposable copy of the target project, and the content-addressed store of the file
versions its rollback points name.

Only files the evolution edits ever change (edits go through ``write``), so a rollback point
names just those files: restoring one rewrites them and leaves everything else alone. What the
project's own test runs leave behind is not tracked.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from pathlib import Path

from .source import SourceText, read_source

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
    ".tox",
)


class WorkingCopy:
    """Edits happen here, never in the source project."""

    def __init__(
        self, root: Path, source: Path | None = None, *, blob_dir: Path | None = None
    ) -> None:
        self.root = root
        self.source = source
        # With a blob folder, every version written also goes to disk, content-addressed,
        # so another process can restore the copy later (``restore_files``).
        self.blob_dir = blob_dir
        self._sources: dict[str, SourceText] = {}

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

    def original(self, relpath: str) -> SourceText:
        """The file as it was before any edit (read once, then remembered)."""
        if relpath not in self._sources:
            self._sources[relpath] = read_source(self._path(relpath))
        return self._sources[relpath]

    def encode(self, relpath: str, text: str) -> bytes:
        return text.encode(self.original(relpath).encoding)

    def write(self, relpath: str, text: str) -> str:
        """Write the file (in its original encoding); returns the content hash."""
        data = self.encode(relpath, text)
        path = self._path(relpath)
        if path.read_bytes() != data:
            path.write_bytes(data)
        return self.save(data)

    def save(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.blob_dir is not None:
            _save_blob(self.blob_dir, digest, data)
        return digest

    def _path(self, relpath: str) -> Path:
        root = self.root.resolve()
        path = (root / relpath).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"{relpath} lies outside the working copy")
        return path


def _save_blob(folder: Path, digest: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / digest
    if not path.exists():
        tmp = folder / f".{digest}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)


def restore_files(root: Path, files: Mapping[str, str], blob_dir: Path) -> list[str]:
    """Make the named files under ``root`` exactly ``files`` (relative path -> SHA-256),
    reading contents from ``blob_dir``; returns the paths it changed. Every blob is checked
    first, so a missing or damaged one changes nothing. Other files are left alone."""
    contents: dict[str, bytes] = {}
    for relpath, digest in files.items():
        try:
            data = (blob_dir / digest).read_bytes()
        except OSError:
            raise FileNotFoundError(f"no saved contents for {relpath} ({digest})") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"saved contents of {relpath} are damaged ({digest})")
        contents[relpath] = data
    changed: list[str] = []
    for relpath, data in sorted(contents.items()):
        path = root / relpath
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            changed.append(relpath)
    return changed
