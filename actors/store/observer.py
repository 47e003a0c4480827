"""What the store actor and its queries tell at the points that matter, for monitoring.

The actor calls a ``StoreObserver`` when it has applied a write live (accepted or rejected:
the outcome says which, and what it did to its context), when a replay or a snapshot is
done, and when its role changes; its queries call a ``QueryObserver`` for each request and
ask it for the figures the ``stats`` query answers with. ``actors.store.metrics`` implements
both as Prometheus metrics.

Every call is made on the actor's event loop, ``write_applied`` once per write on the hot
path: an observer must be cheap and must never raise.
"""

from __future__ import annotations

from typing import Protocol

from actors.core.fold import Outcome
from contracts import ActorRole, Query, StatsReply

__all__ = ["QueryObserver", "StoreObserver"]


class StoreObserver(Protocol):
    def write_applied(self, outcome: Outcome, pending: int | None = None) -> None:
        """A write applied live (by a leader or a standby; not one replayed at start-up).
        ``pending``: how many writes the stream still held after it, when the delivery
        said."""

    def replay_done(self, writes: int, seconds: float) -> None:
        """The state was rebuilt from a snapshot and ``writes`` writes of the stream."""

    def snapshot_saved(self, seconds: float) -> None: ...

    def snapshot_failed(self) -> None: ...

    def role_changed(self, role: ActorRole) -> None: ...


class QueryObserver(Protocol):
    def query_received(self, op: Query) -> None: ...

    def context_exported(self) -> None:
        """An ``export`` query was answered with a context: a client is building a bundle."""

    def figures(self, actor: str) -> StatsReply:
        """What the ``stats`` query answers; ``actor`` names the actor that answers."""
