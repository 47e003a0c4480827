"""The focus-area vocabulary shared by analysis, research and planning."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["FOCUS_AREAS", "normalize_focus"]

FOCUS_AREAS = (
    "documentation",
    "complexity",
    "typing",
    "testing",
    "performance",
    "maintainability",
)

# Users and the store speak loosely ("docs", "type hints"); agents must agree on one word.
_ALIASES = {
    "doc": "documentation",
    "docs": "documentation",
    "docstrings": "documentation",
    "docstring": "documentation",
    "type_hints": "typing",
    "typehints": "typing",
    "types": "typing",
    "annotations": "typing",
    "type_safety": "typing",
    "test": "testing",
    "tests": "testing",
    "coverage": "testing",
    "test_coverage": "testing",
    "readability": "maintainability",
    "refactoring": "maintainability",
    "code_quality": "maintainability",
    "quality": "maintainability",
    "perf": "performance",
    "speed": "performance",
}


def normalize_focus(areas: Iterable[str]) -> tuple[str, ...]:
    """Canonical focus areas in first-seen order; unknown words are kept, lower-cased."""
    seen: dict[str, None] = {}
    for area in areas:
        word = area.strip().lower().replace("-", "_").replace(" ", "_")
        if word:
            seen.setdefault(_ALIASES.get(word, word), None)
    return tuple(seen)
