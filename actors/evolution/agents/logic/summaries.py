"""Telling a docstring that says something from one that only restates its object's name.

"Return the int to bytes." for ``int_to_bytes`` or "The formats module." for ``formats.py``
tell a reader nothing the name did not; such text is refused, never written.
"""

from __future__ import annotations

import re

__all__ = ["name_words", "restates_name"]

# Any letter that is not an ASCII capital counts as lower case, so "café" stays one word.
_WORD = re.compile(r"[A-Z]+(?![^\W\d_A-Z])|[A-Z]?[^\W\d_A-Z]+|\d+")
# Words that carry no content of their own in a summary line.
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "it",
        "its",
        "of",
        "to",
        "for",
        "from",
        "by",
        "with",
        "in",
        "on",
        "and",
        "or",
        "as",
        "is",
        "are",
        "be",
        "return",
        "returns",
        "get",
        "gets",
        "set",
        "sets",
        "handle",
        "handles",
        "represent",
        "represents",
        "run",
        "runs",
        "do",
        "does",
        "make",
        "makes",
        "create",
        "creates",
        "given",
        "value",
        "values",
        "object",
        "objects",
        "instance",
        "data",
        "module",
        "package",
        "function",
        "method",
        "class",
        "helper",
        "implementation",
        "thing",
        "stuff",
    ]
)


def name_words(name: str) -> list[str]:
    """Lower-case words of a snake_case or CamelCase identifier."""
    return [word.lower() for word in _WORD.findall(name)]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def restates_name(summary: str, name: str) -> bool:
    """Whether every content word of ``summary`` already is a word of ``name``."""
    named = {_stem(w) for w in name_words(name)}
    content = {_stem(w) for w in name_words(summary) if w not in _FILLER}
    return content <= named
