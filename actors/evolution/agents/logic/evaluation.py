"""Judge an evolution: which planned tasks a fresh analysis of the edited files confirms, and
how the measured state moved.

``after`` is the measured state after implementation (the three-way comparison's ``after``:
metrics of the whole working copy and the project's test results). Per-task verdicts come
from a re-analysis of the files the implementation changed, not from the implementation's
own claims. A task no executor here could do well (``deferred``) is reported but neither
attempted nor counted: the success rate is achieved tasks over attempted ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .analysis import COMPLEXITY_THRESHOLD, AnalysisResult
from .symbols import MODULE_SYMBOL

__all__ = ["EvaluationResult", "compare_metrics", "evaluate"]

JSON = dict[str, Any]


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
    after: Mapping[str, Any],
    reanalysis: AnalysisResult | None = None,
) -> EvaluationResult:
    """Compare ``before`` (original_analysis) with ``after`` (the measured state) for every
    task of ``plan``; ``reanalysis`` is the analysis of the modified files."""
    logged = {
        str(c["task_id"]): c
        for c in implementation.get("changes") or []
        if isinstance(c, Mapping) and "task_id" in c
    }
    judge = _Reanalysis(reanalysis) if reanalysis is not None else None
    tasks = [t for t in plan.get("tasks") or [] if isinstance(t, Mapping)]
    goals = [_goal(task, logged.get(str(task.get("id", ""))), judge) for task in tasks]
    attempted = [g for g in goals if g["status"] != "deferred"]
    achieved = sum(1 for g in attempted if g["achieved"])
    comparison = compare_metrics(before.get("metrics") or {}, after.get("metrics") or {})
    comparison["tests"] = after.get("tests") or {}
    comparison["tasks"] = {
        "planned": len(goals),
        "attempted": len(attempted),
        "achieved": achieved,
        "deferred": len(goals) - len(attempted),
        "rolled_back": sum(1 for g in goals if g["status"] == "rolled_back"),
    }
    return EvaluationResult(
        goals_achieved=goals,
        metrics_comparison=comparison,
        success_rate=round(achieved / len(attempted), 4) if attempted else 0.0,
    )


def compare_metrics(before: Mapping[str, Any], after: Mapping[str, Any]) -> JSON:
    """Numeric metrics (bools, lists and dicts left out) before, after, and the delta."""
    old = {k: v for k, v in before.items() if _numeric(v)}
    new = {k: v for k, v in after.items() if _numeric(v)}
    delta = {k: round(new[k] - old[k], 4) for k in sorted(old.keys() & new.keys())}
    return {"before": old, "after": new, "delta": delta}


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Reanalysis:
    """Lookups into the analysis of the edited files."""

    def __init__(self, analysis: AnalysisResult) -> None:
        self.files = {f.file: f for f in analysis.files}
        self.proposed = {
            (str(i.get("type")), str(i.get("file")), i.get("symbol")) for i in analysis.improvements
        }
        self.missing_docs = {
            (str(i["file"]), i.get("symbol"))
            for i in analysis.issues
            if i.get("type") == "missing_docstring"
        }

    def verdict(self, action: str, file: str, symbol: str) -> tuple[bool, str]:
        facts = self.files.get(file)
        if facts is None:
            return False, f"{file} was not re-analysed"
        if not facts.parsed:
            return False, f"{file} no longer parses"
        if (
            symbol != MODULE_SYMBOL
            and not any(f.name == symbol for f in facts.functions)
            and not any(c[0] == symbol for c in facts.classes)
        ):
            return False, f"{symbol} no longer exists in {file}"
        where = f"{file}:{symbol}"
        if action == "add_docstring":
            ok = (file, symbol) not in self.missing_docs
            return ok, f"{where} {'has' if ok else 'still lacks'} a docstring"
        if action == "reduce_complexity":
            fn = next((f for f in facts.functions if f.name == symbol), None)
            value = fn.complexity if fn else None
            ok = value is not None and value <= COMPLEXITY_THRESHOLD
            return ok, f"{where} complexity now {value} (limit {COMPLEXITY_THRESHOLD}, ruff C901)"
        if (action, file, symbol) in self.proposed:
            return False, f"re-analysis still proposes {action} for {where}"
        return True, f"re-analysis no longer proposes {action} for {where}"


def _goal(
    task: Mapping[str, Any], logged: Mapping[str, Any] | None, judge: _Reanalysis | None
) -> JSON:
    task_id = str(task.get("id", ""))
    action = str(task.get("action", ""))
    symbol = task.get("symbol")
    symbol = symbol if isinstance(symbol, str) and symbol else MODULE_SYMBOL
    outcome = str(logged.get("outcome", "")) if logged else "not logged"
    goal: JSON = {"task_id": task_id, "action": action, "status": outcome, "achieved": False}
    if logged is None:
        goal["evidence"] = "the implementation log has no entry for this task"
    elif outcome == "kept":
        if judge is None:
            goal["evidence"] = "no re-analysis available"
        else:
            goal["achieved"], goal["evidence"] = judge.verdict(
                action, str(task.get("file", "")), symbol
            )
        if logged.get("detail"):
            goal["evidence"] += f"; {logged['detail']}"
    else:
        goal["evidence"] = str(logged.get("reason") or outcome)
    return goal
