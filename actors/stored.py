"""From a stream message to the ``StoredWrite`` the pure state folds.

A write re-published by an import or replay carries ``Ctxstore-Recorded-Time``: the time it
was originally written. That time, not the stream's, is the write's time for the state
(``created_at``, ``updated_at``), so an imported context equals its original. The stream keeps
its own timestamp (the history shows it as ``stored_at``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from nats.aio.msg import Msg

from actors.state import StoredWrite
from broker.delivery import header, js_position
from contracts.codec import HEADER_RECORDED_TIME, HEADER_WRITER

__all__ = ["delivered_write", "recorded_time", "stored_write"]

_WRITER: Final = HEADER_WRITER.encode()
_RECORDED_TIME: Final = HEADER_RECORDED_TIME.encode()


def recorded_time(raw: str | None) -> datetime | None:
    """The recorded time of a re-published write (the ``Ctxstore-Recorded-Time`` header's
    value); None if absent or not an aware RFC 3339 time."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _when(stamp_ns: int) -> datetime:
    # Computed as nats-py computes ``msg.metadata.timestamp``, so every path (replay, live,
    # history) gives the same value.
    return datetime.fromtimestamp(stamp_ns / 1_000_000_000.0, UTC)


def stored_write(msg: Msg) -> StoredWrite:
    """The write a consumer delivered as a nats-py message. Its position is read from the
    ack subject (nats-py's ``msg.metadata`` builds several objects per message)."""
    seq, stamp, _ = js_position((msg.reply or "").encode())
    headers = msg.headers
    return StoredWrite(
        seq=seq,
        time=recorded_time(headers.get(HEADER_RECORDED_TIME) if headers else None) or _when(stamp),
        subject=msg.subject,
        data=msg.data,
        writer=headers.get(HEADER_WRITER) if headers else None,
    )


def delivered_write(
    subject: bytes, reply: bytes, data: bytes, headers: bytes | None
) -> tuple[StoredWrite, int]:
    """The write a raw subscription received from a consumer, and how many messages the
    consumer still had pending after it."""
    seq, stamp, pending = js_position(reply)
    write = StoredWrite(
        seq=seq,
        time=recorded_time(header(headers, _RECORDED_TIME)) or _when(stamp),
        subject=subject.decode(),
        data=data,
        writer=header(headers, _WRITER),
    )
    return write, pending
