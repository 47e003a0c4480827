"""Executors: carry out one planned task on a file's text, with edits that keep behaviour.

Each executor finds its target by qualified symbol name in the text as it is now (not by
the line recorded at analysis time), so several edits to one file work in any order.
Edits go through libcst (``edits``) or are ruff's own safe fixes, and each is checked on
the syntax tree. An executor that cannot do a task well says so (``Skip``) instead of
guessing: ``deferred`` when the task needs a capability it lacks.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from .edit_task import DOC_NEUTRAL_DECORATORS, Edited, Skip, parse, task_line, task_symbol
from .edits import EditError, add_return_none, locate
from .measure import SIMPLIFY_RULES, Diagnostic, apply_edits, ruff_check_text
from .symbols import decorator_names, returns_nothing

__all__ = ["ReturnNoneExecutor", "RuffSimplifyExecutor", "worth_keeping"]

JSON = dict[str, Any]
# Fixes that merge branches, so mccabe counts fewer decision points.
LOWERS_COMPLEXITY = frozenset({"SIM102", "SIM114", "PLR1730"})
# Rounds of ruff fixes: one fix can make another possible (a collapsed if, then an else).
_FIX_ROUNDS = 5
_CACHED_TEXTS = 16


class ReturnNoneExecutor:
    """Adds ``-> None`` to a function that clearly returns nothing and whose decorators do not
    read annotations (a web framework's route may turn them into a response schema)."""

    name = "return-none"

    def supports(self, action: str) -> bool:
        return action == "add_return_annotation"

    def edit(self, task: Mapping[str, Any], text: str, relpath: str) -> Edited | Skip:
        tree = parse(text, relpath)
        if isinstance(tree, Skip):
            return tree
        symbol = task_symbol(task)
        try:
            node = locate(tree, symbol, task_line(task)).node
        except EditError as exc:
            return Skip(str(exc))
        if isinstance(node, ast.ClassDef):
            return Skip(f"{symbol} is a class")
        if node.returns is not None:
            return Skip(f"{symbol} already has a return annotation")
        if decorator_names(node) - DOC_NEUTRAL_DECORATORS:
            return Skip(f"{symbol} is decorated; its annotations may be read at run time")
        if not returns_nothing(node):
            return Skip(f"{symbol} may return a value (or is a stub); -> None would be a guess")
        try:
            new_text = add_return_none(text, tree, symbol, task_line(task))
        except EditError as exc:
            return Skip(str(exc))
        return Edited(new_text, "return_annotation_added", "-> None", self.name)


class RuffSimplifyExecutor:
    """Applies ruff's safe fixes that lower nesting or complexity (``SIMPLIFY_RULES``) inside
    one function, and measures its C901 complexity before and after."""

    name = "ruff"

    def __init__(self) -> None:
        # The text one task leaves is the text the next task in that file starts from: its
        # diagnostics are already known.
        # Trees are only read, never changed, so they can be shared between tasks.
        self._known: dict[str, tuple[ast.Module | Skip, list[Diagnostic]]] = {}

    def supports(self, action: str) -> bool:
        return action in ("reduce_complexity", "simplify")

    def _check(self, text: str, relpath: str) -> tuple[ast.Module | Skip, list[Diagnostic]]:
        """The text's syntax tree (or why it has none) and ruff's diagnostics."""
        key = hashlib.sha256(f"{relpath}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()
        found = self._known.get(key)
        if found is None:
            tree = parse(text, relpath)
            diagnostics = (
                []
                if isinstance(tree, Skip)
                else ruff_check_text(text, relpath, ("C901", *SIMPLIFY_RULES))
            )
            found = (tree, diagnostics)
            if len(self._known) >= _CACHED_TEXTS:
                self._known.pop(next(iter(self._known)))
            self._known[key] = found
        return found

    def edit(self, task: Mapping[str, Any], text: str, relpath: str) -> Edited | Skip:
        symbol = task_symbol(task)
        line = task_line(task)
        before: int | None = None
        complexity: int | None = None
        applied: list[str] = []
        current = text
        for round_ in range(_FIX_ROUNDS + 1):
            tree, diagnostics = self._check(current, relpath)
            if isinstance(tree, Skip):
                return tree
            try:
                node = locate(tree, symbol, line).node
            except EditError as exc:
                return Skip(str(exc))
            complexity = _complexity_of(diagnostics, node)
            before = complexity if before is None else before
            end = node.end_lineno or node.lineno
            chosen = _non_overlapping(
                d
                for d in diagnostics
                if d.code != "C901"
                and d.safe_edits
                and node.lineno <= d.line <= end
                and all(node.lineno <= e.start[0] and e.end[0] <= end for e in d.safe_edits)
                and worth_keeping(current, d)
            )
            # The last round only measures: its text is the one returned.
            if not chosen or round_ == _FIX_ROUNDS:
                break
            current = apply_edits(current, [e for d in chosen for e in d.safe_edits or ()])
            applied.extend(d.code for d in chosen)
            line = node.lineno
        if not applied:
            return Skip(
                f"no safe transformation lowers the complexity or nesting of {symbol} "
                f"(complexity {before}); it needs a refactor by a model or a person",
                deferred=True,
            )
        # The last round ran on the final text: its complexity is the one after.
        after = complexity
        codes = ", ".join(sorted(set(applied)))
        return Edited(
            current,
            "simplified",
            f"ruff safe fixes {codes}: complexity {before} -> {after}",
            self.name,
            {"complexity_before": before, "complexity_after": after},
        )


def worth_keeping(text: str, diagnostic: Diagnostic) -> bool:
    """A fix that lowers complexity, or one that lowers the indentation a reader sees
    (``elif`` turned into ``if`` after a return only restyles: not worth an edit)."""
    if diagnostic.code in LOWERS_COMPLEXITY:
        return True
    edited = apply_edits(text, diagnostic.safe_edits or ())
    return _indentation(edited) < _indentation(text)


def _indentation(text: str) -> int:
    return sum(len(line) - len(line.lstrip()) for line in text.splitlines() if line.strip())


def _complexity_of(diagnostics: Sequence[Diagnostic], node: ast.AST) -> int | None:
    line = getattr(node, "lineno", None)
    name = getattr(node, "name", None)
    for d in diagnostics:
        if d.code == "C901" and d.line == line and d.name == name:
            return d.complexity
    return None


def _non_overlapping(diagnostics: Any) -> list[Diagnostic]:
    chosen: list[Diagnostic] = []
    taken: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for diag in sorted(diagnostics, key=lambda d: (d.line, d.code)):
        spans = [(e.start, e.end) for e in diag.safe_edits or ()]
        if any(not (end <= s or e <= start) for start, end in spans for s, e in taken):
            continue
        chosen.append(diag)
        taken.extend(spans)
    return chosen
