"""From a message the actor's consumer delivered to the ``StoredWrite`` the pure state folds."""

from __future__ import annotations

from typing import Final

from actors.core.fold import StoredWrite, recorded_time, stamp_time
from broker.delivery import header, js_position
from contracts import HEADER_RECORDED_TIME, HEADER_WRITER, writer_name

__all__ = ["delivered_write"]

_WRITER: Final = HEADER_WRITER.encode()
_RECORDED_TIME: Final = HEADER_RECORDED_TIME.encode()


def delivered_write(
    subject: bytes, reply: bytes, data: bytes, headers: bytes | None
) -> tuple[StoredWrite, int]:
    """The write a raw subscription received from a consumer, and how many messages the
    consumer still had pending after it. A subject that is not UTF-8 is kept with its bad
    bytes replaced: the state rejects it as an invalid subject, it never stops the actor."""
    seq, stamp, pending = js_position(reply)
    write = StoredWrite(
        seq=seq,
        time=recorded_time(header(headers, _RECORDED_TIME)) or stamp_time(stamp),
        subject=subject.decode("utf-8", "replace"),
        data=data,
        writer=writer_name(header(headers, _WRITER)),
    )
    return write, pending
