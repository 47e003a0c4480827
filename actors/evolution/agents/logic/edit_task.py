"""One planned edit task as executors see it: where it points, what an executor is, and
what it gives back (an ``Edited`` text or a ``Skip`` saying why not).

The built-in executors (``executors``) and the model-backed one (``model``) both build on
this module, and neither on the other.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .symbols import MODULE_SYMBOL

__all__ = [
    "DOC_NEUTRAL_DECORATORS",
    "Edited",
    "Executor",
    "Skip",
    "parse",
    "task_line",
    "task_symbol",
]

JSON = dict[str, Any]
# Decorators known not to read what they wrap (its docstring, its annotations).
DOC_NEUTRAL_DECORATORS = frozenset(
    {
        "dataclass",
        "total_ordering",
        "unique",
        "staticmethod",
        "classmethod",
        "property",
        "cached_property",
        "abstractmethod",
        "override",
        "final",
        "cache",
        "lru_cache",
        "contextmanager",
        "asynccontextmanager",
    }
)


@dataclass(frozen=True)
class Edited:
    """A verified edit of one file's text."""

    text: str
    type: str
    detail: str
    executor: str
    measures: JSON | None = None


@dataclass(frozen=True)
class Skip:
    """A task not done, and why. ``deferred``: no executor here can do it well, so it was
    not attempted (reported, not counted as a failure)."""

    reason: str
    deferred: bool = False


class Executor(Protocol):
    """Carries out tasks whose action it supports (model-backed executors fit here too)."""

    name: str

    def supports(self, action: str) -> bool:
        """Whether this executor can carry out tasks with this ``action``."""
        ...

    def edit(self, task: Mapping[str, Any], text: str, relpath: str) -> Edited | Skip:
        """The file's text with the task done, or why not."""
        ...


def task_symbol(task: Mapping[str, Any]) -> str:
    symbol = task.get("symbol")
    return symbol if isinstance(symbol, str) and symbol else MODULE_SYMBOL


def task_line(task: Mapping[str, Any]) -> int | None:
    line = task.get("line")
    return line if isinstance(line, int) and not isinstance(line, bool) else None


def parse(text: str, relpath: str) -> ast.Module | Skip:
    try:
        return ast.parse(text, filename=relpath)
    except (SyntaxError, ValueError) as exc:
        return Skip(f"{relpath} cannot be parsed: {exc}")
