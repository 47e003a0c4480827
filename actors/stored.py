"""From a stream message to the ``StoredWrite`` the pure state folds.

A write re-published by an import or replay carries ``Ctxstore-Recorded-Time``: the time it
was originally written. That time, not the stream's, is the write's time for the state
(``created_at``, ``updated_at``), so an imported context equals its original. The stream keeps
its own timestamp (the history shows it as ``stored_at``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from nats.aio.msg import Msg

from actors.state import StoredWrite
from contracts.codec import HEADER_RECORDED_TIME, HEADER_WRITER

__all__ = ["recorded_time", "stored_write"]


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


def stored_write(msg: Msg) -> StoredWrite:
    meta = msg.metadata
    headers = msg.headers
    return StoredWrite(
        seq=meta.sequence.stream,
        time=recorded_time(headers) or meta.timestamp,
        subject=msg.subject,
        data=msg.data,
        writer=headers.get(HEADER_WRITER) if headers else None,
    )
