"""Events the actor publishes for every write it consumed: applied or rejected; and for every
context it pruned to make room (``ContextPruned``, on ``ctxstore.event.<tenant>.<id>.pruned``)."""

from __future__ import annotations

import msgspec

from contracts.vocabulary import Stage, Status, Timestamp

__all__ = ["PRUNED_KIND", "ContextPruned", "Event", "WriteApplied", "WriteRejected"]

PRUNED_KIND = "pruned"  # the last token of a pruning event's subject


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    tenant: str
    evolution_id: str
    kind: str
    seq: int
    time: Timestamp
    writer: str | None = None


class WriteApplied(_Event, frozen=True, kw_only=True, tag="applied"):
    """The write stored at ``seq`` was applied: the context is now at ``version`` (= ``seq``)
    with ``status`` and ``current_phase`` (null after a delete). ``kind`` is the write's kind,
    ``size`` its body's length in bytes."""

    version: int
    status: Status | None = None
    current_phase: Stage | None = None
    size: int = 0


class WriteRejected(_Event, frozen=True, kw_only=True, tag="rejected"):
    """The write stored at ``seq`` was rejected (``code``, an error code, and ``reason``);
    the context's data is unchanged and the reason is appended to its ``error_log``. When
    the subject could not be read, ``tenant`` and ``evolution_id`` are ``_``."""

    code: str
    reason: str


class ContextPruned(_Event, frozen=True, kw_only=True, tag="pruned"):
    """A context removed from the store, with ``reason``:

    - ``max_contexts: ...``: a finished context pruned to make room for a new one.
      ``seq``/``time``/``writer`` are those of the create that needed the room,
      ``created_by`` its evolution id. The pruned context's writes stay in the stream.
    - ``ttl: ...``: a context idle for longer than the TTL, deleted (``seq`` is its delete
      write) and purged from the stream; announced once the purge is done.

    ``version``/``status``/``created_at`` are the removed context's last."""

    reason: str
    created_by: str | None = None
    version: int
    status: Status
    created_at: Timestamp


Event = WriteApplied | WriteRejected | ContextPruned
