"""One-line docstring summaries derived from names, for generated docstrings.

The output only ever contains letters, digits, spaces and a final period, so it can be
placed between triple quotes without escaping.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath

__all__ = ["class_summary", "function_summary", "module_summary", "name_words"]

# Any letter that is not an ASCII capital counts as lower case, so "café" stays one word.
_WORD = re.compile(r"[A-Z]+(?![^\W\d_A-Z])|[A-Z]?[^\W\d_A-Z]+|\d+")
_PREDICATES = frozenset({"is", "has", "can", "should", "needs", "contains", "supports"})
_VERBS = frozenset(
    [
        "add",
        "apply",
        "build",
        "calculate",
        "check",
        "clean",
        "clear",
        "close",
        "collect",
        "compare",
        "compute",
        "configure",
        "connect",
        "convert",
        "count",
        "create",
        "decode",
        "delete",
        "dispatch",
        "download",
        "emit",
        "encode",
        "ensure",
        "export",
        "extract",
        "fetch",
        "filter",
        "find",
        "format",
        "generate",
        "handle",
        "import",
        "index",
        "insert",
        "iterate",
        "join",
        "list",
        "load",
        "log",
        "make",
        "merge",
        "normalise",
        "normalize",
        "notify",
        "open",
        "parse",
        "print",
        "process",
        "publish",
        "read",
        "record",
        "refresh",
        "register",
        "remove",
        "render",
        "reset",
        "resolve",
        "restock",
        "run",
        "save",
        "scan",
        "search",
        "select",
        "send",
        "set",
        "show",
        "sort",
        "split",
        "start",
        "stop",
        "store",
        "summarise",
        "summarize",
        "tokenize",
        "track",
        "transform",
        "update",
        "upload",
        "validate",
        "wait",
        "write",
    ]
)
# Words after which "the" would read wrongly ("Load from file", not "Load the from file").
_NO_ARTICLE = frozenset({"a", "an", "the", "all", "from", "to", "into", "by", "with", "for"})
_ERROR_WORDS = frozenset({"error", "exception", "warning"})


def name_words(name: str) -> list[str]:
    """Lower-case words of a snake_case or CamelCase identifier."""
    return [word.lower() for word in _WORD.findall(name)]


def function_summary(
    name: str,
    *,
    returns_value: bool,
    params: Sequence[str] = (),
    owner: str | None = None,
) -> str:
    """``get_total`` -> "Return the total.", ``is_empty`` -> "Return whether it is empty.".

    ``params`` (without self/cls) and ``owner`` (the class of a method) give a bare verb
    an object: ``WordCounter.reset`` -> "Reset the word counter.".
    """
    words = name_words(name)
    if not words:
        return "Run this function."
    first, rest = words[0], " ".join(words[1:])
    if name == "main":
        return "Run the command-line program."
    if first == "test":
        return f"Test {rest or 'the behaviour'}."
    if first in _PREDICATES:
        return f"Return whether it {first} {rest}." if rest else "Return whether it holds."
    if first == "get":
        return f"Return the {rest or 'value'}."
    if first == "to" and rest:
        return f"Convert to {rest}."
    if first in _VERBS:
        if not rest:
            return f"{first.capitalize()} {_object_of(params, owner)}."
        article = "" if words[1] in _NO_ARTICLE else "the "
        return f"{first.capitalize()} {article}{rest}."
    phrase = " ".join(words)
    return f"Return the {phrase}." if returns_value else f"Handle the {phrase}."


def _object_of(params: Sequence[str], owner: str | None) -> str:
    owner_words = " ".join(name_words(owner)) if owner else ""
    if params and params[0] == "other" and owner_words:
        return f"another {owner_words}"
    if params and name_words(params[0]):
        return f"the given {' '.join(name_words(params[0]))}"
    return f"the {owner_words}" if owner_words else "it"


def class_summary(name: str) -> str:
    """``StockItem`` -> "Represent a stock item.", ``InventoryError`` -> an error sentence."""
    words = name_words(name)
    if not words:
        return "Represent this object."
    if words[-1] in _ERROR_WORDS and len(words) > 1:
        return f"Signal a {' '.join(words[:-1])} {words[-1]}."
    phrase = " ".join(words)
    article = "an" if phrase[0] in "aeiou" else "a"
    return f"Represent {article} {phrase}."


def module_summary(relpath: str) -> str:
    """A summary naming the module (or package) a file implements."""
    path = PurePosixPath(relpath)
    stem = path.stem
    parent = " ".join(name_words(path.parent.name)) or "project"
    if stem == "__init__":
        return f"The {parent} package."
    if stem == "__main__":
        return f"Command-line entry point of the {parent} package."
    if stem == "conftest":
        return "Shared test fixtures."
    words = name_words(stem)
    if words and words[0] == "test":
        return f"Tests for {' '.join(words[1:]) or parent}."
    return f"The {' '.join(words) or parent} module."
