"""Source edits on a concrete syntax tree (libcst), so formatting and comments survive, each
checked against the abstract syntax tree: the edited module must equal the original one
except for the intended change.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

import libcst as cst

from .symbols import MODULE_SYMBOL, DefinitionNode, find_definitions

__all__ = [
    "EditError",
    "Located",
    "add_return_none",
    "insert_docstring",
    "locate",
    "replace_function",
]


class EditError(ValueError):
    """The edit cannot be made, or would change more than intended."""


@dataclass(frozen=True)
class Located:
    """A definition found by qualified name: its ast node and which occurrence it is."""

    node: DefinitionNode
    occurrence: int


def locate(tree: ast.Module, qualname: str, line: int | None = None) -> Located:
    found = find_definitions(tree, qualname)
    if not found:
        raise EditError(f"symbol {qualname} not found")
    hint = line or 0
    index = min(range(len(found)), key=lambda i: (abs(found[i].node.lineno - hint), i))
    return Located(found[index].node, index)


_Def = cst.FunctionDef | cst.ClassDef


class _Replace(cst.CSTTransformer):
    """Replaces the n-th definition with the given qualified name."""

    def __init__(self, qualname: str, occurrence: int, change: Callable[[_Def], _Def]) -> None:
        self.qualname = qualname
        self.occurrence = occurrence
        self.change = change
        self.stack: list[str] = []
        self.seen = 0
        self.done = False

    def _enter(self, node: _Def) -> bool:
        self.stack.append(node.name.value)
        return True

    def _leave(self, original: _Def, updated: _Def) -> _Def:
        name = ".".join(self.stack)
        self.stack.pop()
        if name != self.qualname:
            return updated
        index, self.seen = self.seen, self.seen + 1
        if index != self.occurrence:
            return updated
        self.done = True
        return self.change(updated)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return self._enter(node)

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return self._enter(node)

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.BaseStatement:
        return self._leave(original_node, updated_node)

    def leave_ClassDef(
        self, original_node: cst.ClassDef, updated_node: cst.ClassDef
    ) -> cst.BaseStatement:
        return self._leave(original_node, updated_node)


def _transform(text: str, qualname: str, occurrence: int, change: Callable[[_Def], _Def]) -> str:
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        raise EditError(f"libcst cannot parse the file: {exc.message}") from None
    replace = _Replace(qualname, occurrence, change)
    new = module.visit(replace)
    if not replace.done:
        raise EditError(f"symbol {qualname} not found by libcst")
    return new.code


def _docstring_literal(text: str, indent: str) -> str:
    if '"""' in text or "\\" in text:
        raise EditError("docstring text holds quotes or backslashes")
    lines = text.strip().splitlines()
    if len(lines) == 1:
        return f'"""{lines[0]}"""'
    body = "\n".join((indent + line if line.strip() else "") for line in lines[1:])
    return f'"""{lines[0]}\n{body}\n{indent}"""'


def _with_docstring(node: _Def, literal: str) -> _Def:
    statement = cst.SimpleStatementLine([cst.Expr(cst.SimpleString(literal))])
    body = node.body
    if isinstance(body, cst.SimpleStatementSuite):
        # ``def f(): return 1``: the body moves to its own lines under the docstring.
        rest = cst.SimpleStatementLine(
            list(body.body), trailing_whitespace=body.trailing_whitespace
        )
        return node.with_changes(body=cst.IndentedBlock([statement, rest]))
    return node.with_changes(body=body.with_changes(body=[statement, *body.body]))


def insert_docstring(text: str, tree: ast.Module, symbol: str, doc: str, line: int | None) -> str:
    """``text`` with ``doc`` as the docstring of ``symbol`` (``<module>`` for the module)."""
    if symbol == MODULE_SYMBOL:
        if ast.get_docstring(tree) is not None:
            raise EditError("module already has a docstring")
        module = cst.parse_module(text)
        statement = cst.SimpleStatementLine(
            [cst.Expr(cst.SimpleString(_docstring_literal(doc, "")))]
        )
        new_text = module.with_changes(body=[statement, *module.body]).code
    else:
        located = locate(tree, symbol, line)
        if ast.get_docstring(located.node) is not None:
            raise EditError(f"{symbol} already has a docstring")
        indent = _body_indent(text, located.node)
        literal = _docstring_literal(doc, indent)
        new_text = _transform(
            text, symbol, located.occurrence, lambda n: _with_docstring(n, literal)
        )
    _check_only_docstring_added(tree, new_text, symbol, line)
    return new_text


def _body_indent(text: str, node: DefinitionNode) -> str:
    lines = text.splitlines()
    first = node.body[0]
    row = lines[first.lineno - 1] if first.lineno - 1 < len(lines) else ""
    if first.lineno == node.lineno:  # one-line body: one level deeper than the header
        header = lines[node.lineno - 1]
        outer = header[: len(header) - len(header.lstrip())]
        return outer + "    "
    return row[: len(row) - len(row.lstrip())]


def _check_only_docstring_added(
    before: ast.Module, new_text: str, symbol: str, line: int | None
) -> None:
    after = _parse(new_text)
    target: ast.Module | DefinitionNode = (
        after if symbol == MODULE_SYMBOL else locate(after, symbol, line).node
    )
    if ast.get_docstring(target) is None:
        raise EditError("the docstring is not visible after the edit")
    holder: ast.Module | DefinitionNode = (
        after if symbol == MODULE_SYMBOL else locate(after, symbol, line).node
    )
    holder.body = holder.body[1:]
    if ast.dump(after) != ast.dump(before):
        raise EditError("the edit changed more than the docstring")


def add_return_none(text: str, tree: ast.Module, symbol: str, line: int | None) -> str:
    """``text`` with ``-> None`` on ``symbol``, which must have no return annotation."""
    located = locate(tree, symbol, line)
    node = located.node
    if isinstance(node, ast.ClassDef) or node.returns is not None:
        raise EditError(f"{symbol} is not an unannotated function")

    def change(definition: _Def) -> _Def:
        if not isinstance(definition, cst.FunctionDef):
            raise EditError(f"{symbol} is a class")
        return definition.with_changes(returns=cst.Annotation(cst.Name("None")))

    new_text = _transform(text, symbol, located.occurrence, change)
    after = _parse(new_text)
    edited = locate(after, symbol, line).node
    if isinstance(edited, ast.ClassDef) or not (
        isinstance(edited.returns, ast.Constant) and edited.returns.value is None
    ):
        raise EditError("the annotation is not visible after the edit")
    edited.returns = None
    if ast.dump(after) != ast.dump(tree):
        raise EditError("the edit changed more than the return annotation")
    return new_text


def replace_function(
    text: str, tree: ast.Module, symbol: str, source: str, line: int | None
) -> str:
    """``text`` with the function ``symbol`` replaced by ``source`` (one ``def``, same name,
    decorators and signature)."""
    located = locate(tree, symbol, line)
    old = located.node
    if isinstance(old, ast.ClassDef):
        raise EditError(f"{symbol} is a class")
    try:
        statement = cst.parse_statement(source.strip("\n") + "\n")
        new_ast = ast.parse(source.strip("\n") + "\n").body
    except (cst.ParserSyntaxError, SyntaxError) as exc:
        raise EditError(f"the new function does not parse: {exc}") from None
    if len(new_ast) != 1 or not isinstance(statement, cst.FunctionDef):
        raise EditError("the new source is not exactly one function")
    new = new_ast[0]
    if not isinstance(new, type(old)) or new.name != old.name:
        raise EditError("the new function has another name or kind")
    for field in ("args", "returns", "decorator_list", "type_params"):
        if ast.dump(getattr(new, field, None) or ast.Pass()) != ast.dump(
            getattr(old, field, None) or ast.Pass()
        ):
            raise EditError(f"the new function changes its {field}")
    if isinstance(statement.body, cst.IndentedBlock):
        statement = statement.with_changes(body=statement.body.with_changes(indent=None))

    def change(definition: _Def) -> _Def:
        assert isinstance(statement, cst.FunctionDef)
        return statement.with_changes(leading_lines=definition.leading_lines)

    new_text = _transform(text, symbol, located.occurrence, change)
    _parse(new_text)
    return new_text


def _parse(text: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as exc:
        raise EditError(f"the edited file does not parse: {exc}") from None
