"""Verification: the project's test command, and telling regressions from old failures."""

from __future__ import annotations

import sys
from pathlib import Path

from actors.evolution.agents.logic import Verifier, default_test_command

PASSING = "def test_ok() -> None:\n    assert True\n"
FAILING = "def test_old_failure() -> None:\n    assert False\n"


def project(root: Path, tests: dict[str, str], config: str = "") -> Path:
    (root / "tests").mkdir(parents=True)
    for name, text in tests.items():
        (root / "tests" / name).write_text(text)
    if config:
        (root / "pyproject.toml").write_text(config)
    return root


def test_default_command_is_pytest_with_the_tests_folder(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"test_a.py": PASSING, "conftest.py": ""})
    assert default_test_command(root) == [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests",
    ]
    configured = project(
        tmp_path / "q", {"test_a.py": PASSING}, '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
    )
    assert default_test_command(configured) == [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    # Test files without any pytest set-up (Django's runner, unittest): no guess.
    assert default_test_command(project(tmp_path / "none", {"test_a.py": PASSING})) is None


def test_old_failures_are_not_regressions_but_new_ones_are(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"test_a.py": PASSING, "test_b.py": FAILING, "conftest.py": ""})
    command = default_test_command(root)
    assert command is not None
    verifier = Verifier(root, command, timeout=120)
    baseline = verifier.start()
    assert baseline.returncode == 1
    assert baseline.failed_ids == {"tests.test_b::test_old_failure"}
    assert verifier.can_judge
    assert verifier.check()[0]  # the same failure again: no regression
    (root / "tests" / "test_a.py").write_text(PASSING.replace("True", "False"))
    ok, run = verifier.check()
    assert not ok
    assert "tests.test_a::test_ok" in run.failed_ids


def test_a_suite_that_cannot_run_cannot_judge(tmp_path: Path) -> None:
    root = project(tmp_path / "p", {"test_a.py": "import missing_module\n", "conftest.py": ""})
    command = default_test_command(root)
    assert command is not None
    verifier = Verifier(root, command, timeout=120)
    assert verifier.start().returncode == 2  # a collection error
    assert not verifier.can_judge
