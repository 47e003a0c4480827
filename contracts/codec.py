"""JSON codecs, built once; headers; limits. Everything on the wire is UTF-8 JSON."""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from contracts.context import Comparison, EvolutionContext
from contracts.errors import ErrorBody
from contracts.events import Event
from contracts.queries import (
    CompareRequest,
    ContextList,
    ExportRequest,
    GetRequest,
    HistoryPage,
    HistoryRequest,
    ListRequest,
    OutcomeReply,
    OutcomeRequest,
    StatsRequest,
)
from contracts.stats import StatsReply
from contracts.writes import Write

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_MAX_WRITE",
    "HEADER_CHUNK",
    "HEADER_ENCODING",
    "HEADER_EXPECTED_LAST_SUBJECT_SEQ",
    "HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT",
    "HEADER_MSG_ID",
    "HEADER_RECORDED_TIME",
    "HEADER_REPLY_BYTES",
    "HEADER_WRITER",
    "HEADER_WRITE_ABORT",
    "HEADER_WRITE_BYTES",
    "HEADER_WRITE_DIGEST",
    "HEADER_WRITE_ID",
    "WRITER_MAX",
    "Decoders",
    "decode",
    "encode",
    "writer_name",
]

HEADER_MSG_ID: Final = "Nats-Msg-Id"
HEADER_WRITER: Final = "Ctxstore-Writer"
# On a write re-published by an import or replay: when it was originally written (RFC 3339).
# The store uses it as the write's time (created_at, updated_at); the stream keeps its own.
HEADER_RECORDED_TIME: Final = "Ctxstore-Recorded-Time"
# A reply too large for one message comes as several, each carrying "<i>/<n>" (1-based),
# to a requester that asked for it (``accept_chunks``); their bodies, joined in order, are the
# reply. ``Ctxstore-Reply-Bytes`` says the whole reply's size (also on the "too large" error a
# requester that did not ask gets). A write too large for one message goes the same way, as
# several messages on its write subject (``contracts.framing``).
HEADER_CHUNK: Final = "Ctxstore-Chunk"
HEADER_REPLY_BYTES: Final = "Ctxstore-Reply-Bytes"
# A write in chunks (see ``contracts.framing``): its id on every chunk, the size of its JSON
# body on the first, the SHA-256 of the joined chunk bodies on the last.
HEADER_WRITE_ID: Final = "Ctxstore-Write-Id"
HEADER_WRITE_BYTES: Final = "Ctxstore-Write-Bytes"
HEADER_WRITE_DIGEST: Final = "Ctxstore-Write-Digest"
# ``zlib``: the body (joined chunks) is the write's JSON compressed (RFC 1950).
HEADER_ENCODING: Final = "Ctxstore-Encoding"
# Drop the unfinished chunked write named by ``Ctxstore-Write-Id``; the value says why.
HEADER_WRITE_ABORT: Final = "Ctxstore-Write-Abort"
HEADER_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: Final = "Nats-Expected-Last-Subject-Sequence-Subject"

DEFAULT_MAX_PAYLOAD: Final = 256 * 1024  # the largest message (a write, or a chunk of one)
DEFAULT_MAX_WRITE: Final = 64 * 1024 * 1024  # the largest write (its JSON body, decoded)
WRITER_MAX: Final = 256
"""Events and history carry a writer's name (its ``Ctxstore-Writer`` header) cut to this
many characters: they echo it, and an echo must never be too large to send."""

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


class Decoders:
    """One typed decoder per inbox, built at import time."""

    write: Final[msgspec.json.Decoder[Write]] = msgspec.json.Decoder(Write)
    event: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)
    context: Final[msgspec.json.Decoder[EvolutionContext]] = msgspec.json.Decoder(EvolutionContext)
    comparison: Final[msgspec.json.Decoder[Comparison]] = msgspec.json.Decoder(Comparison)
    context_list: Final[msgspec.json.Decoder[ContextList]] = msgspec.json.Decoder(ContextList)
    outcome: Final[msgspec.json.Decoder[OutcomeReply]] = msgspec.json.Decoder(OutcomeReply)
    error: Final[msgspec.json.Decoder[ErrorBody]] = msgspec.json.Decoder(ErrorBody)
    get: Final[msgspec.json.Decoder[GetRequest]] = msgspec.json.Decoder(GetRequest)
    list: Final[msgspec.json.Decoder[ListRequest]] = msgspec.json.Decoder(ListRequest)
    compare: Final[msgspec.json.Decoder[CompareRequest]] = msgspec.json.Decoder(CompareRequest)
    export: Final[msgspec.json.Decoder[ExportRequest]] = msgspec.json.Decoder(ExportRequest)
    outcome_request: Final[msgspec.json.Decoder[OutcomeRequest]] = msgspec.json.Decoder(
        OutcomeRequest
    )
    history: Final[msgspec.json.Decoder[HistoryRequest]] = msgspec.json.Decoder(HistoryRequest)
    history_page: Final[msgspec.json.Decoder[HistoryPage]] = msgspec.json.Decoder(HistoryPage)
    stats: Final[msgspec.json.Decoder[StatsRequest]] = msgspec.json.Decoder(StatsRequest)
    stats_reply: Final[msgspec.json.Decoder[StatsReply]] = msgspec.json.Decoder(StatsReply)


def writer_name(header: str | None) -> str | None:
    """A write's ``Ctxstore-Writer`` header as events and history carry it: cut to
    ``WRITER_MAX`` characters, with the length it had."""
    if header is None or len(header) <= WRITER_MAX:
        return header
    return f"{header[:WRITER_MAX]}... ({len(header)} characters)"


def decode(data: bytes, type_: type[T]) -> T:
    """Decode with a one-off typed decoder (cold paths only)."""
    return msgspec.json.decode(data, type=type_)
