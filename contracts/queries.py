"""Request bodies of the query endpoints (``ctxstore.query.<tenant>.<operation>``) and the
replies that are not a context or a comparison.

``min_seq`` makes a read see the sender's own writes: the actor answers once it has applied
the stream up to that sequence (or replies with a timeout error).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.context import ContextSummary

__all__ = [
    "CompareRequest",
    "ContextList",
    "ExportRequest",
    "GetRequest",
    "ListRequest",
    "OutcomeReply",
    "OutcomeRequest",
]

Seq = Annotated[int, msgspec.Meta(ge=0)]


EvolutionId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``min_seq``: answer once the store applied the stream up to it (read-your-writes).
    ``accept_chunks``: the requester reads a reply too large for one message as several
    messages on its reply subject (``Ctxstore-Chunk: i/n``); without it such a reply is a
    ``too_large`` error."""

    min_seq: Seq = 0
    accept_chunks: bool = False


class GetRequest(_Request, frozen=True, kw_only=True):
    """``evolution_id`` None means the most recently created context of the tenant."""

    evolution_id: EvolutionId | None = None


class ListRequest(_Request, frozen=True, kw_only=True):
    pass


class CompareRequest(_Request, frozen=True, kw_only=True):
    evolution_id: EvolutionId | None = None


class ExportRequest(_Request, frozen=True, kw_only=True):
    evolution_id: EvolutionId | None = None


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
    contexts: list[ContextSummary]
    applied_seq: int
