"""Request bodies of the query endpoints (``ctxstore.query.<tenant>.<operation>``) and the
replies that are not a context or a comparison.

``min_seq`` makes a read see the sender's own writes: the actor answers once it has applied
the stream up to that sequence, or after ``MIN_SEQ_WAIT_S`` with a ``timeout`` error.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from contracts.context import ContextSummary
from contracts.history import HistoryEntry
from contracts.vocabulary import Token

__all__ = [
    "HISTORY_LIMIT_MAX",
    "MIN_SEQ_WAIT_S",
    "CompareRequest",
    "ContextList",
    "ExportRequest",
    "GetRequest",
    "HistoryPage",
    "HistoryRequest",
    "ListRequest",
    "OutcomeReply",
    "OutcomeRequest",
]

MIN_SEQ_WAIT_S: Final = 5.0
"""How long the store actor waits for ``min_seq`` by default (its ``read_wait``)."""
HISTORY_LIMIT_MAX: Final = 1000

Seq = Annotated[int, msgspec.Meta(ge=0)]


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``accept_chunks``: the requester reads a reply too large for one message as several
    messages on its reply subject (``Ctxstore-Chunk: i/n``); without it such a reply is a
    ``too_large`` error."""

    min_seq: Annotated[
        Seq,
        msgspec.Meta(
            description=(
                "Answer once the store has applied the write stream up to this sequence (the "
                "seq of the sender's last write: read-your-writes). The store waits up to "
                f"{MIN_SEQ_WAIT_S:g} s by default, then answers with a 'timeout' error: give the "
                "request a timeout longer than that. 0: answer at once."
            )
        ),
    ] = 0
    accept_chunks: Annotated[
        bool,
        msgspec.Meta(
            description=(
                "The requester reads a reply too large for one message as several messages on "
                "its reply subject, each with the header 'Ctxstore-Chunk: <i>/<n>' (1-based; "
                "bodies joined in order are the reply). Without it such a reply is a "
                "'too_large' error carrying 'Ctxstore-Reply-Bytes'."
            )
        ),
    ] = False


class GetRequest(_Request, frozen=True, kw_only=True):
    """``evolution_id`` None means the most recently created context of the tenant."""

    evolution_id: Token | None = None


class ListRequest(_Request, frozen=True, kw_only=True):
    pass


class CompareRequest(_Request, frozen=True, kw_only=True):
    evolution_id: Token | None = None


class ExportRequest(_Request, frozen=True, kw_only=True):
    evolution_id: Token | None = None


class OutcomeRequest(_Request, frozen=True, kw_only=True):
    """What became of the write stored at ``seq``."""

    seq: Annotated[int, msgspec.Meta(ge=1)]


class OutcomeReply(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    applied: bool
    evolution_id: str
    version: int = 0
    code: str | None = None
    reason: str | None = None


class ContextList(msgspec.Struct, frozen=True, kw_only=True):
    """Summaries of every context of the tenant, oldest first; ``applied_seq`` is how far the
    store had applied the write stream when it answered."""

    contexts: list[ContextSummary]
    applied_seq: int


class HistoryRequest(_Request, frozen=True, kw_only=True):
    """One page of a context's write history: the writes with ``seq >= from_seq``, at most
    ``limit`` of them. Read on with ``from_seq`` set to the reply's ``next_seq``."""

    evolution_id: Token
    from_seq: Annotated[
        Seq, msgspec.Meta(description="The first stream sequence to list (0: from the start).")
    ] = 0
    limit: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=HISTORY_LIMIT_MAX,
            description="At most this many entries; a page also stops before the entry that "
            "would make the reply larger than the server's max_payload.",
        ),
    ] = 100


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of a context's history: writes in stream order, applied or rejected.

    ``entries`` are the writes with ``seq >= from_seq`` up to ``applied_seq``, the sequence the
    store had applied when it read them (a write it has not judged yet is not listed). A page
    holds at most ``limit`` entries and stops early rather than exceed the server's
    max_payload. ``next_seq`` is the ``from_seq`` of the next page, or null when this page
    reaches ``applied_seq``. A deleted context keeps its history."""

    evolution_id: str
    entries: list[HistoryEntry]
    next_seq: int | None
    applied_seq: int
