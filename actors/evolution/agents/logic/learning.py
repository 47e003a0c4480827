"""What earlier evolutions of the same project teach the planner.

Every task outcome is logged in the implementation log with the task's key (action, file,
symbol) and the hash of the symbol's source before and after. From those the planner
learns:

* a task kept in an earlier evolution is done: not planned again while the symbol is as that
  evolution left it (or as it found it, when its result was not applied);
* a task that failed (rolled back by the project's tests, or no safe transformation found)
  is not planned again while the symbol is unchanged;
* a kind of task that keeps failing is ranked lower.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAILED", "KEPT", "Learning", "task_key"]

JSON = dict[str, Any]
KEPT = "kept"
FAILED = frozenset({"rolled_back", "no_change"})
# A kind is ranked lower once at least this many attempts failed at least this often.
_MIN_ATTEMPTS = 2
_FAILING_RATE = 0.5


def task_key(action: object, file: object, symbol: object) -> str:
    return f"{action}:{file}:{symbol or ''}"


@dataclass(frozen=True)
class _Record:
    evolution_id: str
    outcome: str
    before_hash: str | None
    after_hash: str | None
    reason: str


@dataclass
class Learning:
    """Outcomes of earlier evolutions, by task key; empty when there were none."""

    records: dict[str, list[_Record]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    evolutions: list[str] = field(default_factory=list)

    @classmethod
    def from_logs(cls, logs: Iterable[tuple[str, Mapping[str, Any]]]) -> Learning:
        """From (evolution id, implementation log) pairs, oldest first."""
        learning = cls()
        for evolution_id, log in logs:
            used = False
            for change in log.get("changes") or []:
                if not isinstance(change, Mapping) or "key" not in change:
                    continue
                outcome = str(change.get("outcome", ""))
                record = _Record(
                    evolution_id,
                    outcome,
                    _text(change.get("source_hash")),
                    _text(change.get("after_hash")),
                    str(change.get("reason") or ""),
                )
                learning.records.setdefault(str(change["key"]), []).append(record)
                action = str(change.get("action", ""))
                if outcome == KEPT or outcome in FAILED:
                    learning.attempts[action] = learning.attempts.get(action, 0) + 1
                if outcome in FAILED:
                    learning.failures[action] = learning.failures.get(action, 0) + 1
                used = True
            if used:
                learning.evolutions.append(evolution_id)
        return learning

    def exclusion(self, key: str, source_hash: object) -> str | None:
        """Why a task must not be planned again, or None."""
        current = _text(source_hash)
        for record in reversed(self.records.get(key, [])):
            if record.outcome == KEPT and current in (record.before_hash, record.after_hash):
                return f"done in {record.evolution_id}"
            if record.outcome in FAILED and current == record.before_hash:
                return f"failed in {record.evolution_id} ({record.outcome}: {record.reason})"
        return None

    def failure_rate(self, action: str) -> float:
        attempts = self.attempts.get(action, 0)
        return self.failures.get(action, 0) / attempts if attempts else 0.0

    def keeps_failing(self, action: str) -> bool:
        return (
            self.attempts.get(action, 0) >= _MIN_ATTEMPTS
            and self.failure_rate(action) >= _FAILING_RATE
        )

    def sources(self, key: str) -> list[str]:
        return sorted({r.evolution_id for r in self.records.get(key, [])})


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
