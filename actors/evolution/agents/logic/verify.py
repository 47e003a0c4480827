"""Running the project's own tests on the working copy, to verify edits.

The default command is pytest, when the project is set up for it (pytest configuration or a
``conftest.py``); a user's command (``ctxstore
evolve --verify "CMD"``) replaces it. The working copy's code is what gets imported
(``PYTHONPATH`` points at it, ``src/`` layout included), not an installed copy of the project.

A run passes when the command exits 0. When the project's tests already fail before any
edit, a pytest command still tells regressions apart (JUnit XML: no test may fail that
passed before); another command then cannot, and verification says so.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TestRun", "Verifier", "default_test_command"]

JSON = dict[str, Any]
_SUMMARY = re.compile(r"(\d+) (passed|failed|error|errors|skipped)")
_OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class TestRun:
    """One run of the test command."""

    returncode: int
    duration: float
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failed_ids: frozenset[str] = frozenset()
    ids_known: bool = False
    output_tail: str = ""
    timed_out: bool = False

    def to_dict(self) -> JSON:
        data = asdict(self)
        data["failed_ids"] = sorted(self.failed_ids)[:20]
        return data


def default_test_command(root: Path) -> list[str] | None:
    """pytest for projects set up for it, else None (nothing trustworthy to run)."""
    if not _uses_pytest(root):
        return None
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if not _configured_testpaths(root):
        folder = next((d for d in ("tests", "test") if (root / d).is_dir()), None)
        if folder is not None:
            command.append(folder)
    return command


def _uses_pytest(root: Path) -> bool:
    if (root / "pytest.ini").is_file() or (root / "conftest.py").is_file():
        return True
    if _configured_testpaths(root) is not None:
        return True
    # A tests folder alone is not enough: Django's, for one, needs its own runner.
    return any((root / folder / "conftest.py").is_file() for folder in ("tests", "test"))


def _configured_testpaths(root: Path) -> list[str] | None:
    """``testpaths`` from the project's pytest configuration; [] when configured without."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
        options = data.get("tool", {}).get("pytest", {}).get("ini_options")
        if isinstance(options, dict):
            paths = options.get("testpaths") or []
            return [str(p) for p in paths] if isinstance(paths, list) else [str(paths)]
    for name, section in (
        ("pytest.ini", "pytest"),
        ("tox.ini", "pytest"),
        ("setup.cfg", "tool:pytest"),
    ):
        path = root / name
        if not path.is_file():
            continue
        parser = configparser.ConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_section(section):
            return parser.get(section, "testpaths", fallback="").split()
    return None


@dataclass
class Verifier:
    """Runs ``command`` (argv list, or a shell string) in ``root``; keeps the baseline."""

    root: Path
    command: list[str] | str
    timeout: float = 600.0
    baseline: TestRun | None = None
    runs: list[TestRun] = field(default_factory=list)

    @property
    def junit(self) -> bool:
        """Whether the command runs pytest, which can then report each test's outcome."""
        if isinstance(self.command, str):
            return "pytest" in self.command
        return "pytest" in self.command

    def describe(self) -> str:
        return self.command if isinstance(self.command, str) else " ".join(self.command)

    def run(self) -> TestRun:
        with tempfile.TemporaryDirectory(prefix="ctxstore-verify-") as tmp:
            report = Path(tmp) / "junit.xml"
            command: list[str] | str = self.command
            if self.junit:
                command = (
                    f"{command} --junitxml={shlex.quote(str(report))}"
                    if isinstance(command, str)
                    else [*command, f"--junitxml={report}"]
                )
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            env["PYTHONPATH"] = os.pathsep.join(
                [str(_import_root(self.root)), *filter(None, [env.get("PYTHONPATH")])]
            )
            start = time.perf_counter()
            try:
                done = subprocess.run(
                    command,
                    cwd=self.root,
                    env=env,
                    shell=isinstance(command, str),
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=self.timeout,
                    check=False,
                )
                returncode, output, timed_out = done.returncode, done.stdout + done.stderr, False
            except subprocess.TimeoutExpired as exc:
                returncode, timed_out = -1, True
                output = (
                    _text(exc.stdout) + _text(exc.stderr) + f"\ntimed out after {self.timeout}s"
                )
            except OSError as exc:
                returncode, output, timed_out = -1, f"cannot run the tests: {exc}", False
            duration = round(time.perf_counter() - start, 3)
            run = _result(returncode, duration, output, report, timed_out)
        self.runs.append(run)
        return run

    def start(self) -> TestRun:
        """The run before any edit, which later runs are judged against."""
        self.baseline = self.run()
        return self.baseline

    @property
    def can_judge(self) -> bool:
        """Whether a failing run can be told from the project's own failures: the baseline
        passed, or it failed tests (pytest exit 1, not a collection or usage error) that are
        known by name."""
        base = self.baseline
        if base is None or base.timed_out:
            return False
        return base.returncode == 0 or (base.returncode == 1 and base.ids_known)

    def passes(self, run: TestRun) -> bool:
        """No regression against the baseline."""
        base = self.baseline
        if base is None or run.timed_out:
            return False
        if run.returncode == 0:
            return True
        if base.returncode == 0 or not (base.ids_known and run.ids_known):
            return False
        # pytest: 1 = some tests failed; anything else (collection, usage) is a regression.
        return run.returncode == 1 and run.failed_ids <= base.failed_ids

    def check(self) -> tuple[bool, TestRun]:
        run = self.run()
        return self.passes(run), run


def _import_root(root: Path) -> Path:
    src = root / "src"
    return src if src.is_dir() and any(src.glob("*/__init__.py")) else root


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def _result(
    returncode: int, duration: float, output: str, report: Path, timed_out: bool
) -> TestRun:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failed_ids: set[str] = set()
    ids_known = False
    if report.is_file():
        try:
            root = ET.parse(report).getroot()
            for case in root.iter("testcase"):
                test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
                if case.find("failure") is not None:
                    counts["failed"] += 1
                    failed_ids.add(test_id)
                elif case.find("error") is not None:
                    counts["errors"] += 1
                    failed_ids.add(test_id)
                elif case.find("skipped") is not None:
                    counts["skipped"] += 1
                else:
                    counts["passed"] += 1
            ids_known = True
        except ET.ParseError:
            ids_known = False
    if not ids_known:
        for number, word in _SUMMARY.findall(output[-_OUTPUT_TAIL:]):
            key = "errors" if word.startswith("error") else word
            counts[key] = int(number)
    return TestRun(
        returncode=returncode,
        duration=duration,
        failed_ids=frozenset(failed_ids),
        ids_known=ids_known,
        output_tail=output[-_OUTPUT_TAIL:] if returncode != 0 else "",
        timed_out=timed_out,
        **counts,
    )
