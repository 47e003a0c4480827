"""End to end, without a bus: analyse -> research -> plan -> execute -> re-analyse -> evaluate.

Runs on examples/sample_project and pins its numbers; update them together with it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from actors.evolution.agents.logic import (
    CatalogueSource,
    WorkingCopy,
    analyze_project,
    default_executors,
    evaluate,
    execute_plan,
    plan_improvements,
    scan_project_facts,
)

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample_project"
FOCUS = ["documentation", "typing"]


def fingerprint(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    original = fingerprint(SAMPLE)
    before = analyze_project(SAMPLE, FOCUS).to_dict()
    research = CatalogueSource().select(FOCUS, scan_project_facts(SAMPLE)).to_dict()
    plan = plan_improvements(before, research).to_dict()
    copy = WorkingCopy.create(SAMPLE, tmp_path_factory.mktemp("evolve") / "copy")
    implementation = execute_plan(
        plan["tasks"], copy, default_executors(), order=plan["priorities"]
    )
    after = analyze_project(copy.root, FOCUS)
    evaluation = evaluate(before, plan, implementation.store_kwargs(), after)
    return {
        "original": original,
        "before": before,
        "research": research,
        "plan": plan,
        "copy": copy,
        "implementation": implementation.to_dict(),
        "after": after.to_dict(),
        "evaluation": evaluation.to_dict(),
    }


def test_before_metrics(run: dict[str, Any]) -> None:
    before = run["before"]
    metrics = before["metrics"]
    assert before["files_analyzed"] == 8
    assert metrics["functions"] == 26
    assert metrics["classes"] == 1
    assert metrics["public_symbols"] == 34
    assert metrics["documented_symbols"] == 9
    assert metrics["docstring_coverage"] == 0.2647
    assert metrics["public_functions"] == 25
    assert metrics["type_hint_coverage"] == 0.48
    assert metrics["complexity"] == 2.38
    assert metrics["complexity_max"] == 14
    assert metrics["high_complexity_functions"] == 2
    assert metrics["long_functions"] == 1
    assert metrics["test_files"] == 2
    assert metrics["lines"] == 258
    kinds = Counter(i["type"] for i in before["improvements"])
    assert kinds == {
        "add_docstring": 25,
        "add_return_annotation": 11,
        "add_annotations": 3,
        "reduce_complexity": 2,
        "split_function": 1,
    }


def test_plan(run: dict[str, Any]) -> None:
    plan = run["plan"]
    assert len(plan["tasks"]) == 42
    assert sorted(plan["priorities"]) == sorted(t["id"] for t in plan["tasks"])
    assert plan["dependencies"] == {"task-30": ["task-29"], "task-34": ["task-32", "task-33"]}
    assert 0.0 < plan["estimated_impact"] <= 1.0
    assert run["research"]["best_practices"][0].startswith("Write a docstring")


def test_implementation(run: dict[str, Any]) -> None:
    implementation = run["implementation"]
    applied = Counter(c["type"] for c in implementation["changes"])
    assert applied == {"docstring_added": 25, "return_annotation_added": 11, "skipped": 6}
    assert Counter(s["action"] for s in implementation["skipped"]) == {
        "add_annotations": 3,
        "reduce_complexity": 2,
        "split_function": 1,
    }
    assert len(implementation["rollback_points"]) == 1 + 36
    assert implementation["modified_files"] == [
        "tests/test_counter.py",
        "tests/test_tokenizer.py",
        "textstats/__main__.py",
        "textstats/counter.py",
        "textstats/readability.py",
        "textstats/report.py",
        "textstats/tokenizer.py",
    ]
    assert json.loads(json.dumps(implementation)) == implementation


def test_after_metrics_and_evaluation(run: dict[str, Any]) -> None:
    metrics = run["after"]["metrics"]
    assert metrics["docstring_coverage"] == 1.0
    assert metrics["type_hint_coverage"] == 0.88
    assert metrics["functions"] == 26
    assert metrics["complexity"] == 2.38
    assert metrics["complexity_max"] == 14
    assert metrics["lines"] == 258 + 25 + 2 + 1  # docstrings, module and class blank lines
    evaluation = run["evaluation"]
    assert evaluation["success_rate"] == round(36 / 42, 4)
    delta = evaluation["metrics_comparison"]["delta"]
    assert delta["docstring_coverage"] == 0.7353
    assert delta["type_hint_coverage"] == 0.4
    assert delta["complexity"] == 0.0
    assert delta["functions"] == 0
    missed = {g["action"] for g in evaluation["goals_achieved"] if not g["achieved"]}
    assert missed == {"add_annotations", "reduce_complexity", "split_function"}
    remaining = {i["type"] for i in run["after"]["improvements"]}
    assert remaining == {"add_annotations", "reduce_complexity", "split_function"}


def test_original_untouched_and_copy_still_works(run: dict[str, Any]) -> None:
    assert fingerprint(SAMPLE) == run["original"]
    copy_root: Path = run["copy"].root
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio"],
        cwd=copy_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "7 passed" in tests.stdout
