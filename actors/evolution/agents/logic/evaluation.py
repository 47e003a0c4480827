"""Judge an evolution: which planned tasks the re-analysis confirms, and metric deltas.

A task counts as achieved only when the analysis of the evolved code no longer proposes
the same improvement for the same file and symbol, and that file and symbol still exist
and parse. The implementation log alone is not trusted, except when no re-analysis is
available (``after`` holds bare metrics), which the evidence then says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .analysis import AnalysisResult
from .symbols import MODULE_SYMBOL

__all__ = ["EvaluationResult", "compare_metrics", "evaluate"]

JSON = dict[str, Any]

ISSUE_FOR_ACTION = {
    "add_docstring": "missing_docstring",
    "add_return_annotation": "missing_annotations",
    "add_annotations": "missing_annotations",
    "reduce_complexity": "high_complexity",
    "split_function": "long_function",
}


@dataclass(frozen=True)
class EvaluationResult:
    """What the evaluator stores as ``evaluation_results``."""

    goals_achieved: list[JSON]
    metrics_comparison: JSON
    success_rate: float

    def to_dict(self) -> JSON:
        """A deep copy as the plain dict the store holds."""
        return asdict(self)

    def store_kwargs(self) -> JSON:
        """Keyword arguments for ``store_evaluation_results``."""
        return self.to_dict()


def evaluate(
    before: Mapping[str, Any],
    plan: Mapping[str, Any],
    implementation: Mapping[str, Any],
    after: AnalysisResult | Mapping[str, Any],
) -> EvaluationResult:
    """Compare ``before`` (original_analysis) with ``after`` for every task of ``plan``.

    ``after`` is the re-analysis of the evolved copy (an AnalysisResult or its dict), or
    only its metrics.
    """
    after_data = after.to_dict() if isinstance(after, AnalysisResult) else after
    metrics = after_data.get("metrics")
    if isinstance(metrics, Mapping):
        after_metrics: Mapping[str, Any] = metrics
        judge = _Reanalysis(after_data)
    else:
        after_metrics = after_data
        judge = None
    logged = _logged_outcomes(implementation)
    tasks = [t for t in plan.get("tasks") or [] if isinstance(t, Mapping)]
    goals = [_goal(task, judge, logged) for task in tasks]
    achieved = sum(1 for g in goals if g["achieved"])
    return EvaluationResult(
        goals_achieved=goals,
        metrics_comparison=compare_metrics(before.get("metrics") or {}, after_metrics),
        success_rate=round(achieved / len(goals), 4) if goals else 0.0,
    )


def compare_metrics(before: Mapping[str, Any], after: Mapping[str, Any]) -> JSON:
    """Numeric metrics (bools and lists left out) before, after, and ``after - before``."""
    old = {k: v for k, v in before.items() if _numeric(v)}
    new = {k: v for k, v in after.items() if _numeric(v)}
    delta = {k: round(new[k] - old[k], 4) for k in sorted(old.keys() & new.keys())}
    return {"before": old, "after": new, "delta": delta}


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _logged_outcomes(implementation: Mapping[str, Any]) -> dict[str, str]:
    """Task id -> the change type logged for it ("skipped" or e.g. "docstring_added")."""
    outcomes: dict[str, str] = {}
    for change in implementation.get("changes") or []:
        if isinstance(change, Mapping) and "task_id" in change:
            outcomes[str(change["task_id"])] = str(change.get("type", ""))
    return outcomes


class _Reanalysis:
    """Lookups into the analysis of the evolved code."""

    def __init__(self, analysis: Mapping[str, Any]) -> None:
        metrics: Mapping[str, Any] = analysis.get("metrics") or {}
        self.metrics = metrics
        per_file = metrics.get("per_file")
        self.files: dict[str, bool] | None = (
            {str(f["file"]): bool(f.get("parsed", True)) for f in per_file}
            if isinstance(per_file, list)
            else None
        )
        self.symbols: set[tuple[str, str]] | None = None
        if isinstance(metrics.get("per_function"), list):
            entries = [*metrics["per_function"], *(metrics.get("per_class") or [])]
            self.symbols = {(str(e["file"]), str(e["name"])) for e in entries}
        self.broken = {
            str(i.get("file"))
            for i in analysis.get("issues") or []
            if isinstance(i, Mapping) and i.get("type") == "syntax_error"
        }
        self.proposed = {
            (str(i.get("type")), str(i.get("file")), i.get("symbol"))
            for i in analysis.get("improvements") or []
            if isinstance(i, Mapping)
        }

    def verdict(self, action: str, file: str, symbol: str | None) -> tuple[bool, str]:
        if action == "add_tests":
            count = self.metrics.get("test_files", 0)
            return bool(self.metrics.get("tests_present")), f"{count} test file(s) after"
        if file in self.broken or (self.files is not None and self.files.get(file) is False):
            return False, f"{file} no longer parses"
        if self.files is not None and file not in self.files:
            return False, f"{file} no longer exists"
        real_symbol = symbol not in (None, MODULE_SYMBOL)
        if real_symbol and self.symbols is not None and (file, str(symbol)) not in self.symbols:
            return False, f"{symbol} no longer exists in {file}"
        where = f"{file}:{symbol}" if symbol else file
        if (action, file, symbol) in self.proposed:
            return False, f"re-analysis still proposes {action} for {where}"
        issue = ISSUE_FOR_ACTION.get(action, action)
        return True, f"re-analysis no longer proposes {action} ({issue}) for {where}"


def _goal(task: Mapping[str, Any], judge: _Reanalysis | None, logged: Mapping[str, str]) -> JSON:
    task_id = str(task.get("id", ""))
    action = str(task.get("action", ""))
    symbol = task.get("symbol")
    outcome = logged.get(task_id)
    if judge is None:
        achieved = outcome is not None and outcome != "skipped"
        evidence = f"no re-analysis available; implementation log: {outcome or 'no entry'}"
    else:
        achieved, evidence = judge.verdict(
            action, str(task.get("file", "")), symbol if isinstance(symbol, str) else None
        )
        evidence += f"; implementation log: {outcome or 'no entry'}"
    return {"task_id": task_id, "action": action, "achieved": achieved, "evidence": evidence}
