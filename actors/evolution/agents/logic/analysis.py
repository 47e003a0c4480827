"""Static analysis of a Python project: metrics, issues and proposed improvements.

Complexity is ruff's C901 (mccabe) for every function and docstring coverage is
interrogate's count with the project's own settings, so the figures match what users see
when they run those tools. Each file is read and parsed once; ruff runs once over all files.

``AnalysisResult`` holds everything found; what goes into the store is bounded (see
``payloads``): summaries that are always complete, ranked lists cut to a budget, and
per-file detail under ``metrics["detail"]``.
"""

from __future__ import annotations

import ast
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interrogate.config import InterrogateConfig

from .edit_task import DOC_NEUTRAL_DECORATORS
from .executors import worth_keeping
from .focus import normalize_focus
from .measure import (
    SIMPLIFY_RULES,
    Diagnostic,
    docstring_coverage,
    interrogate_config,
    start_ruff_check,
    tool_versions,
)
from .source import count_lines, is_test_file, python_relpaths, read_source
from .symbols import (
    MODULE_SYMBOL,
    Definition,
    decorator_names,
    has_docstring,
    iter_definitions,
    missing_annotations,
    returns_nothing,
)

__all__ = [
    "COMPLEXITY_THRESHOLD",
    "IMPROVEMENT_FOCUS",
    "IMPROVEMENT_TYPES",
    "ISSUE_TYPES",
    "LONG_FUNCTION_THRESHOLD",
    "AnalysisResult",
    "FileFacts",
    "FunctionFacts",
    "analyze_files",
    "analyze_project",
    "project_fingerprint",
    "symbol_hash",
]

JSON = dict[str, Any]

# ruff's and mccabe's default max-complexity.
COMPLEXITY_THRESHOLD = 10
SEVERE_COMPLEXITY = 20
LONG_FUNCTION_THRESHOLD = 50
SEVERE_LENGTH = 100

ISSUE_TYPES = (
    "syntax_error",
    "high_complexity",
    "long_function",
    "missing_docstring",
    "missing_annotations",
)
# Order doubles as the tie-breaker when two improvements target the same line.
IMPROVEMENT_TYPES = (
    "reduce_complexity",
    "simplify",
    "split_function",
    "add_docstring",
    "add_return_annotation",
    "add_annotations",
    "add_tests",
)
IMPROVEMENT_FOCUS: dict[str, tuple[str, ...]] = {
    "reduce_complexity": ("complexity", "maintainability"),
    "simplify": ("complexity", "maintainability"),
    "split_function": ("complexity", "maintainability"),
    "add_docstring": ("documentation",),
    "add_return_annotation": ("typing",),
    "add_annotations": ("typing",),
    "add_tests": ("testing",),
}
# Priority outside the requested focus: structural problems outrank cosmetic ones.
_BASE_PRIORITY = {
    "reduce_complexity": "medium",
    "simplify": "low",
    "split_function": "medium",
    "add_tests": "medium",
    "add_docstring": "low",
    "add_return_annotation": "low",
    "add_annotations": "low",
}
# The getter (or the implementation) carries the documentation for these.
_DOC_EXEMPT_DECORATORS = frozenset({"overload", "setter", "deleter"})
# Text that reads docstrings at run time; a file holding it gets no generated docstrings.
_RUNTIME_DOC_MARKERS = ("__doc__", "getdoc(")
_PARSE_ERRORS = (SyntaxError, UnicodeDecodeError, LookupError, ValueError, RecursionError)


@dataclass(frozen=True)
class _Finding:
    """An improvement before ids and priorities are assigned."""

    type: str
    file: str
    line: int
    symbol: str | None
    rationale: str
    source_hash: str | None = None


@dataclass
class FunctionFacts:
    name: str
    line: int
    end_line: int
    complexity: int = 1
    public: bool = False
    simplifications: list[str] = field(default_factory=list)
    source_hash: str = ""


@dataclass
class FileFacts:
    """Everything measured in one file; plain data, small."""

    file: str
    digest: str = ""
    lines: int = 0
    parsed: bool = True
    functions: list[FunctionFacts] = field(default_factory=list)
    classes: list[tuple[str, int, str]] = field(default_factory=list)
    doc_total: int = 0
    doc_covered: int = 0
    public_symbols: int = 0
    documented_symbols: int = 0
    public_functions: int = 0
    annotated_functions: int = 0
    runtime_docs: bool = False
    issues: list[JSON] = field(default_factory=list)
    findings: list[_Finding] = field(default_factory=list)

    def add_issue(
        self, kind: str, line: int, symbol: str | None, message: str, severity: str
    ) -> None:
        self.issues.append(
            {
                "type": kind,
                "location": f"{self.file}:{line}",
                "file": self.file,
                "line": line,
                "symbol": symbol,
                "message": message,
                "severity": severity,
            }
        )

    def add_finding(
        self, kind: str, line: int, symbol: str | None, rationale: str, source_hash: str | None
    ) -> None:
        self.findings.append(_Finding(kind, self.file, line, symbol, rationale, source_hash))

    def summary(self) -> JSON:
        """The per-file detail row stored with the analysis."""
        return {
            "file": self.file,
            "lines": self.lines,
            "parsed": self.parsed,
            "functions": len(self.functions),
            "complexity_max": max((f.complexity for f in self.functions), default=0),
            "doc_total": self.doc_total,
            "doc_covered": self.doc_covered,
        }


@dataclass(frozen=True)
class AnalysisResult:
    """Everything the analysis found; ``payloads.analysis_payload`` bounds it for the store."""

    files_analyzed: int
    metrics: JSON
    issues: list[JSON]
    improvements: list[JSON]
    files: list[FileFacts] = field(default_factory=list, repr=False)

    def function(self, file: str, qualname: str) -> FunctionFacts | None:
        for facts in self.files:
            if facts.file == file:
                return next((f for f in facts.functions if f.name == qualname), None)
        return None

    def to_dict(self) -> JSON:
        """Summary, issues and improvements (unbounded) as plain data."""
        return {
            "files_analyzed": self.files_analyzed,
            "metrics": self.metrics,
            "issues": self.issues,
            "improvements": self.improvements,
        }


def analyze_project(root: Path, focus_areas: Sequence[str] = ()) -> AnalysisResult:
    """Analyse every Python file under ``root``; never raises for unparseable files.

    ``files_analyzed`` counts every file examined, including those reported as
    ``syntax_error`` (they contribute no other metric).
    """
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    return analyze_files(root, python_relpaths(root), focus_areas)


def analyze_files(
    root: Path, relpaths: Sequence[str], focus_areas: Sequence[str] = ()
) -> AnalysisResult:
    """Analyse the named files of the project at ``root``."""
    config, config_source, exclude = interrogate_config(root)
    settings = f"{config_source}|{config!r}|{exclude!r}"
    known: dict[str, FileFacts] = {}
    for rel in relpaths:
        facts = _FACTS.get((rel, _digest(root / rel), settings))
        if facts is not None:
            known[rel] = facts
    todo = [rel for rel in relpaths if rel not in known]
    # Ruff reads the files on another core while this one parses them; an unparseable file
    # just gets no diagnostics.
    ruff = start_ruff_check(root, todo, ("C901", *SIMPLIFY_RULES))
    fresh = [_analyze_file(root / rel, rel, config, exclude) for rel in todo]
    _attach_ruff(root, fresh, ruff())
    for facts in fresh:
        _remember((facts.file, facts.digest, settings), facts)
        known[facts.file] = facts
    reports = [known[rel] for rel in relpaths]
    test_files = sum(1 for r in reports if is_test_file(r.file))
    findings = [f for r in reports for f in r.findings]
    if test_files == 0:
        findings.append(
            _Finding(
                "add_tests",
                "tests",
                0,
                None,
                "no test files found (test_*.py, *_test.py or a tests/ folder)",
            )
        )
    issues = sorted(
        (i for r in reports for i in r.issues),
        key=lambda i: (i["file"], i["line"], ISSUE_TYPES.index(i["type"]), i["symbol"] or ""),
    )
    metrics = _metrics(reports, test_files)
    metrics["tools"] = {**tool_versions(), "docstring_settings": config_source}
    return AnalysisResult(
        files_analyzed=len(reports),
        metrics=metrics,
        issues=issues,
        improvements=_improvements(findings, normalize_focus(focus_areas)),
        files=reports,
    )


# Facts of files already analysed, by (path, content hash, settings): the re-analysis after
# implementation, in the same process (the engine's local agents), re-reads only the files
# that changed. Facts are only read once made.
_FACTS: dict[tuple[str, str, str], FileFacts] = {}
_FACTS_KEPT = 50_000


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _remember(key: tuple[str, str, str], facts: FileFacts) -> None:
    if not facts.digest:
        return
    if len(_FACTS) >= _FACTS_KEPT:
        del _FACTS[next(iter(_FACTS))]
    _FACTS[key] = facts


def project_fingerprint(digests: Sequence[tuple[str, str]]) -> str:
    """One hash of a project's Python files (path and content), to recognise it elsewhere."""
    h = hashlib.sha256()
    for relpath, digest in sorted(digests):
        h.update(f"{relpath}\0{digest}\n".encode())
    return h.hexdigest()[:32]


def symbol_hash(lines: Sequence[str], start: int, end: int) -> str:
    """Hash of a definition's source lines, to tell later whether it changed."""
    text = "".join(lines[start - 1 : end])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _analyze_file(
    path: Path, relpath: str, config: InterrogateConfig, exclude: Sequence[str]
) -> FileFacts:
    report = FileFacts(file=relpath)
    try:
        data = path.read_bytes()
        report.digest = hashlib.sha256(data).hexdigest()
        text = read_source(path).text
        tree = ast.parse(text, filename=relpath)
    except (*_PARSE_ERRORS, OSError) as exc:
        report.parsed = False
        line = getattr(exc, "lineno", None) or 1
        detail = getattr(exc, "msg", None) or str(exc)
        report.add_issue(
            "syntax_error", line, None, f"cannot parse: {type(exc).__name__}: {detail}", "high"
        )
        return report
    report.lines = count_lines(text)
    report.runtime_docs = any(marker in text for marker in _RUNTIME_DOC_MARKERS)
    if not any(relpath.startswith(pattern.rstrip("*").lstrip("./")) for pattern in exclude):
        coverage = docstring_coverage(tree, relpath, config)
        report.doc_total, report.doc_covered = coverage.total, coverage.covered
    lines = text.splitlines(keepends=True)
    module_hash = hashlib.sha256(data).hexdigest()[:16]
    if tree.body:
        # An empty module (a bare __init__.py) has nothing to document.
        _check_docstring(report, tree, MODULE_SYMBOL, "module", 1, module_hash, documentable=True)
    for definition in iter_definitions(tree):
        _analyze_definition(report, definition, lines)
    return report


def _analyze_definition(report: FileFacts, definition: Definition, lines: list[str]) -> None:
    node = definition.node
    name = definition.qualname
    end = node.end_lineno or node.lineno
    digest = symbol_hash(lines, node.lineno, end)
    decorators = decorator_names(node)
    # Any other decorator may read the docstring: click, typer and invoke make it --help text.
    documentable = not (decorators - DOC_NEUTRAL_DECORATORS)
    if isinstance(node, ast.ClassDef):
        report.classes.append((name, node.lineno, digest))
        if definition.public:
            _check_docstring(report, node, name, "class", node.lineno, digest, documentable)
        return
    report.functions.append(
        FunctionFacts(name, node.lineno, end, public=definition.public, source_hash=digest)
    )
    length = end - node.lineno + 1
    if length > LONG_FUNCTION_THRESHOLD:
        severity = "high" if length > SEVERE_LENGTH else "medium"
        report.add_issue(
            "long_function",
            node.lineno,
            name,
            f"{length} lines long (limit {LONG_FUNCTION_THRESHOLD})",
            severity,
        )
        report.add_finding(
            "split_function",
            node.lineno,
            name,
            f"{length} lines > {LONG_FUNCTION_THRESHOLD}: split into focused helpers",
            digest,
        )
    if not definition.public or is_test_file(report.file):
        # Tests are not API: they get no generated docstrings or annotations.
        return
    if not decorators & _DOC_EXEMPT_DECORATORS:
        kind = "method" if definition.is_method else "function"
        _check_docstring(report, node, name, kind, node.lineno, digest, documentable)
    _check_annotations(report, definition, digest, documentable)


def _check_docstring(
    report: FileFacts,
    node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef,
    symbol: str,
    kind: str,
    line: int,
    digest: str,
    documentable: bool,
) -> None:
    report.public_symbols += 1
    if has_docstring(node):
        report.documented_symbols += 1
        return
    label = "module" if kind == "module" else f"{kind} {symbol}"
    report.add_issue("missing_docstring", line, symbol, f"public {label} has no docstring", "low")
    if report.runtime_docs or not documentable or is_test_file(report.file):
        # A docstring read at run time (--help text, __doc__) is behaviour: never generated.
        return
    report.add_finding("add_docstring", line, symbol, f"public {label} has no docstring", digest)


def _check_annotations(
    report: FileFacts, definition: Definition, digest: str, undecorated: bool
) -> None:
    node = definition.node
    if isinstance(node, ast.ClassDef):
        return
    report.public_functions += 1
    missing = missing_annotations(definition)
    if not missing:
        report.annotated_functions += 1
        return
    name = definition.qualname
    report.add_issue(
        "missing_annotations",
        node.lineno,
        name,
        f"missing annotations: {', '.join(missing)}",
        "low",
    )
    params = [m for m in missing if m != "return"]
    return_missing = "return" in missing
    if return_missing and undecorated and returns_nothing(node):
        # A decorator may read annotations (a route's response schema): only plain functions.
        report.add_finding(
            "add_return_annotation",
            node.lineno,
            name,
            "returns nothing but has no return annotation: declare -> None",
            digest,
        )
        return_missing = False
    if params or return_missing:
        what = [*params, "return"] if return_missing else params
        report.add_finding(
            "add_annotations", node.lineno, name, f"annotate: {', '.join(what)}", digest
        )


def _attach_ruff(
    root: Path, reports: Sequence[FileFacts], diagnostics: Sequence[Diagnostic]
) -> None:
    by_file = {r.file: r for r in reports}
    texts: dict[str, str] = {}
    for diag in diagnostics:
        report = by_file.get(diag.file)
        if report is None:
            continue
        if diag.code == "C901":
            _set_complexity(report, diag)
        elif diag.safe_edits is not None:
            if diag.file not in texts:
                texts[diag.file] = read_source(root / diag.file).text
            # Only fixes the executor would make count (not ``elif`` -> ``if`` restyling).
            inner = _innermost(report.functions, diag.line)
            if inner is not None and worth_keeping(texts[diag.file], diag):
                inner.simplifications.append(diag.code)
    for report in reports:
        for fn in report.functions:
            _complexity_findings(report, fn)


def _set_complexity(report: FileFacts, diag: Diagnostic) -> None:
    """Ruff's C901 figure on the function it names (by its line)."""
    for fn in report.functions:
        if fn.line == diag.line and diag.complexity is not None:
            fn.complexity = diag.complexity
            return


def _innermost(functions: Sequence[FunctionFacts], line: int) -> FunctionFacts | None:
    holding = [f for f in functions if f.line <= line <= f.end_line]
    return max(holding, key=lambda f: f.line, default=None)


def _complexity_findings(report: FileFacts, fn: FunctionFacts) -> None:
    fixes = ", ".join(sorted(set(fn.simplifications)))
    if fn.complexity > COMPLEXITY_THRESHOLD:
        severity = "high" if fn.complexity > SEVERE_COMPLEXITY else "medium"
        report.add_issue(
            "high_complexity",
            fn.line,
            fn.name,
            f"cyclomatic complexity {fn.complexity} exceeds {COMPLEXITY_THRESHOLD} (ruff C901)",
            severity,
        )
        hint = f"; ruff safe fixes available: {fixes}" if fixes else "; no safe fix is known"
        report.add_finding(
            "reduce_complexity",
            fn.line,
            fn.name,
            f"complexity {fn.complexity} > {COMPLEXITY_THRESHOLD}{hint}",
            fn.source_hash,
        )
    elif fixes:
        report.add_finding(
            "simplify",
            fn.line,
            fn.name,
            f"ruff safe fixes lower nesting or complexity: {fixes}",
            fn.source_hash,
        )


def _ratio(part: int, whole: int) -> float:
    # Nothing to cover counts as fully covered, so empty projects don't look broken.
    return round(part / whole, 4) if whole else 1.0


def _metrics(reports: Sequence[FileFacts], test_files: int) -> JSON:
    functions = [f for r in reports for f in r.functions]
    complexities = [f.complexity for f in functions]
    lengths = [f.end_line - f.line + 1 for f in functions]
    public_symbols = sum(r.public_symbols for r in reports)
    public_functions = sum(r.public_functions for r in reports)
    doc_total = sum(r.doc_total for r in reports)
    doc_covered = sum(r.doc_covered for r in reports)
    parsed = [r for r in reports if r.parsed]
    issue_counts = Counter(i["type"] for r in reports for i in r.issues)
    return {
        "files": len(reports),
        "unparseable_files": len(reports) - len(parsed),
        "lines": sum(r.lines for r in reports),
        "functions": len(functions),
        "classes": sum(len(r.classes) for r in reports),
        "complexity": round(sum(complexities) / len(complexities), 2) if complexities else 0.0,
        "complexity_max": max(complexities, default=0),
        "complexity_total": sum(complexities),
        "high_complexity_functions": sum(1 for c in complexities if c > COMPLEXITY_THRESHOLD),
        "simplifications_available": sum(len(f.simplifications) for f in functions),
        "function_length_max": max(lengths, default=0),
        "long_functions": sum(1 for n in lengths if n > LONG_FUNCTION_THRESHOLD),
        "docstring_total": doc_total,
        "docstring_covered": doc_covered,
        "docstring_coverage": _ratio(doc_covered, doc_total),
        "public_symbols": public_symbols,
        "documented_symbols": sum(r.documented_symbols for r in reports),
        "public_docstring_coverage": _ratio(
            sum(r.documented_symbols for r in reports), public_symbols
        ),
        "public_functions": public_functions,
        "annotated_functions": sum(r.annotated_functions for r in reports),
        "type_hint_coverage": _ratio(sum(r.annotated_functions for r in reports), public_functions),
        "tests_present": test_files > 0,
        "test_files": test_files,
        "issue_counts": dict(sorted(issue_counts.items())),
        "fingerprint": project_fingerprint([(r.file, r.digest) for r in reports]),
    }


def _improvements(findings: Sequence[_Finding], focus: Sequence[str]) -> list[JSON]:
    ordered = sorted(
        findings, key=lambda f: (f.file, f.line, IMPROVEMENT_TYPES.index(f.type), f.symbol or "")
    )
    improvements: list[JSON] = []
    for number, finding in enumerate(ordered, start=1):
        areas = IMPROVEMENT_FOCUS[finding.type]
        in_focus = any(area in focus for area in areas)
        target = (
            f"{finding.file}/" if finding.type == "add_tests" else f"{finding.file}:{finding.line}"
        )
        improvements.append(
            {
                "id": f"imp-{number:04d}",
                "type": finding.type,
                "target": target,
                "file": finding.file,
                "line": finding.line,
                "symbol": finding.symbol,
                "priority": "high" if in_focus else _BASE_PRIORITY[finding.type],
                "focus": areas[0],
                "rationale": finding.rationale,
                "source_hash": finding.source_hash,
            }
        )
    return improvements
