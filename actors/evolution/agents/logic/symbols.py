"""Definitions of a parsed module (qualified names, visibility) and facts about them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MODULE_SYMBOL",
    "Definition",
    "DefinitionNode",
    "FunctionNode",
    "decorator_names",
    "find_definitions",
    "has_docstring",
    "is_stub",
    "iter_definitions",
    "missing_annotations",
    "own_nodes",
    "returns_nothing",
]

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
DefinitionNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
Scope = Literal["module", "class", "function"]

MODULE_SYMBOL = "<module>"
_DEFINITION_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_STATEMENT_HOLDERS = (ast.stmt, ast.excepthandler, ast.match_case)
# Their return type is declared elsewhere (the implementation, the subclass).
_NO_RETURN_INFERENCE = frozenset({"abstractmethod", "overload"})


@dataclass(frozen=True)
class Definition:
    """A class or function with its dotted name (``Class.method``, ``outer.inner``)."""

    qualname: str
    node: DefinitionNode
    public: bool
    scope: Scope

    @property
    def is_function(self) -> bool:
        """Whether this is a function or method rather than a class."""
        return not isinstance(self.node, ast.ClassDef)

    @property
    def is_method(self) -> bool:
        """Whether this is a function defined directly in a class body."""
        return self.is_function and self.scope == "class"


def iter_definitions(tree: ast.AST) -> Iterator[Definition]:
    """All definitions in source order, including those under ``if``/``try`` blocks.

    Public means: reachable as API, so no leading underscore anywhere on the dotted path
    and not nested inside a function.
    """
    yield from _definitions_in(tree, "", True, "module")


def _definitions_in(
    parent: ast.AST, prefix: str, parent_public: bool, scope: Scope
) -> Iterator[Definition]:
    for child in ast.iter_child_nodes(parent):
        # Definitions are statements, and statements only nest in statements, except
        # clauses and match cases: skipping expressions keeps this walk cheap.
        if not isinstance(child, _STATEMENT_HOLDERS):
            continue
        if isinstance(child, _DEFINITION_TYPES):
            qualname = prefix + child.name
            public = parent_public and scope != "function" and not child.name.startswith("_")
            yield Definition(qualname, child, public, scope)
            inner: Scope = "class" if isinstance(child, ast.ClassDef) else "function"
            yield from _definitions_in(child, qualname + ".", public, inner)
        else:
            yield from _definitions_in(child, prefix, parent_public, scope)


def find_definitions(tree: ast.AST, qualname: str) -> list[Definition]:
    """Definitions carrying ``qualname``; several when a name is redefined."""
    return [d for d in iter_definitions(tree) if d.qualname == qualname]


def has_docstring(node: ast.Module | DefinitionNode) -> bool:
    """Whether the node's body starts with a string literal."""
    return ast.get_docstring(node, clean=False) is not None


def decorator_names(node: DefinitionNode) -> set[str]:
    """Last names of the decorators: ``@abc.abstractmethod`` gives ``abstractmethod``."""
    names: set[str] = set()
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


def is_stub(fn: FunctionNode) -> bool:
    """A body that only declares the function: docstring, ``...`` or NotImplementedError."""
    body = fn.body[1:] if has_docstring(fn) else fn.body
    if not body:
        return True
    if len(body) != 1:
        return False
    stmt = body[0]
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return stmt.value.value is Ellipsis
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def own_nodes(fn: FunctionNode, *, into_lambdas: bool = True) -> Iterator[ast.AST]:
    """Nodes of the function body, not descending into nested functions or classes.

    Decorators and default values are left out: they run in the enclosing scope.
    """

    def enter(node: ast.AST) -> bool:
        if isinstance(node, _DEFINITION_TYPES):
            return False
        return into_lambdas or not isinstance(node, ast.Lambda)

    stack: list[ast.AST] = [n for n in reversed(fn.body) if enter(n)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in reversed(list(ast.iter_child_nodes(node))) if enter(c))


def returns_nothing(fn: FunctionNode) -> bool:
    """Whether ``-> None`` is certainly right: no value returned, no yield, not a stub."""
    if is_stub(fn) or decorator_names(fn) & _NO_RETURN_INFERENCE:
        return False
    for node in own_nodes(fn, into_lambdas=False):
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return False
        if isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            if not (isinstance(value, ast.Constant) and value.value is None):
                return False
    return True


def missing_annotations(definition: Definition) -> list[str]:
    """Unannotated parameter names (``*args`` style for varargs) and ``return`` if missing.

    The first parameter of a method (self/cls) needs none unless it is a staticmethod.
    """
    node = definition.node
    if isinstance(node, ast.ClassDef):
        return []
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    if definition.is_method and "staticmethod" not in decorator_names(node):
        positional = positional[1:]
    missing = [a.arg for a in (*positional, *args.kwonlyargs) if a.annotation is None]
    if args.vararg is not None and args.vararg.annotation is None:
        missing.append("*" + args.vararg.arg)
    if args.kwarg is not None and args.kwarg.annotation is None:
        missing.append("**" + args.kwarg.arg)
    if node.returns is None:
        missing.append("return")
    return missing
