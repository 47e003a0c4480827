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
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from actors.core.fold import StoredWrite
from actors.core.timeline import Recorded, Timeline
from broker import EVENTS_STREAM, WRITES_STREAM, stream_partitions
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
    published_subject,
    write_filter,
)
from contracts.framing import read_part

__all__ = ["load_timeline", "read_messages", "read_stream", "stored_write"]


def stored_write(msg: Msg, partitioned: bool = False) -> StoredWrite:
    """The write a consumer delivered as a nats-py message. Its position is read from the
    ack subject (nats-py's ``msg.metadata`` builds several objects per message).
    ``partitioned``: the stream stores writes with their partition (dropped here)."""
    seq, stamp, _ = js_position((msg.reply or "").encode())
    headers = msg.headers or {}
    return StoredWrite.received(
        seq,
        stamp,
        published_subject(msg.subject, partitioned),
        msg.data,
        headers.get(HEADER_WRITER),
        headers.get(HEADER_RECORDED_TIME),
        read_part(headers.get),
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
    return (
        await read_stream(
            nc, stream, subject_filter, up_to_seq=up_to_seq, idle_timeout=idle_timeout
        )
    )[0]


async def read_stream(
    nc: Client,
    stream: str,
    subject_filter: str,
    *,
    up_to_seq: int | None = None,
    idle_timeout: float = 5.0,
) -> tuple[list[Msg], StreamConfig]:
    """``read_messages``, and the stream's configuration as it was read."""
    js = nc.jetstream(timeout=idle_timeout)
    info = await js.stream_info(stream)
    last = info.state.last_seq
    if up_to_seq is not None:
        last = min(last, up_to_seq)
    if info.state.messages == 0 or last < info.state.first_seq:
        return [], info.config
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
            return out, info.config
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
    return out, info.config


async def load_timeline(
    nc: Client,
    tenant: str,
    evolution_id: str,
    *,
    max_write: int,
    up_to_seq: int | None = None,
    read_timeout: float = 5.0,
) -> Timeline:
    """Read one context's writes from the stream (and its capacity rejections from the
    events stream) into a ``Timeline``."""
    (writes, stream), errors = await asyncio.gather(
        read_stream(
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
    partitioned = stream_partitions(stream) > 1
    records = [
        Recorded(
            write=w,
            stored_at=msg.metadata.timestamp,
            capacity_reason=capacity.get(w.seq),
        )
        for msg in writes
        if WriteSubject.try_parse((w := stored_write(msg, partitioned)).subject) is not None
    ]
    return Timeline(tenant, evolution_id, records, max_write=max_write)
