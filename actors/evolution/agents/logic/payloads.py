"""Bounding what the agents write: complete summaries, ranked lists cut to a byte budget.

A reader of a phase needs its summary (always complete: counts by kind, totals, ratios)
and the most important items; a 3,000-file project's every finding does not fit one
write. Per-file detail sits under ``metrics["detail"]`` so it can move to a large-payload
path as a whole; until then it is cut like the lists, and the cut is always stated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from .analysis import IMPROVEMENT_TYPES, AnalysisResult

__all__ = ["MAX_LISTED", "analysis_payload", "encoded_size", "fit_lists", "rank_improvements"]

JSON = dict[str, Any]
# Beyond this many entries a list is not read by anyone; the counts say the rest.
MAX_LISTED = 600
_PRIORITY = {"high": 0, "medium": 1, "low": 2}
_ENCODER = msgspec.json.Encoder()


def encoded_size(value: object) -> int:
    return len(_ENCODER.encode(value))


def rank_improvements(improvements: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """Most important first: priority, then kind (structural before cosmetic), then place."""
    return sorted(
        (dict(i) for i in improvements),
        key=lambda i: (
            _PRIORITY.get(str(i.get("priority")), 1),
            IMPROVEMENT_TYPES.index(i["type"]) if i.get("type") in IMPROVEMENT_TYPES else 99,
            str(i.get("file")),
            int(i.get("line") or 0),
        ),
    )


def _fitting(items: Sequence[object], room: int) -> int:
    """How many leading items encode within ``room`` bytes."""
    used = 0
    for count, item in enumerate(items):
        used += encoded_size(item) + 1
        if used > room:
            return count
    return len(items)


def fit_lists(
    build: Callable[[Mapping[str, int]], JSON],
    lists: Mapping[str, Sequence[object]],
    shares: Mapping[str, float],
    budget: int,
) -> JSON:
    """Each list cut to its share of ``budget`` (the last list named takes what is left),
    then cut by a quarter at a time until ``build(cuts)`` encodes within ``budget``."""
    cuts = {name: min(len(items), MAX_LISTED) for name, items in lists.items()}
    for name, share in shares.items():
        cuts[name] = min(cuts[name], _fitting(lists[name], int(budget * share)))
    payload = build(cuts)
    names = list(lists)
    while encoded_size(payload) > budget and any(cuts.values()):
        # The lists listed first give way first.
        name = next(n for n in names if cuts[n])
        cuts[name] = cuts[name] * 3 // 4
        payload = build(cuts)
    return payload


def analysis_payload(result: AnalysisResult, budget: int) -> JSON:
    """Keyword arguments for ``store_original_analysis`` that encode within ``budget``."""
    improvements = rank_improvements(result.improvements)
    issues = sorted(
        result.issues, key=lambda i: (_PRIORITY.get(str(i.get("severity")), 1), i["file"])
    )
    per_file = [f.summary() for f in result.files]
    counts = dict(sorted(Counter(str(i["type"]) for i in improvements).items()))

    def build(cuts: Mapping[str, int]) -> JSON:
        metrics = {
            **result.metrics,
            "improvement_counts": counts,
            "improvements_listed": cuts["improvements"],
            "issues_listed": cuts["issues"],
            "detail": {
                "per_file": per_file[: cuts["per_file"]],
                "files_listed": cuts["per_file"],
                "files_total": len(per_file),
            },
        }
        return {
            "files_analyzed": result.files_analyzed,
            "metrics": metrics,
            "issues": issues[: cuts["issues"]],
            "improvements": improvements[: cuts["improvements"]],
        }

    # Improvements feed the planner: they get what the issues (summarised by issue_counts)
    # and the per-file detail leave.
    lists: dict[str, Sequence[object]] = {
        "issues": issues,
        "per_file": per_file,
        "improvements": improvements,
    }
    return fit_lists(build, lists, {"issues": 0.1, "per_file": 0.2}, budget)
