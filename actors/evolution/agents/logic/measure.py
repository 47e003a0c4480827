"""Figures measured with the tools users already run: ruff (mccabe's C901 complexity and its
safe simplification fixes) and interrogate (docstring coverage).

Ruff runs as a subprocess on explicit file lists (or on one text through stdin), isolated
from the project's own ruff configuration and ``# noqa`` comments, so that every function is
measured; interrogate's visitor runs on the syntax tree the analysis already parsed, with
the project's own ``[tool.interrogate]`` settings, so its figure is the one
``interrogate PATH`` prints there.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import attr
from interrogate import __version__ as interrogate_version
from interrogate.config import InterrogateConfig, parse_pyproject_toml, parse_setup_cfg
from interrogate.coverage import InterrogateFileResult
from interrogate.visit import CoverageVisitor

__all__ = [
    "SIMPLIFY_RULES",
    "Diagnostic",
    "DocCoverage",
    "Edit",
    "RuffError",
    "apply_edits",
    "docstring_coverage",
    "interrogate_config",
    "ruff_check_files",
    "ruff_check_text",
    "ruff_version",
    "start_ruff_check",
    "tool_versions",
]

# Rules whose ruff fixes lower mccabe complexity (SIM102 and SIM114 merge branches) or nesting
# (needless else/elif after return, raise, continue, break; collapsible else-if; nested
# with). Only the fixes ruff marks safe are ever applied; ``--preview`` because SIM102's fix is
# safe there (it is offered only when no comment would be lost).
SIMPLIFY_RULES = (
    "SIM102",
    "SIM114",
    "SIM117",
    "RET505",
    "RET506",
    "RET507",
    "RET508",
    "PLR5501",
    "PLR1730",
)
_COMPLEXITY = re.compile(r"^`(?P<name>.+)` is too complex \((?P<value>\d+) > 0\)$")
# Keeps each ruff command line far below the kernel's argument limit.
_FILES_PER_CALL = 400


class RuffError(RuntimeError):
    """Ruff could not be run or gave output we cannot read."""


@dataclass(frozen=True)
class Edit:
    """One text replacement from a ruff fix; rows and columns are 1-based, in characters."""

    content: str
    start: tuple[int, int]
    end: tuple[int, int]


@dataclass(frozen=True)
class Diagnostic:
    code: str
    file: str
    line: int
    end_line: int
    message: str
    safe_edits: tuple[Edit, ...] | None  # None: no fix ruff considers safe
    complexity: int | None = None  # C901 only
    name: str | None = None  # C901 only: the function's own name


@cache
def _ruff_bin() -> str:
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError as exc:  # pragma: no cover - ruff is a dependency
        raise RuffError("ruff is not installed") from exc
    return str(find_ruff_bin())


@cache
def ruff_version() -> str:
    out = subprocess.run([_ruff_bin(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "ruff"


def tool_versions() -> dict[str, str]:
    """The measuring tools and their versions, recorded with every measurement."""
    return {
        "complexity": f"{ruff_version()} C901 (mccabe), every function",
        "simplifications": f"{ruff_version()} safe fixes of {', '.join(SIMPLIFY_RULES)}",
        "docstrings": f"interrogate {interrogate_version}",
    }


def _command(select: Sequence[str]) -> list[str]:
    return [
        _ruff_bin(),
        "check",
        "--isolated",
        "--no-cache",
        "--ignore-noqa",
        "--preview",
        "--exit-zero",
        "--output-format",
        "json",
        "--config",
        "lint.mccabe.max-complexity = 0",
        "--select",
        ",".join(select),
    ]


def _run(args: list[str], stdin: str | None = None) -> list[dict[str, Any]]:
    try:
        out = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RuffError(f"cannot run ruff: {exc}") from exc
    return _decode(out.stdout, out.stderr)


def _decode(stdout: str, stderr: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(stdout or "[]")
    except json.JSONDecodeError as exc:
        raise RuffError(f"ruff gave unreadable output: {stderr.strip()[:500]}") from exc
    if not isinstance(data, list):
        raise RuffError("ruff gave unexpected output")
    return data


def _diagnostic(raw: dict[str, Any], file: str) -> Diagnostic:
    code = str(raw.get("code") or "")
    message = str(raw.get("message") or "")
    start, end = raw.get("location") or {}, raw.get("end_location") or {}
    fix = raw.get("fix") or None
    edits: tuple[Edit, ...] | None = None
    if fix and fix.get("applicability") == "safe":
        edits = tuple(
            Edit(
                str(e.get("content") or ""),
                (int(e["location"]["row"]), int(e["location"]["column"])),
                (int(e["end_location"]["row"]), int(e["end_location"]["column"])),
            )
            for e in fix.get("edits") or []
        )
    complexity = name = None
    if code == "C901":
        match = _COMPLEXITY.match(message)
        if match:
            complexity, name = int(match["value"]), match["name"]
    return Diagnostic(
        code=code,
        file=file,
        line=int(start.get("row") or 0),
        end_line=int(end.get("row") or 0),
        message=message,
        safe_edits=edits,
        complexity=complexity,
        name=name,
    )


def ruff_check_files(
    root: Path, relpaths: Sequence[str], select: Sequence[str]
) -> list[Diagnostic]:
    """Ruff's diagnostics for the given files (relative to ``root``)."""
    return start_ruff_check(root, relpaths, select)()


def start_ruff_check(
    root: Path, relpaths: Sequence[str], select: Sequence[str]
) -> Callable[[], list[Diagnostic]]:
    """Start ruff on the files now (it runs on another core while Python works); the
    returned function waits for and reads its diagnostics."""
    base = root.resolve()
    processes: list[subprocess.Popen[str]] = []
    try:
        for i in range(0, len(relpaths), _FILES_PER_CALL):
            chunk = relpaths[i : i + _FILES_PER_CALL]
            processes.append(
                subprocess.Popen(
                    [*_command(select), "--", *(str(base / p) for p in chunk)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    except OSError as exc:
        for process in processes:
            process.kill()
        raise RuffError(f"cannot run ruff: {exc}") from exc

    def collect() -> list[Diagnostic]:
        found: list[Diagnostic] = []
        for process in processes:
            stdout, stderr = process.communicate()
            for raw in _decode(stdout, stderr):
                try:
                    name = Path(str(raw.get("filename"))).resolve()
                    relpath = name.relative_to(base).as_posix()
                except ValueError:
                    continue
                found.append(_diagnostic(raw, relpath))
        return found

    return collect


def ruff_check_text(text: str, relpath: str, select: Sequence[str]) -> list[Diagnostic]:
    """Ruff's diagnostics for one file's text (not written anywhere)."""
    raw = _run([*_command(select), "--stdin-filename", relpath, "-"], stdin=text)
    return [_diagnostic(r, relpath) for r in raw]


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with the (non-overlapping) edits applied."""
    starts = _line_starts(text)

    def offset(pos: tuple[int, int]) -> int:
        row, col = pos
        base = starts[row - 1] if row - 1 < len(starts) else len(text)
        return base + col - 1

    spans = sorted(((offset(e.start), offset(e.end), e.content) for e in edits), reverse=True)
    for start, end, content in spans:
        text = text[:start] + content + text[end:]
    return text


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for i, char in enumerate(text):
        if char == "\n" or (char == "\r" and text[i + 1 : i + 2] != "\n"):
            starts.append(i + 1)
    return starts


# -- docstring coverage, as interrogate counts it ----------------------------------------------

_CONFIG_FIELDS = frozenset(f.name for f in attr.fields(InterrogateConfig))


def interrogate_config(root: Path) -> tuple[InterrogateConfig, str, tuple[str, ...]]:
    """The project's interrogate settings (pyproject.toml, else setup.cfg), where they came
    from, and its ``exclude`` patterns."""
    raw: dict[str, Any] | None = None
    source = "interrogate defaults"
    pyproject, setup_cfg = root / "pyproject.toml", root / "setup.cfg"
    try:
        if pyproject.is_file():
            raw = parse_pyproject_toml(str(pyproject)) or None
            source = "pyproject.toml [tool.interrogate]" if raw else source
        if raw is None and setup_cfg.is_file():
            raw = parse_setup_cfg(str(setup_cfg)) or None
            source = "setup.cfg [tool:interrogate]" if raw else source
    except Exception:  # a broken config file must not stop the analysis
        raw, source = None, "interrogate defaults (project config unreadable)"
    raw = raw or {}
    exclude = tuple(str(p) for p in raw.get("exclude") or ())
    settings = {k: v for k, v in raw.items() if k in _CONFIG_FIELDS}
    for key in ("ignore_regex", "include_regex"):
        patterns = settings.get(key)
        settings[key] = [re.compile(p) for p in patterns] if patterns else False
    try:
        return InterrogateConfig(**settings), source, exclude
    except (TypeError, ValueError):
        return InterrogateConfig(), "interrogate defaults (project config invalid)", exclude


_STATEMENT_HOLDERS = (ast.stmt, ast.excepthandler, ast.match_case)


class _DefinitionVisitor(CoverageVisitor):  # type: ignore[misc]
    """Interrogate's visitor, walking statements only: definitions are statements, so the
    nodes it records are the same, without visiting every expression."""

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _STATEMENT_HOLDERS):
                self.visit(child)


def _share_init_docstrings(nodes: list[Any]) -> None:
    """Google style, as interrogate counts it: a class and its ``__init__`` share one
    docstring."""
    for n in nodes:
        if n.node_type == "FunctionDef" and n.name == "__init__" and n.parent is not None:
            if not n.covered and n.parent.covered:
                n.covered = True
            elif n.covered and not n.parent.covered:
                n.parent.covered = True


@dataclass(frozen=True)
class DocCoverage:
    total: int
    covered: int
    missing_lines: frozenset[int]  # lines of the definitions interrogate counts as missing


def docstring_coverage(tree: ast.Module, relpath: str, config: InterrogateConfig) -> DocCoverage:
    """Interrogate's count for one parsed file, with the same filters its CLI applies."""
    if config.ignore_init_module and relpath.rsplit("/", 1)[-1] == "__init__.py":
        return DocCoverage(0, 0, frozenset())
    visitor = _DefinitionVisitor(filename=relpath, config=config)
    visitor.visit(tree)
    nodes = list(visitor.nodes)
    if len(nodes) == 1 and config.ignore_module:
        nodes = []
    if config.include_regex:
        module = [n for n in nodes if n.node_type == "Module"]
        kept = [
            n
            for n in nodes
            if n.node_type != "Module" and any(r.match(n.name) for r in config.include_regex)
        ]
        nodes = module + kept if kept else []
    if config.ignore_nested_functions:
        nodes = [n for n in nodes if not n.is_nested_func]
    if config.ignore_nested_classes:
        nested = [n for n in nodes if n.is_nested_cls]
        nodes = [n for n in nodes if n not in nested and n.parent not in nested]
    if config.docstring_style == "google":
        _share_init_docstrings(nodes)
    result = InterrogateFileResult(
        filename=relpath, ignore_module=config.ignore_module, nodes=nodes
    )
    result.combine()
    missing = frozenset(int(n.lineno or 1) for n in nodes if not n.covered)
    return DocCoverage(result.total, result.covered, missing)
