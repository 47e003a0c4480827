"""External research: best practices, references and patterns suited to one project.

A ``ResearchSource`` is async because real sources (web search, an LLM) do I/O; the
shipped ``CatalogueSource`` answers from a curated JSON catalogue, offline.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from .focus import normalize_focus
from .source import is_test_file, python_relpaths

__all__ = [
    "DEFAULT_CATALOGUE",
    "CatalogueSource",
    "ResearchResult",
    "ResearchSource",
    "load_catalogue",
    "scan_project_facts",
]

JSON = dict[str, Any]

DEFAULT_CATALOGUE = Path(__file__).with_name("catalogue.json")
GENERAL = "general"

# On bytes, so files need no decoding: this scan runs beside the analysis and should cost
# it as little of the shared interpreter as possible.
_DEF = re.compile(rb"^[ \t]*(?:async[ \t]+)?def[ \t]+\w+", re.MULTILINE)
# Cheap on purpose: a default value containing ")" hides the arrow, which only undercounts.
_ANNOTATED_DEF = re.compile(rb"^[ \t]*(?:async[ \t]+)?def[ \t]+\w+\s*\([^)]*\)\s*->", re.MULTILINE)
_TYPING_IMPORT = re.compile(rb"^[ \t]*(?:from[ \t]+typing[ \t]+import|import[ \t]+typing)\b", re.M)
_ASYNCIO = re.compile(rb"\bimport[ \t]+asyncio\b|\bfrom[ \t]+asyncio\b|\basync[ \t]+def\b")
_DATACLASS = re.compile(rb"\bdataclass(?:es)?\b")
_PACKAGING_FILES = ("pyproject.toml", "setup.py", "setup.cfg")


@dataclass(frozen=True)
class ResearchResult:
    """What the research agent stores as ``external_research``."""

    best_practices: list[str]
    references: list[JSON]
    patterns: list[JSON]

    def to_dict(self) -> JSON:
        """A deep copy as the plain dict the store holds."""
        return asdict(self)

    def store_kwargs(self) -> JSON:
        """Keyword arguments for ``store_external_research``."""
        return self.to_dict()


class ResearchSource(Protocol):
    """Anything that can research best practices for a set of focus areas."""

    async def research(
        self, focus_areas: Sequence[str], project_facts: Mapping[str, object]
    ) -> ResearchResult:
        """Find practices, references and patterns relevant to the focus and the project."""
        ...


def load_catalogue(path: Path = DEFAULT_CATALOGUE) -> JSON:
    """Read a catalogue file (see ``catalogue.json`` for the shape)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"catalogue {path} must hold a JSON object")
    return data


class CatalogueSource:
    """Research answered from a curated catalogue, filtered by focus and project facts."""

    def __init__(
        self,
        catalogue: Mapping[str, Any] | None = None,
        *,
        max_references: int = 10,
        focus_bonus: float = 0.1,
    ) -> None:
        self._catalogue: Mapping[str, Any] = (
            catalogue if catalogue is not None else load_catalogue()
        )
        self._max_references = max_references
        self._focus_bonus = focus_bonus

    async def research(
        self, focus_areas: Sequence[str], project_facts: Mapping[str, object]
    ) -> ResearchResult:
        """See :meth:`select`; nothing here awaits, the catalogue is in memory."""
        return self.select(focus_areas, project_facts)

    def select(
        self, focus_areas: Sequence[str], project_facts: Mapping[str, object]
    ) -> ResearchResult:
        """Entries whose focus is requested (or ``general``) and whose ``when`` facts hold.

        With no focus areas everything applicable is returned. Entries for the first
        focus area come first. Pattern applicability is the catalogue value moved by
        the fact adjustments and a bonus for requested focus, clamped to 0..1.
        """
        focus = normalize_focus(focus_areas)
        practices = self._entries("best_practices", focus, project_facts)
        references = self._entries("references", focus, project_facts)[: self._max_references]
        return ResearchResult(
            best_practices=[str(e["text"]) for e in practices if "text" in e],
            references=[
                {"url": str(e["url"]), "title": str(e.get("title", e["url"]))}
                for e in references
                if "url" in e
            ],
            patterns=self._patterns(focus, project_facts),
        )

    def _entries(
        self, section: str, focus: Sequence[str], facts: Mapping[str, object]
    ) -> list[Mapping[str, Any]]:
        ranked: list[tuple[int, int, Mapping[str, Any]]] = []
        for index, entry in enumerate(_section(self._catalogue, section)):
            rank = _focus_rank(_as_focus_list(entry.get("focus")), focus)
            if rank is not None and _facts_hold(entry.get("when"), facts):
                ranked.append((rank, index, entry))
        return [entry for _, _, entry in sorted(ranked, key=lambda item: item[:2])]

    def _patterns(self, focus: Sequence[str], facts: Mapping[str, object]) -> list[JSON]:
        patterns: list[JSON] = []
        for entry in _section(self._catalogue, "patterns"):
            areas = _as_focus_list(entry.get("focus"))
            if "name" not in entry or _focus_rank(areas, focus) is None:
                continue
            score = _number(entry.get("applicability"), default=0.5)
            for adjustment in entry.get("adjust") or ():
                if isinstance(adjustment, Mapping) and _facts_hold(
                    {str(adjustment.get("fact")): adjustment.get("value", True)},
                    facts,
                    missing_holds=False,
                ):
                    score += _number(adjustment.get("delta"), default=0.0)
            if focus and any(area in focus for area in areas):
                score += self._focus_bonus
            patterns.append(
                {
                    "name": str(entry["name"]),
                    "applicability": round(min(1.0, max(0.0, score)), 2),
                    "description": str(entry.get("description", "")),
                    "focus": areas[0] if areas else GENERAL,
                }
            )
        return sorted(patterns, key=lambda p: (-p["applicability"], p["name"]))


def _section(catalogue: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    entries = catalogue.get(name) or []
    return [e for e in entries if isinstance(e, Mapping)]


def _as_focus_list(value: object) -> list[str]:
    if isinstance(value, str):
        return list(normalize_focus([value]))
    if isinstance(value, list | tuple):
        return list(normalize_focus(str(v) for v in value))
    return [GENERAL]


def _focus_rank(areas: Sequence[str], focus: Sequence[str]) -> int | None:
    """Position of the first requested area the entry serves; None if it serves none."""
    if not focus:
        return 0
    ranks = [focus.index(area) for area in areas if area in focus]
    if ranks:
        return min(ranks)
    return len(focus) if GENERAL in areas else None


def _facts_hold(when: object, facts: Mapping[str, object], *, missing_holds: bool = True) -> bool:
    """Whether each named fact has the expected truth value; unknown facts are lenient."""
    if not isinstance(when, Mapping):
        return True
    for fact, expected in when.items():
        if fact not in facts:
            if not missing_holds:
                return False
            continue
        actual = facts[fact]
        if isinstance(expected, bool):
            if bool(actual) != expected:
                return False
        elif actual != expected:
            return False
    return True


def _number(value: object, *, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def scan_project_facts(root: Path) -> JSON:
    """Cheap facts about a project from a text scan (no parsing), to steer research."""
    files = python_relpaths(root)
    top = os.fspath(root)
    functions = annotated = lines = test_files = 0
    typing_import = asyncio_used = dataclasses_used = False
    for rel in files:
        if is_test_file(rel):
            test_files += 1
        try:
            with open(os.path.join(top, rel), "rb") as source:
                text = source.read()
        except OSError:
            continue
        lines += text.count(b"\n") + (0 if text.endswith(b"\n") or not text else 1)
        functions += len(_DEF.findall(text))
        annotated += len(_ANNOTATED_DEF.findall(text)) if b"->" in text else 0
        # A substring test first: the regular expressions run only where they may match.
        typing_import = typing_import or (b"typing" in text and bool(_TYPING_IMPORT.search(text)))
        asyncio_used = asyncio_used or (b"async" in text and bool(_ASYNCIO.search(text)))
        dataclasses_used = dataclasses_used or (
            b"dataclass" in text and bool(_DATACLASS.search(text))
        )
    return {
        "python_files": len(files),
        "lines": lines,
        "functions": functions,
        "annotated_functions": annotated,
        "uses_type_hints": annotated > 0 or typing_import,
        "uses_asyncio": asyncio_used,
        "uses_dataclasses": dataclasses_used,
        "has_tests": test_files > 0,
        "test_files": test_files,
        "has_readme": any(root.glob("README*")),
        "has_packaging": any((root / name).is_file() for name in _PACKAGING_FILES),
    }
