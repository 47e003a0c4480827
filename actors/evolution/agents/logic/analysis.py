"""Static analysis of a Python project: metrics, issues and proposed improvements.

The result maps 1:1 onto ``store_original_analysis(files_analyzed=, metrics=, issues=,
improvements=)``; every value is plain JSON.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .complexity import cyclomatic_complexity
from .focus import normalize_focus
from .source import count_lines, is_test_file, iter_python_files, read_source
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
    "analyze_project",
]

JSON = dict[str, Any]

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
    "split_function",
    "add_docstring",
    "add_return_annotation",
    "add_annotations",
    "add_tests",
)
IMPROVEMENT_FOCUS: dict[str, tuple[str, ...]] = {
    "reduce_complexity": ("complexity", "maintainability"),
    "split_function": ("complexity", "maintainability"),
    "add_docstring": ("documentation",),
    "add_return_annotation": ("typing",),
    "add_annotations": ("typing",),
    "add_tests": ("testing",),
}
# Priority outside the requested focus: structural problems outrank cosmetic ones.
_BASE_PRIORITY = {
    "reduce_complexity": "medium",
    "split_function": "medium",
    "add_tests": "medium",
    "add_docstring": "low",
    "add_return_annotation": "low",
    "add_annotations": "low",
}
# The getter (or the implementation) carries the documentation for these.
_DOC_EXEMPT_DECORATORS = frozenset({"overload", "setter", "deleter"})
_NON_CODE_TOKENS = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENCODING,
        tokenize.ENDMARKER,
    }
)
_PARSE_ERRORS = (SyntaxError, UnicodeDecodeError, LookupError, ValueError, RecursionError)


@dataclass(frozen=True)
class AnalysisResult:
    """What the code-analysis agent stores as ``original_analysis``."""

    files_analyzed: int
    metrics: JSON
    issues: list[JSON]
    improvements: list[JSON]

    def to_dict(self) -> JSON:
        """A deep copy as the plain dict the store holds (and ``store_kwargs`` expects)."""
        return asdict(self)

    def store_kwargs(self) -> JSON:
        """Keyword arguments for ``store_original_analysis``."""
        return self.to_dict()


@dataclass(frozen=True)
class _Finding:
    """An improvement before ids and priorities are assigned."""

    type: str
    file: str
    line: int
    symbol: str | None
    rationale: str


@dataclass
class _FileReport:
    file: str
    lines: int = 0
    code_lines: int = 0
    parsed: bool = True
    functions: list[JSON] = field(default_factory=list)
    classes: list[JSON] = field(default_factory=list)
    public_symbols: int = 0
    documented_symbols: int = 0
    public_functions: int = 0
    annotated_functions: int = 0
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

    def add_finding(self, kind: str, line: int, symbol: str | None, rationale: str) -> None:
        self.findings.append(_Finding(kind, self.file, line, symbol, rationale))


def analyze_project(root: Path, focus_areas: Sequence[str] = ()) -> AnalysisResult:
    """Analyse every Python file under ``root``; never raises for unparseable files.

    ``files_analyzed`` counts every file examined, including those reported as
    ``syntax_error`` (they contribute no other metric).
    """
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    reports = [
        _analyze_file(path, path.relative_to(root).as_posix()) for path in iter_python_files(root)
    ]
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
    return AnalysisResult(
        files_analyzed=len(reports),
        metrics=_metrics(reports, test_files),
        issues=issues,
        improvements=_improvements(findings, normalize_focus(focus_areas)),
    )


def _analyze_file(path: Path, relpath: str) -> _FileReport:
    report = _FileReport(file=relpath)
    try:
        text = read_source(path).text
        tree = ast.parse(text, filename=relpath)
    except _PARSE_ERRORS as exc:
        report.parsed = False
        line = getattr(exc, "lineno", None) or 1
        detail = getattr(exc, "msg", None) or str(exc)
        report.add_issue(
            "syntax_error", line, None, f"cannot parse: {type(exc).__name__}: {detail}", "high"
        )
        return report
    report.lines = count_lines(text)
    report.code_lines = _code_lines(text)
    if tree.body:
        # An empty module (a bare __init__.py) has nothing to document.
        _check_docstring(report, tree, MODULE_SYMBOL, "module", 1)
    for definition in iter_definitions(tree):
        _analyze_definition(report, definition)
    return report


def _analyze_definition(report: _FileReport, definition: Definition) -> None:
    node = definition.node
    name = definition.qualname
    if isinstance(node, ast.ClassDef):
        report.classes.append({"name": name, "file": report.file, "line": node.lineno})
        if definition.public:
            _check_docstring(report, node, name, "class", node.lineno)
        return
    complexity = cyclomatic_complexity(node)
    length = (node.end_lineno or node.lineno) - node.lineno + 1
    report.functions.append(
        {
            "name": name,
            "file": report.file,
            "line": node.lineno,
            "complexity": complexity,
            "length": length,
        }
    )
    if complexity > COMPLEXITY_THRESHOLD:
        severity = "high" if complexity > SEVERE_COMPLEXITY else "medium"
        report.add_issue(
            "high_complexity",
            node.lineno,
            name,
            f"cyclomatic complexity {complexity} exceeds {COMPLEXITY_THRESHOLD}",
            severity,
        )
        report.add_finding(
            "reduce_complexity",
            node.lineno,
            name,
            f"complexity {complexity} > {COMPLEXITY_THRESHOLD}: flatten branches, extract helpers",
        )
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
        )
    if not definition.public:
        return
    if not decorator_names(node) & _DOC_EXEMPT_DECORATORS:
        kind = "method" if definition.is_method else "function"
        _check_docstring(report, node, name, kind, node.lineno)
    _check_annotations(report, definition)


def _check_docstring(
    report: _FileReport,
    node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef,
    symbol: str,
    kind: str,
    line: int,
) -> None:
    report.public_symbols += 1
    if has_docstring(node):
        report.documented_symbols += 1
        return
    label = "module" if kind == "module" else f"{kind} {symbol}"
    report.add_issue("missing_docstring", line, symbol, f"public {label} has no docstring", "low")
    report.add_finding("add_docstring", line, symbol, f"public {label} has no docstring")


def _check_annotations(report: _FileReport, definition: Definition) -> None:
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
    if return_missing and returns_nothing(node):
        report.add_finding(
            "add_return_annotation",
            node.lineno,
            name,
            "returns nothing but has no return annotation: declare -> None",
        )
        return_missing = False
    if params or return_missing:
        what = [*params, "return"] if return_missing else params
        report.add_finding("add_annotations", node.lineno, name, f"annotate: {', '.join(what)}")


def _code_lines(text: str) -> int:
    """Lines holding at least one token other than comments and layout."""
    rows: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type not in _NON_CODE_TOKENS:
                rows.update(range(token.start[0], token.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        stripped = (line.strip() for line in text.splitlines())
        return sum(1 for line in stripped if line and not line.startswith("#"))
    return len(rows)


def _ratio(part: int, whole: int) -> float:
    # Nothing to cover counts as fully covered, so empty projects don't look broken.
    return round(part / whole, 4) if whole else 1.0


def _metrics(reports: Sequence[_FileReport], test_files: int) -> JSON:
    functions = sorted(
        (f for r in reports for f in r.functions), key=lambda f: (f["file"], f["line"])
    )
    complexities = [f["complexity"] for f in functions]
    lengths = [f["length"] for f in functions]
    public_symbols = sum(r.public_symbols for r in reports)
    public_functions = sum(r.public_functions for r in reports)
    parsed = [r for r in reports if r.parsed]
    return {
        "files": len(reports),
        "unparseable_files": len(reports) - len(parsed),
        "lines": sum(r.lines for r in reports),
        "code_lines": sum(r.code_lines for r in reports),
        "functions": len(functions),
        "classes": sum(len(r.classes) for r in reports),
        "complexity": round(sum(complexities) / len(complexities), 2) if complexities else 0.0,
        "complexity_max": max(complexities, default=0),
        "high_complexity_functions": sum(1 for c in complexities if c > COMPLEXITY_THRESHOLD),
        "function_length_max": max(lengths, default=0),
        "long_functions": sum(1 for n in lengths if n > LONG_FUNCTION_THRESHOLD),
        "public_symbols": public_symbols,
        "documented_symbols": sum(r.documented_symbols for r in reports),
        "docstring_coverage": _ratio(sum(r.documented_symbols for r in reports), public_symbols),
        "public_functions": public_functions,
        "annotated_functions": sum(r.annotated_functions for r in reports),
        "type_hint_coverage": _ratio(sum(r.annotated_functions for r in reports), public_functions),
        "tests_present": test_files > 0,
        "test_files": test_files,
        "per_file": [
            {
                "file": r.file,
                "lines": r.lines,
                "code_lines": r.code_lines,
                "functions": len(r.functions),
                "classes": len(r.classes),
                "parsed": r.parsed,
            }
            for r in reports
        ],
        "per_function": functions,
        "per_class": [c for r in reports for c in r.classes],
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
            f"{finding.file}/"
            if finding.type == "add_tests"
            else (f"{finding.file}:{finding.line}")
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
            }
        )
    return improvements
