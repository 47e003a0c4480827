"""Research: catalogue selection by focus and project facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from actors.evolution.agents.logic import CatalogueSource, load_catalogue, scan_project_facts
from actors.evolution.agents.logic.research import DEFAULT_CATALOGUE

FACTS_TYPED_TESTED = {"uses_type_hints": True, "has_tests": True, "uses_asyncio": False}
FACTS_BARE = {"uses_type_hints": False, "has_tests": False, "uses_asyncio": False}


def pattern(result_patterns: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(p for p in result_patterns if p["name"] == name)


def test_catalogue_is_well_formed() -> None:
    catalogue = load_catalogue()
    urls = [r["url"] for r in catalogue["references"]]
    assert len(urls) == len(set(urls))
    assert all(url.startswith("https://") for url in urls)
    assert "https://peps.python.org/pep-0257/" in urls
    assert "https://peps.python.org/pep-0484/" in urls
    for entry in catalogue["patterns"]:
        assert 0.0 <= entry["applicability"] <= 1.0
    assert json.loads(DEFAULT_CATALOGUE.read_text(encoding="utf-8")) == catalogue


def test_documentation_focus_selects_documentation_entries() -> None:
    result = CatalogueSource().select(["documentation"], FACTS_TYPED_TESTED)
    assert result.best_practices
    assert "docstring" in result.best_practices[0].lower()
    assert all(
        "docstring" in p.lower() or "readme" in p.lower() or "pep 8" in p.lower()
        for p in result.best_practices
    )
    urls = [r["url"] for r in result.references]
    assert urls[0] == "https://peps.python.org/pep-0257/"
    assert "https://peps.python.org/pep-0484/" not in urls
    assert {p["focus"] for p in result.patterns} == {"documentation"}
    assert all(set(r) == {"url", "title"} for r in result.references)


def test_facts_change_selection_and_applicability() -> None:
    source = CatalogueSource()
    tested = source.select(["testing"], FACTS_TYPED_TESTED)
    untested = source.select(["testing"], FACTS_BARE)
    start_tests = "Start a tests/ folder with smoke tests for the main entry points"
    assert not any(p.startswith(start_tests) for p in tested.best_practices)
    assert any(p.startswith(start_tests) for p in untested.best_practices)
    characterization_tested = pattern(tested.patterns, "Characterization Tests")["applicability"]
    characterization_bare = pattern(untested.patterns, "Characterization Tests")["applicability"]
    assert characterization_bare > characterization_tested
    assert untested.patterns[0]["name"] == "Characterization Tests"
    assert tested.patterns[0]["name"] == "Parametrized Tests"


def test_applicability_always_within_bounds() -> None:
    catalogue = {
        "best_practices": [],
        "references": [],
        "patterns": [
            {
                "name": "Up",
                "focus": "typing",
                "applicability": 0.95,
                "adjust": [{"fact": "x", "value": True, "delta": 0.5}],
            },
            {
                "name": "Down",
                "focus": "typing",
                "applicability": 0.1,
                "adjust": [{"fact": "x", "value": True, "delta": -2}],
            },
        ],
    }
    result = CatalogueSource(catalogue).select(["typing"], {"x": True})
    assert [(p["name"], p["applicability"]) for p in result.patterns] == [
        ("Up", 1.0),
        ("Down", 0.0),
    ]
    for focus in ([], ["performance"], ["typing", "testing"], ["complexity"]):
        for facts in (FACTS_BARE, FACTS_TYPED_TESTED, {}):
            for p in CatalogueSource().select(focus, facts).patterns:
                assert 0.0 <= p["applicability"] <= 1.0


def test_no_focus_returns_everything_applicable() -> None:
    everything = CatalogueSource().select([], FACTS_TYPED_TESTED)
    focused = CatalogueSource().select(["performance"], FACTS_TYPED_TESTED)
    assert len(everything.best_practices) > len(focused.best_practices)
    assert len(everything.patterns) == len(load_catalogue()["patterns"])


def test_focus_order_drives_result_order() -> None:
    result = CatalogueSource().select(["typing", "documentation"], FACTS_TYPED_TESTED)
    assert "annotate" in result.best_practices[0].lower()
    assert result.best_practices[-1].startswith("Follow PEP 8")
    limited = CatalogueSource(max_references=2).select(["typing"], {})
    assert len(limited.references) == 2


async def test_async_research_matches_select() -> None:
    source = CatalogueSource()
    result = await source.research(["complexity"], FACTS_BARE)
    assert result == source.select(["complexity"], FACTS_BARE)
    kwargs = result.store_kwargs()
    assert set(kwargs) == {"best_practices", "references", "patterns"}
    assert json.loads(json.dumps(kwargs)) == kwargs


def test_scan_project_facts(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(
        "import asyncio\nfrom dataclasses import dataclass\n\n"
        "async def run(x: int) -> None:\n    pass\n\ndef plain(y):\n    return y\n",
        encoding="utf-8",
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_x():\n    pass\n", encoding="utf-8")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "ignored.py").write_text("def f() -> int: ...\n", encoding="utf-8")
    facts = scan_project_facts(tmp_path)
    assert facts == {
        "python_files": 2,
        "lines": 10,
        "functions": 3,
        "annotated_functions": 1,
        "uses_type_hints": True,
        "uses_asyncio": True,
        "uses_dataclasses": True,
        "has_tests": True,
        "test_files": 1,
        "has_readme": False,
        "has_packaging": False,
    }
