"""Reading one context's history from the streams: the I/O half of ``actors.core.timeline``.

``load_timeline`` reads every write of one context (its subjects
``ctxstore.write.<tenant>.<id>.*``) with an ordered consumer, and the capacity rejections the
actor announced for it, into a ``Timeline``.
"""

from __future__ import annotations

import asyncio

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from actors.core.fold import StoredWrite
from actors.core.timeline import Recorded, Timeline
from broker import EVENTS_STREAM, WRITES_STREAM
from broker.delivery import js_position
from contracts import (
    HEADER_RECORDED_TIME,
    HEADER_WRITER,
    Decoders,
    ErrorCode,
    StoreTimeoutError,
    WriteRejected,
    WriteSubject,
    error_filter,
    write_filter,
)

__all__ = ["load_timeline", "read_messages", "stored_write"]


def stored_write(msg: Msg) -> StoredWrite:
    """The write a consumer delivered as a nats-py message. Its position is read from the
    ack subject (nats-py's ``msg.metadata`` builds several objects per message)."""
    seq, stamp, _ = js_position((msg.reply or "").encode())
    headers = msg.headers or {}
    return StoredWrite.received(
        seq,
        stamp,
        msg.subject,
        msg.data,
        headers.get(HEADER_WRITER),
        headers.get(HEADER_RECORDED_TIME),
    )


async def read_messages(
    nc: Client,
    stream: str,
    subject_filter: str,
    *,
    up_to_seq: int | None = None,
    idle_timeout: float = 5.0,
) -> list[Msg]:
    """Every message of ``stream`` under ``subject_filter`` stored so far (up to ``up_to_seq``),
    in stream order, with an ordered consumer."""
    js = nc.jetstream(timeout=idle_timeout)
    info = await js.stream_info(stream)
    last = info.state.last_seq
    if up_to_seq is not None:
        last = min(last, up_to_seq)
    if info.state.messages == 0 or last < info.state.first_seq:
        return []
    sub = await js.subscribe(
        subject_filter,
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
    )
    out: list[Msg] = []
    try:
        consumer = await sub.consumer_info()
        delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
        if consumer.num_pending == 0 and delivered == 0:
            return out
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout)
            except nats.errors.TimeoutError:
                raise StoreTimeoutError(
                    f"reading {subject_filter} from {stream} stalled after {len(out)} messages"
                ) from None
            meta = msg.metadata
            if meta.sequence.stream > last:
                break
            out.append(msg)
            if meta.sequence.stream >= last or meta.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out


async def load_timeline(
    nc: Client,
    tenant: str,
    evolution_id: str,
    *,
    max_payload: int,
    up_to_seq: int | None = None,
    read_timeout: float = 5.0,
) -> Timeline:
    """Read one context's writes from the stream (and its capacity rejections from the
    events stream) into a ``Timeline``."""
    writes, errors = await asyncio.gather(
        read_messages(
            nc,
            WRITES_STREAM,
            write_filter(tenant, evolution_id),
            up_to_seq=up_to_seq,
            idle_timeout=read_timeout,
        ),
        read_messages(
            nc, EVENTS_STREAM, error_filter(tenant, evolution_id), idle_timeout=read_timeout
        ),
    )
    capacity: dict[int, str] = {}
    for msg in errors:
        try:
            event = Decoders.event.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue
        if isinstance(event, WriteRejected) and event.code == ErrorCode.CAPACITY:
            capacity[event.seq] = event.reason
    records = [
        Recorded(
            write=(w := stored_write(msg)),
            stored_at=msg.metadata.timestamp,
            capacity_reason=capacity.get(w.seq),
        )
        for msg in writes
        if WriteSubject.try_parse(msg.subject) is not None  # no deeper tokens
    ]
    return Timeline(tenant, evolution_id, records, max_payload=max_payload)
