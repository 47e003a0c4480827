"""Reading, writing and listing Python source files without disturbing their bytes."""

from __future__ import annotations

import io
import os
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SKIP_DIRS",
    "SourceText",
    "count_lines",
    "is_test_file",
    "python_relpaths",
    "read_source",
    "split_lines",
    "write_source",
]

SKIP_DIRS = frozenset(
    {".venv", "venv", "__pycache__", ".git", "build", "dist", "node_modules", ".tox", ".eggs"}
)
TEST_DIRS = frozenset({"tests", "test"})
# Present in test folders but holding no tests themselves.
_TEST_SUPPORT_FILES = frozenset({"__init__.py", "conftest.py"})

_NEWLINE = re.compile(r"\r\n|\r|\n")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


@dataclass(frozen=True)
class SourceText:
    """A decoded source file plus what is needed to write it back byte-for-byte."""

    text: str
    encoding: str
    newline: str


def read_source(path: Path) -> SourceText:
    """Decode a file the way the interpreter would (PEP 263 cookie, BOM).

    Raises SyntaxError for a bad cookie, UnicodeDecodeError or LookupError for bad bytes.
    """
    data = path.read_bytes()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    text = data.decode(encoding)
    match = _NEWLINE.search(text)
    return SourceText(text=text, encoding=encoding, newline=match.group() if match else "\n")


def write_source(path: Path, source: SourceText, text: str) -> None:
    """Write ``text`` with the encoding (and so the BOM) the file was read with."""
    path.write_bytes(text.encode(source.encoding))


def count_lines(text: str) -> int:
    """Count physical lines with the same newline rules as the tokenizer (not form feeds)."""
    if not text:
        return 0
    breaks = len(_NEWLINE.findall(text))
    return breaks if text.endswith(("\n", "\r")) else breaks + 1


def split_lines(text: str) -> list[str]:
    """Lines with their endings, numbered like ``ast`` does (unlike ``str.splitlines``)."""
    return _LINE.findall(text)


def python_relpaths(root: Path) -> list[str]:
    """The project-relative posix path of every ``.py`` file under ``root``, skipping
    tooling and hidden directories, sorted. Strings all the way: pathlib's parsing of a
    path per file was half of the research agent's scan of a 600-file project."""
    top = os.fspath(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        prefix = os.path.relpath(dirpath, top).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        found.extend(prefix + name for name in filenames if name.endswith(".py"))
    found.sort()
    return found


def is_test_file(relpath: str) -> bool:
    """Whether a project-relative posix path names a test module."""
    *parents, name = relpath.split("/")
    if name.startswith("test_") or name.endswith("_test.py"):
        return True
    return any(part in TEST_DIRS for part in parents) and name not in _TEST_SUPPORT_FILES
