"""Executors: apply one planned task to a working copy, with verified source edits.

Each built-in executor finds its target by qualified symbol name in the file as it is
now (not by the line recorded at analysis time), so several edits to one file work in
any order. Every edit is written, re-read and re-parsed; if the file no longer parses
or the edit is not visible in the new tree, the original bytes are put back and the
task is reported as a ``Skip``.
"""

from __future__ import annotations

import ast
import difflib
import io
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .source import SourceText, read_source, split_lines, write_source
from .summaries import class_summary, function_summary, module_summary
from .symbols import (
    MODULE_SYMBOL,
    Definition,
    DefinitionNode,
    decorator_names,
    find_definitions,
    has_docstring,
    returns_nothing,
)

__all__ = [
    "Change",
    "DocstringExecutor",
    "Executor",
    "ReturnNoneExecutor",
    "Skip",
    "default_executors",
]

JSON = dict[str, Any]
_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")


@dataclass(frozen=True)
class Change:
    """An edit that was made and verified."""

    file: str
    type: str
    symbol: str | None
    line: int
    diff: str

    def to_dict(self, task_id: str) -> JSON:
        """The ``changes`` entry of the implementation log."""
        return {
            "task_id": task_id,
            "file": self.file,
            "type": self.type,
            "symbol": self.symbol,
            "line": self.line,
            "diff": self.diff,
        }


@dataclass(frozen=True)
class Skip:
    """A task that was not applied, and why; the working copy is left untouched."""

    reason: str


class Executor(Protocol):
    """Applies the tasks whose action it supports (LLM-backed executors fit here too)."""

    def supports(self, action: str) -> bool:
        """Whether this executor can carry out tasks with this ``action``."""
        ...

    def apply(self, task: Mapping[str, Any], workdir: Path) -> Change | Skip:
        """Apply ``task`` to the files under ``workdir``; must leave no partial edit."""
        ...


def default_executors() -> list[Executor]:
    """The built-in executors, in the order they are consulted."""
    return [DocstringExecutor(), ReturnNoneExecutor()]


@dataclass(frozen=True)
class _Target:
    path: Path
    relpath: str
    original: bytes
    source: SourceText
    tree: ast.Module


def _load(task: Mapping[str, Any], workdir: Path) -> _Target | Skip:
    relpath = task.get("file")
    if not isinstance(relpath, str) or not relpath:
        return Skip("task names no file")
    root = workdir.resolve()
    path = (root / relpath).resolve()
    if not path.is_relative_to(root):
        return Skip(f"{relpath} lies outside the working copy")
    if not path.is_file():
        return Skip(f"{relpath} does not exist")
    try:
        original = path.read_bytes()
        source = read_source(path)
        tree = ast.parse(source.text, filename=relpath)
    except (SyntaxError, UnicodeDecodeError, LookupError, ValueError) as exc:
        return Skip(f"{relpath} cannot be parsed: {exc}")
    return _Target(path, relpath, original, source, tree)


def _commit(
    target: _Target, new_text: str, verify: Callable[[ast.Module], int | None]
) -> int | Skip:
    """Write, re-read and re-parse; ``verify`` returns the edited symbol's line or None."""
    write_source(target.path, target.source, new_text)
    try:
        tree = ast.parse(read_source(target.path).text, filename=target.relpath)
        line = verify(tree)
    except (SyntaxError, UnicodeDecodeError, LookupError, ValueError) as exc:
        target.path.write_bytes(target.original)
        return Skip(f"edit broke {target.relpath} ({exc}); restored")
    if line is None:
        target.path.write_bytes(target.original)
        return Skip(f"edit not visible after re-parsing {target.relpath}; restored")
    return line


def _short_diff(relpath: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), f"a/{relpath}", f"b/{relpath}", n=1, lineterm=""
    )
    return "\n".join(lines)


def _nearest(candidates: list[Definition], line: object) -> Definition:
    hint = line if isinstance(line, int) and not isinstance(line, bool) else 0
    return min(candidates, key=lambda d: (abs(d.node.lineno - hint), d.node.lineno))


def _symbol(task: Mapping[str, Any]) -> str:
    symbol = task.get("symbol")
    return symbol if isinstance(symbol, str) and symbol else MODULE_SYMBOL


class _ActionExecutor:
    """An executor for the fixed set of task actions it names in ``actions``."""

    actions: frozenset[str] = frozenset()

    def supports(self, action: str) -> bool:
        """Whether ``action`` is one of ``actions``."""
        return action in self.actions


class DocstringExecutor(_ActionExecutor):
    """Adds a generated one-line docstring to a module, class or function lacking one."""

    actions = frozenset({"add_docstring"})

    def apply(self, task: Mapping[str, Any], workdir: Path) -> Change | Skip:
        """Insert the docstring as the first statement of the target's body."""
        target = _load(task, workdir)
        if isinstance(target, Skip):
            return target
        symbol = _symbol(task)
        node: ast.Module | DefinitionNode
        if symbol == MODULE_SYMBOL:
            if has_docstring(target.tree):
                return Skip("module already has a docstring")
            if not target.tree.body:
                return Skip("module is empty")
            node = target.tree
            summary = module_summary(target.relpath)
        else:
            found = find_definitions(target.tree, symbol)
            missing = [d for d in found if not has_docstring(d.node)]
            if not missing:
                return Skip(f"{symbol} already has a docstring" if found else _not_found(symbol))
            chosen = _nearest(missing, task.get("line"))
            node = chosen.node
            summary = _summary_for(chosen)
        new_text = _insert_docstring(target.source, node, summary)

        def verify(tree: ast.Module) -> int | None:
            if symbol == MODULE_SYMBOL:
                return 1 if ast.get_docstring(tree) == summary else None
            lines = [
                d.node.lineno
                for d in find_definitions(tree, symbol)
                if ast.get_docstring(d.node) == summary
            ]
            return min(lines) if lines else None

        line = _commit(target, new_text, verify)
        if isinstance(line, Skip):
            return line
        return Change(
            file=target.relpath,
            type="docstring_added",
            symbol=symbol,
            line=line,
            diff=_short_diff(target.relpath, target.source.text, new_text),
        )


def _not_found(symbol: str) -> str:
    return f"symbol {symbol} not found"


def _summary_for(definition: Definition) -> str:
    node = definition.node
    if isinstance(node, ast.ClassDef):
        return class_summary(node.name)
    params = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
    owner = None
    if definition.is_method:
        owner = definition.qualname.rsplit(".", 2)[-2]
        if "staticmethod" not in decorator_names(node):
            params = params[1:]
    return function_summary(
        node.name, returns_value=not returns_nothing(node), params=params, owner=owner
    )


def _insert_docstring(source: SourceText, node: ast.Module | DefinitionNode, summary: str) -> str:
    """Source with ``summary`` as the node's docstring, keeping layout and newlines."""
    nl = source.newline
    lines = split_lines(source.text)
    docstring = f'"""{summary}"""'
    first = node.body[0]
    decorators = getattr(first, "decorator_list", None) or []
    start = min([first.lineno, *(d.lineno for d in decorators)])
    index = start - 1
    line = lines[index]
    if isinstance(node, ast.Module):
        # A blank line separates a module docstring from the code (PEP 8 layout).
        lines.insert(index, docstring + nl + nl)
        return "".join(lines)
    body_col = len(line.encode("utf-8")[: first.col_offset].decode("utf-8", errors="ignore"))
    # PEP 257: a blank line after a class docstring, before the first method.
    tail = nl if isinstance(node, ast.ClassDef) else ""
    if decorators or not line[:body_col].strip():
        indent = line[: len(line) - len(line.lstrip())]
        at = index
        # Blank lines between header and body would otherwise precede the docstring.
        while at - 1 >= node.lineno and not lines[at - 1].strip():
            at -= 1
        lines.insert(at, indent + docstring + nl + (tail if at == index else ""))
        return "".join(lines)
    # One-line body (``def f(): return 1``): move the body to its own indented line.
    header = lines[node.lineno - 1]
    outer = header[: len(header) - len(header.lstrip())]
    inner = outer + ("\t" if outer.startswith("\t") else "    ")
    lines[index : index + 1] = [
        line[:body_col].rstrip() + nl,
        inner + docstring + nl + tail,
        inner + line[body_col:],
    ]
    return "".join(lines)


class ReturnNoneExecutor(_ActionExecutor):
    """Adds ``-> None`` to a function that clearly returns nothing."""

    actions = frozenset({"add_return_annotation"})

    def apply(self, task: Mapping[str, Any], workdir: Path) -> Change | Skip:
        """Insert `` -> None`` after the closing parenthesis of the parameters."""
        target = _load(task, workdir)
        if isinstance(target, Skip):
            return target
        symbol = _symbol(task)
        found = [d for d in find_definitions(target.tree, symbol) if d.is_function]
        unannotated = [d for d in found if _returns(d) is None]
        if not unannotated:
            return Skip(
                f"{symbol} already has a return annotation" if found else _not_found(symbol)
            )
        definition = _nearest(unannotated, task.get("line"))
        node = definition.node
        if isinstance(node, ast.ClassDef) or not returns_nothing(node):
            return Skip(f"{symbol} may return a value (or is a stub); -> None would be a guess")
        position = _parameters_end(target.source.text, node.lineno)
        if position is None:
            return Skip(f"cannot find the parameter list of {symbol}")
        row, col = position
        lines = split_lines(target.source.text)
        lines[row - 1] = lines[row - 1][:col] + " -> None" + lines[row - 1][col:]
        new_text = "".join(lines)

        def verify(tree: ast.Module) -> int | None:
            for candidate in find_definitions(tree, symbol):
                returns = _returns(candidate)
                is_none = isinstance(returns, ast.Constant) and returns.value is None
                if is_none and candidate.node.lineno == node.lineno:
                    return candidate.node.lineno
            return None

        line = _commit(target, new_text, verify)
        if isinstance(line, Skip):
            return line
        return Change(
            file=target.relpath,
            type="return_annotation_added",
            symbol=symbol,
            line=line,
            diff=_short_diff(target.relpath, target.source.text, new_text),
        )


def _returns(definition: Definition) -> ast.expr | None:
    node = definition.node
    return None if isinstance(node, ast.ClassDef) else node.returns


def _parameters_end(text: str, def_line: int) -> tuple[int, int] | None:
    """(row, column) just after the ``)`` closing the parameters of the def on ``def_line``.

    Tokens, not text search, so parentheses inside defaults, strings and comments and
    signatures spread over several lines are all handled.
    """
    state = "def"
    depth = 0
    closed: tuple[int, int] | None = None
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    try:
        for token in tokens:
            if token.start[0] < def_line or token.type in (tokenize.NL, tokenize.COMMENT):
                continue
            if closed is not None:
                # The signature must end right here; anything else means we misread it.
                return closed if token.type == tokenize.OP and token.string == ":" else None
            if state == "def":
                if token.type == tokenize.NAME and token.string == "def":
                    state = "name"
            elif state == "name":
                state = "params" if token.type == tokenize.NAME else "def"
            elif token.type == tokenize.OP and token.string in _OPENING:
                depth += 1
            elif token.type == tokenize.OP and token.string in _CLOSING:
                depth -= 1
                # At depth 0 a "]" closes PEP 695 type parameters; the parameters follow.
                if depth == 0 and token.string == ")":
                    closed = token.end
    except (tokenize.TokenError, SyntaxError):
        return None
    return None
