"""History and time travel as pure folds of one context's writes (no I/O).

``Timeline`` folds the pure ``StoreState`` over the writes of one context (read from the
write stream by ``actors.client.history.load_timeline``), so the context at any sequence or
time is exactly what the store held then; ``diff_contexts`` says what changed between two.

Why fold rather than the batched Direct Get (``multi_last`` with ``up_to_seq``): the last write
of each phase subject gives the phase data, but not ``error_log`` (it accumulates over every
stage write with an error and every rejected write, which also live in the stream), nor the
right answer after a delete and re-create, an import, or a rejected phase write (its subject's
last message is a write that changed nothing). Folding the context's own writes is always
correct and costs one ordered-consumer read of that context's writes.

One rejection depends on other contexts: a create refused because the store was full. The
fold cannot see that from one context's writes, so it takes those rejections from the actor's
rejected-write events (``ctxstore.error.<tenant>.<id>.*``, kept for the events stream's age).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec

from actors.core.fold import Applied, Limits, Outcome, Rejected, StoredWrite, StoreState
from actors.core.held import HeldContext, decoded
from contracts import ErrorCode, EvolutionContext, WriteKind, WriteSubject
from contracts.history import Change, HistoryEntry

__all__ = [
    "METADATA_FIELDS",
    "Point",
    "Recorded",
    "Step",
    "Stepper",
    "Timeline",
    "diff_contexts",
    "history_entry",
]

Point = int | datetime
"""A point in a context's past: a stream sequence, or an aware datetime."""

METADATA_FIELDS: Final = frozenset({"version", "updated_at", "phase_versions"})
"""Fields that change with every write; ``diff_contexts`` skips them unless asked."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One write of a context as stored: what the state folds, plus the stream's own time,
    and the reason if the actor refused it for capacity (a cross-context decision)."""

    write: StoredWrite
    stored_at: datetime
    capacity_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    recorded: Recorded
    outcome: Outcome | None
    context: HeldContext | None  # the context after this write


class Timeline:
    """The writes of one context, in stream order, and the states they lead to."""

    def __init__(
        self, tenant: str, evolution_id: str, records: list[Recorded], *, max_write: int
    ) -> None:
        self.tenant = tenant
        self.evolution_id = evolution_id
        self.records = records
        self.max_write = max_write

    @property
    def last_seq(self) -> int:
        return self.records[-1].write.seq if self.records else 0

    def steps(self, until: Point | None = None) -> Iterator[Step]:
        """Fold the state over the writes up to ``until`` (inclusive), one step per write."""
        stepper = Stepper(self.tenant, self.evolution_id, max_write=self.max_write)
        for rec in self.records:
            if _within(rec.write, until):
                yield stepper.step(rec)

    def context_at(self, at: Point | None = None) -> EvolutionContext | None:
        """The context as it was at ``at`` (None: now); None if it did not exist then."""
        ctx: HeldContext | None = None
        for step in self.steps(at):
            ctx = step.context
        return None if ctx is None else decoded(ctx)

    def entries(self) -> list[HistoryEntry]:
        """One entry per write; the chunks of a write in chunks make one entry, at its last."""
        return [e for step in self.steps() if (e := history_entry(step)) is not None]


class Stepper:
    """Folds one context's writes one at a time, in stream order: what ``Timeline.steps``
    does over a list, for a reader that takes the writes as they come and keeps none."""

    def __init__(self, tenant: str, evolution_id: str, *, max_write: int) -> None:
        self.tenant = tenant
        self.evolution_id = evolution_id
        self._state = StoreState(Limits(max_write=max_write, max_contexts=None))
        self._key = (tenant, evolution_id)

    def step(self, rec: Recorded) -> Step:
        state = self._state
        outcome: Outcome | None
        if rec.capacity_reason is not None:
            outcome = Rejected(
                rec.write,
                self.tenant,
                self.evolution_id,
                WriteSubject.parse(rec.write.subject).kind,
                ErrorCode.CAPACITY,
                rec.capacity_reason,
                state.contexts.get(self._key),
            )
            state.applied_seq = rec.write.seq
        else:
            outcome = state.apply(rec.write)
        return Step(rec, outcome, state.contexts.get(self._key))


def _within(write: StoredWrite, until: Point | None) -> bool:
    if until is None:
        return True
    if isinstance(until, datetime):
        return write.time <= until
    return write.seq <= until


def history_entry(step: Step) -> HistoryEntry | None:
    """The history entry of one step: the write, and what the store made of it; None for a
    chunk that does not finish its write (the write's entry comes at its last chunk)."""
    if step.outcome is not None and not isinstance(step.outcome, Applied | Rejected):
        return None
    write = step.outcome.write if step.outcome is not None else step.recorded.write
    kind = WriteSubject.parse(write.subject).kind
    ctx = step.context
    common: dict[str, Any] = dict(
        seq=write.seq,
        time=write.time,
        stored_at=step.recorded.stored_at,
        kind=kind,
        writer=write.writer,
        size=len(write.data),
        version=ctx.version if ctx is not None else 0,
    )
    match step.outcome:
        case Rejected(code=code, reason=reason):
            return HistoryEntry(**common, applied=False, code=code.value, reason=reason)
        case Applied():
            stage = ctx.current_phase.value if ctx is not None and kind == WriteKind.STAGE else None
            return HistoryEntry(**common, applied=True, stage=stage)
    # A redelivery cannot occur in a single read; kept total for the type checker.
    return HistoryEntry(**common, applied=False, code="duplicate", reason="sequence seen twice")


# -- diff ----------------------------------------------------------------------------------


def diff_contexts(
    a: EvolutionContext,
    b: EvolutionContext,
    *,
    ignore: Iterable[str] = METADATA_FIELDS,
) -> list[Change]:
    """What changed from ``a`` to ``b``, field by field; nested keys and list items are
    compared one by one. A phase that goes from empty to filled (or back) is one change."""
    skip = frozenset(ignore)
    left = msgspec.to_builtins(a)
    right = msgspec.to_builtins(b)
    out: list[Change] = []
    for name in a.__struct_fields__:
        if name in skip:
            continue
        _diff(name, left.get(name), right.get(name), out)
    return out


def _diff(path: str, a: Any, b: Any, out: list[Change]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        _diff_dicts(path, a, b, out)
    elif isinstance(a, list) and isinstance(b, list):
        _diff_lists(path, a, b, out)
    elif a != b or type(a) is not type(b):
        out.append(Change(path=path, op="changed", before=a, after=b))


def _diff_dicts(path: str, a: dict[str, Any], b: dict[str, Any], out: list[Change]) -> None:
    if not a and b:
        out.append(Change(path=path, op="added", after=b))
        return
    if a and not b:
        out.append(Change(path=path, op="removed", before=a))
        return
    for key, value in a.items():
        sub = f"{path}.{key}"
        if key not in b:
            out.append(Change(path=sub, op="removed", before=value))
        else:
            _diff(sub, value, b[key], out)
    for key, value in b.items():
        if key not in a:
            out.append(Change(path=f"{path}.{key}", op="added", after=value))


def _diff_lists(path: str, a: list[Any], b: list[Any], out: list[Change]) -> None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        _diff(f"{path}[{i}]", x, y, out)
    for i in range(len(b), len(a)):
        out.append(Change(path=f"{path}[{i}]", op="removed", before=a[i]))
    for i in range(len(a), len(b)):
        out.append(Change(path=f"{path}[{i}]", op="added", after=b[i]))
