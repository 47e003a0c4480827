"""McCabe cyclomatic complexity of a single function, from its syntax tree."""

from __future__ import annotations

import ast

from .symbols import FunctionNode, own_nodes

__all__ = ["cyclomatic_complexity"]


def cyclomatic_complexity(fn: FunctionNode) -> int:
    """1 plus one per decision point in the function's own body.

    Decision points: ``if``/``elif`` and conditional expressions; ``for``/``while`` and
    their ``else``; each ``except`` clause; each extra operand of ``and``/``or``; each
    comprehension ``if``; each ``case`` except an irrefutable catch-all (which, like
    ``else``, adds no path). ``with``, ``assert`` and ``try``/``finally`` add nothing.
    Nested functions and classes are measured separately; lambdas belong to their host.
    """
    return 1 + sum(_decisions(node) for node in own_nodes(fn))


def _decisions(node: ast.AST) -> int:
    if isinstance(node, ast.If | ast.IfExp | ast.ExceptHandler):
        return 1
    if isinstance(node, ast.For | ast.AsyncFor | ast.While):
        return 2 if node.orelse else 1
    if isinstance(node, ast.BoolOp):
        return len(node.values) - 1
    if isinstance(node, ast.comprehension):
        return len(node.ifs)
    if isinstance(node, ast.match_case):
        irrefutable = (
            isinstance(node.pattern, ast.MatchAs)
            and node.pattern.pattern is None
            and node.guard is None
        )
        return 0 if irrefutable else 1
    return 0
