"""The JetStream layout: the write log, the event log, and the store actor's consumer.

Provisioning is idempotent: a stream that exists is updated only where our configuration
differs, and the durable consumer is created with the same config each time.
"""

from __future__ import annotations

import contextlib
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    PersistMode,
    StorageType,
    StoreCompression,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from broker.config import StoreConfig
from contracts import event_filter, write_filter
from contracts.subjects import ROOT, Channel

__all__ = [
    "ACTOR_DURABLE",
    "DUPLICATE_WINDOW_S",
    "EVENTS_STREAM",
    "WRITES_STREAM",
    "actor_consumer_config",
    "events_stream_config",
    "provision",
    "take_over_consumer",
    "writes_stream_config",
]

WRITES_STREAM: Final = "CTXSTORE_WRITES"
EVENTS_STREAM: Final = "CTXSTORE_EVENTS"
ACTOR_DURABLE: Final = "ctxstore-actor"
DUPLICATE_WINDOW_S: Final = 120.0
"""How long the streams remember a ``Nats-Msg-Id``: a retry within it is stored once."""
_EVENTS_MAX_AGE_S: Final = 7 * 24 * 3600.0


def _storage(config: StoreConfig) -> StorageType:
    return StorageType.MEMORY if config.backend == "memory" else StorageType.FILE


def writes_stream_config(config: StoreConfig) -> StreamConfig:
    return StreamConfig(
        name=WRITES_STREAM,
        description="SharedContextStore write log: persistence, audit trail, replay source",
        subjects=[write_filter()],
        storage=_storage(config),
        max_msg_size=config.max_payload,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
        compression=(
            StoreCompression.S2
            if config.compression and config.backend == "file"
            else StoreCompression.NONE
        ),
        num_replicas=1,
    )


def events_stream_config(config: StoreConfig) -> StreamConfig:
    storage = _storage(config)
    return StreamConfig(
        name=EVENTS_STREAM,
        description="SharedContextStore events: applied and rejected writes",
        subjects=[event_filter(), f"{ROOT}.{Channel.ERROR}.>"],
        storage=storage,
        # Events are derived from the write log, which is the record: with
        # ``sync_interval: always`` each write is fsynced, its event need not be (an fsync per
        # event halved durable throughput). A power loss may drop the last events, never a
        # write. Set at creation only: the server cannot change it on an existing stream.
        persist_mode=PersistMode.ASYNC if storage is StorageType.FILE else None,
        max_age=_EVENTS_MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
        num_replicas=1,
    )


def actor_consumer_config(start_seq: int = 1) -> ConsumerConfig:
    """The store actor's durable consumer, delivering from ``start_seq``."""
    return ConsumerConfig(
        durable_name=ACTOR_DURABLE,
        description="the store actor: applies writes in stream order",
        deliver_policy=DeliverPolicy.ALL if start_seq <= 1 else DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=None if start_seq <= 1 else start_seq,
        # One ack per fetched batch: the actor applies in order, so acking the last write
        # acknowledges all before it.
        ack_policy=AckPolicy.ALL,
        filter_subject=write_filter(),
        max_ack_pending=20_000,
        ack_wait=30.0,
        max_deliver=-1,
    )


def _differs(wanted: StreamConfig, current: StreamConfig) -> bool:
    fields = ("subjects", "max_msg_size", "duplicate_window", "allow_direct", "max_age")
    # The server reports unset limits as 0 where we leave them as None.
    return any((getattr(wanted, f) or 0) != (getattr(current, f) or 0) for f in fields)


async def _ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        await js.add_stream(wanted)
        return
    if _differs(wanted, info.config):
        # Storage type cannot change in place; keep the stored one rather than lose data.
        wanted.storage = info.config.storage
        wanted.compression = info.config.compression
        wanted.persist_mode = info.config.persist_mode
        await js.update_stream(wanted)


async def provision(js: JetStreamContext, config: StoreConfig) -> None:
    """Create or align both streams (never the consumer: that is the leader's)."""
    await _ensure_stream(js, writes_stream_config(config))
    await _ensure_stream(js, events_stream_config(config))


async def take_over_consumer(js: JetStreamContext, start_seq: int) -> None:
    """(Re)create the actor's durable consumer to deliver from ``start_seq``.

    A new leader does this when it takes over: writes delivered to its predecessor and not
    acked would otherwise come again only after the ack wait, and the ones before
    ``start_seq`` are in the new leader's state already."""
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(WRITES_STREAM, ACTOR_DURABLE)
    await js.add_consumer(WRITES_STREAM, actor_consumer_config(start_seq))
