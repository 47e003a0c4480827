"""Analysis: exact metrics, issues and improvements on tiny projects."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actors.evolution.agents.logic import AnalysisResult, analyze_project
from actors.evolution.agents.logic.analysis import FunctionFacts

MOD = '''\
"""Module doc."""


def simple(a: int) -> int:
    """Doc."""
    return a


def branchy(x, items):
    if x > 0 and x < 10:
        return 1
    elif x < 0:
        return 2
    for i in items:
        if i:
            break
    else:
        pass
    try:
        pass
    except ValueError:
        pass
    except KeyError:
        pass
    y = [i for i in items if i if i > 1]
    z = 1 if x else 2
    while x:
        x -= 1
    match x:
        case 1:
            pass
        case _:
            pass
    with open("f") as handle:
        assert handle
    return y, z


class Thing:
    def method(self, v: int) -> None:
        """Doc."""

    def _private(self):
        pass

    def report(self):
        print(self)
'''


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def by_name(result: AnalysisResult) -> dict[str, FunctionFacts]:
    return {f.name: f for facts in result.files for f in facts.functions}


_C901 = re.compile(r"C901 `(?P<name>[^`]+)` is too complex \((?P<value>\d+) > 0\)")


def _ruff() -> str:
    from ruff.__main__ import find_ruff_bin

    return str(find_ruff_bin())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(tmp_path, {"pkg/__init__.py": "", "pkg/mod.py": MOD})


def test_counts_and_complexity(project: Path) -> None:
    result = analyze_project(project, [])
    metrics = result.metrics
    assert result.files_analyzed == 2
    assert metrics["files"] == 2
    assert metrics["functions"] == 5
    assert metrics["classes"] == 1
    functions = by_name(result)
    # ruff's C901 (mccabe): boolean operators, comprehensions and conditional expressions
    # add nothing; branches, loops with else, handlers and match cases do.
    assert functions["branchy"].complexity == 9
    assert functions["simple"].complexity == 1
    assert functions["Thing.method"].line == 40
    assert functions["branchy"].end_line - functions["branchy"].line + 1 == 28
    assert metrics["complexity"] == 2.6
    assert metrics["complexity_max"] == 9
    assert metrics["high_complexity_functions"] == 0
    # ruff's one safe fix here (RET505: elif after return -> if) only restyles: the
    # indentation a reader sees stays the same, so it is not offered as a simplification.
    assert functions["branchy"].simplifications == []
    assert metrics["simplifications_available"] == 0
    assert metrics["lines"] == MOD.count("\n")


def test_complexity_matches_ruff_c901_as_users_run_it(project: Path) -> None:
    functions = by_name(analyze_project(project, []))
    out = subprocess.run(
        [
            _ruff(),
            "check",
            "--isolated",
            "--select",
            "C901",
            "--output-format",
            "concise",
            "--config",
            "lint.mccabe.max-complexity = 0",
            str(project),
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    reported = {m["name"]: int(m["value"]) for m in _C901.finditer(out)}
    assert reported
    assert {f.name.rsplit(".", 1)[-1]: f.complexity for f in functions.values()} == reported


def test_docstring_coverage_matches_interrogate(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.interrogate]\nignore-private = true\n")
    metrics = analyze_project(project, []).metrics
    out = subprocess.run(
        [sys.executable, "-m", "interrogate", "-vv", str(project)],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    total = re.search(r"TOTAL\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", out)
    assert total is not None, out
    assert (metrics["docstring_total"], metrics["docstring_covered"]) == (
        int(total[1]),
        int(total[1]) - int(total[2]),
    )
    assert "pyproject.toml" in metrics["tools"]["docstring_settings"]


def test_coverage_ratios(project: Path) -> None:
    metrics = analyze_project(project, []).metrics
    # module, simple, branchy, Thing, Thing.method, Thing.report (empty __init__ excluded)
    assert metrics["public_symbols"] == 6
    assert metrics["documented_symbols"] == 3
    assert metrics["public_docstring_coverage"] == 0.5
    # interrogate counts every definition and both modules: 3 of 8 documented.
    assert (metrics["docstring_total"], metrics["docstring_covered"]) == (8, 3)
    # simple and method fully annotated; branchy and report not
    assert metrics["public_functions"] == 4
    assert metrics["type_hint_coverage"] == 0.5
    assert metrics["tests_present"] is False
    assert metrics["test_files"] == 0


def test_issues_and_improvements(project: Path) -> None:
    result = analyze_project(project, ["complexity"])
    issues = {(i["type"], i["symbol"]) for i in result.issues}
    assert ("high_complexity", "branchy") not in issues  # 9 is within ruff's default 10
    assert ("missing_docstring", "Thing") in issues
    assert ("missing_docstring", "Thing._private") not in issues
    assert ("missing_annotations", "Thing.report") in issues
    improvements = [(i["id"], i["type"], i["symbol"], i["priority"]) for i in result.improvements]
    assert all(i["source_hash"] for i in result.improvements if i["type"] != "add_tests")
    assert improvements == [
        ("imp-0001", "add_docstring", "branchy", "low"),
        ("imp-0002", "add_annotations", "branchy", "low"),
        ("imp-0003", "add_docstring", "Thing", "low"),
        ("imp-0004", "add_docstring", "Thing.report", "low"),
        ("imp-0005", "add_return_annotation", "Thing.report", "low"),
        ("imp-0006", "add_tests", None, "medium"),
    ]
    first = result.improvements[0]
    assert first["target"] == "pkg/mod.py:9"
    assert first["type"] == "add_docstring"
    assert first["file"] == "pkg/mod.py"
    assert first["line"] == 9
    assert result.issues[0]["location"] == f"{result.issues[0]['file']}:{result.issues[0]['line']}"


def test_focus_raises_priority(project: Path) -> None:
    plain = {i["type"]: i["priority"] for i in analyze_project(project, []).improvements}
    docs = {i["type"]: i["priority"] for i in analyze_project(project, ["Docs"]).improvements}
    assert plain["add_docstring"] == "low"
    assert docs["add_docstring"] == "high"
    assert docs["add_return_annotation"] == "low"
    typing = {
        i["type"]: i["priority"] for i in analyze_project(project, ["type hints"]).improvements
    }
    assert typing["add_return_annotation"] == "high"


def test_result_is_json_and_deterministic(project: Path) -> None:
    first = analyze_project(project, ["documentation"]).to_dict()
    second = analyze_project(project, ["documentation"]).to_dict()
    assert first == second
    assert json.loads(json.dumps(first)) == first
    assert set(first) == {"files_analyzed", "metrics", "issues", "improvements"}


def test_docstrings_read_at_run_time_are_never_proposed(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """\
        import click


        @click.command()
        def cli():
            pass


        def plain():
            pass
        """
    )
    argparse_main = "import argparse\nparser = argparse.ArgumentParser(description=__doc__)\n"
    result = analyze_project(write(tmp_path, {"c.py": source, "m.py": argparse_main}), [])
    proposed = {
        (i["file"], i["symbol"]) for i in result.improvements if i["type"] == "add_docstring"
    }
    assert ("c.py", "plain") in proposed
    assert ("c.py", "cli") not in proposed  # its docstring would become --help text
    assert ("m.py", "<module>") not in proposed  # the module reads its own __doc__


def test_unparseable_files_become_issues(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "good.py": '"""Doc."""\n',
            "bad.py": "def broken(:\n    pass\n",
            "latin.py": b"x = '\xff'\n",
        },
    )
    result = analyze_project(tmp_path, [])
    assert result.files_analyzed == 3
    assert result.metrics["unparseable_files"] == 2
    errors = {i["file"]: i for i in result.issues if i["type"] == "syntax_error"}
    assert set(errors) == {"bad.py", "latin.py"}
    assert errors["bad.py"]["line"] == 1
    assert errors["bad.py"]["severity"] == "high"
    assert errors["latin.py"]["message"].startswith("cannot parse")
    assert result.metrics["lines"] == 1


def test_skips_tooling_and_hidden_dirs(tmp_path: Path) -> None:
    skipped = [".venv/a.py", "venv/b.py", "build/c.py", "dist/d.py", ".hidden/e.py"]
    files: dict[str, str | bytes] = {p: "x = 1\n" for p in skipped}
    files.update({"node_modules/f.py": "x = 1\n", "__pycache__/g.py": "x = 1\n"})
    files["src/keep.py"] = '"""Doc."""\n'
    result = analyze_project(write(tmp_path, files), [])
    assert result.files_analyzed == 1
    assert [f.file for f in result.files] == ["src/keep.py"]


def test_test_files_detected(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "pkg/a.py": "",
        "tests/test_a.py": "",
        "tests/helpers.py": "",
        "tests/conftest.py": "",
        "pkg/b_test.py": "",
    }
    metrics = analyze_project(write(tmp_path, files), []).metrics
    assert metrics["tests_present"] is True
    assert metrics["test_files"] == 3


RETURNS = textwrap.dedent(
    """\
    import abc
    from typing import overload


    def gen():
        yield 1


    def explicit_none():
        if True:
            return None
        return


    def outer():
        def inner():
            return 1
        inner()


    def stub():
        ...


    def gives():
        return 3


    class Base(abc.ABC):
        @abc.abstractmethod
        def run(self):
            pass


    @overload
    def over(x: int) -> int: ...
    """
)


def test_return_annotation_only_when_clearly_nothing(tmp_path: Path) -> None:
    result = analyze_project(write(tmp_path, {"r.py": RETURNS}), [])
    kinds: dict[str, set[str]] = {}
    for imp in result.improvements:
        kinds.setdefault(str(imp["symbol"]), set()).add(imp["type"])
    assert "add_return_annotation" in kinds["explicit_none"]
    assert "add_return_annotation" in kinds["outer"]
    for symbol in ("gen", "stub", "gives", "Base.run"):
        assert "add_return_annotation" not in kinds[symbol], symbol
        assert "add_annotations" in kinds[symbol], symbol
    assert "outer.inner" not in kinds
    # overloads are exempt from docstrings and are fully annotated
    assert "over" not in kinds


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        analyze_project(tmp_path / "nope", [])


def test_empty_project(tmp_path: Path) -> None:
    result = analyze_project(tmp_path, [])
    assert result.files_analyzed == 0
    assert result.metrics["complexity"] == 0.0
    assert result.metrics["docstring_coverage"] == 1.0
    assert [i["type"] for i in result.improvements] == ["add_tests"]
