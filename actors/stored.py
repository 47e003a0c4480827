"""From a stream message to the ``StoredWrite`` the pure state folds.

A write re-published by an import or replay carries ``Ctxstore-Recorded-Time``: the time it
was originally written. That time, not the stream's, is the write's time for the state
(``created_at``, ``updated_at``), so an imported context equals its original. The stream keeps
its own timestamp (the history shows it as ``stored_at``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from nats.aio.msg import Msg

from actors.state import StoredWrite
from contracts.codec import HEADER_RECORDED_TIME, HEADER_WRITER

__all__ = ["position", "recorded_time", "stored_write"]


def recorded_time(headers: Mapping[str, str] | None) -> datetime | None:
    """The recorded time of a re-published write; None if absent or not an aware RFC 3339 time."""
    if not headers:
        return None
    raw = headers.get(HEADER_RECORDED_TIME)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def position(msg: Msg) -> tuple[int, datetime, int]:
    """(stream sequence, stored time, messages pending) of a message from a consumer.

    Read straight from the ack subject: nats-py's ``msg.metadata`` builds several objects per
    message, which showed in the actor's profile. The time is computed as nats-py does, so
    every path (replay, live, history) gives the same value."""
    reply = msg.reply
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        seq, stamp, pending = tokens[5], tokens[7], tokens[8]
    elif len(tokens) >= 11 and tokens[0] == "$JS":  # with <domain>.<account hash> after ACK
        seq, stamp, pending = tokens[7], tokens[9], tokens[10]
    else:
        meta = msg.metadata  # raises NotJSMessageError with nats-py's own message
        return meta.sequence.stream, meta.timestamp, meta.num_pending
    when = datetime.fromtimestamp(int(stamp) / 1_000_000_000.0, UTC)
    return int(seq), when, int(pending)


def stored_write(msg: Msg, where: tuple[int, datetime, int] | None = None) -> StoredWrite:
    """The write a consumer delivered; ``where`` is its ``position`` if already read."""
    seq, when, _ = where or position(msg)
    headers = msg.headers
    return StoredWrite(
        seq=seq,
        time=recorded_time(headers) or when,
        subject=msg.subject,
        data=msg.data,
        writer=headers.get(HEADER_WRITER) if headers else None,
    )
