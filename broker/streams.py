"""The JetStream layout: the write log, the event log, and the store actor's consumer.

Provisioning is idempotent and never loses anything: a stream that exists is updated only in
the settings that cannot drop a message (subjects, maximum message size, duplicate window,
direct get). Replicas and retention (max_age, max_bytes, max_msgs, per-subject limits,
discard and retention policies, persist mode, storage, compression) of an existing stream
are never changed by provisioning: it returns each difference (``Drift``) and logs it, and
only ``migrate(..., apply=True)`` (``ctxstore migrate --apply``) changes them. So restarting
an actor with one setting changed cannot scale a 3-replica stream down to 1.

``replicas`` (``CONTEXT_STORE_REPLICAS``) is the number of copies of every stream, bucket and
object store of the store. With more than one, the event stream is persisted the default way:
JetStream refuses ``persist_mode: async`` on replicated streams (error 10052).

``partitions`` (``CONTEXT_STORE_PARTITIONS``) > 1 gives the write stream a subject transform
that stores each write with its partition (``contracts.subjects.write_transform``), and each
partition's leader its own durable consumer (``ctxstore-actor-<k>``, filtered on it). The
number is the stream's for good: its stored subjects carry it, so provisioning refuses to
start an actor with another number rather than change it (``stream_partitions``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PersistMode,
    RetentionPolicy,
    StorageType,
    StoreCompression,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import NotFoundError

from broker.config import StoreConfig
from contracts import (
    event_filter,
    partition_filter,
    partitions_of_transform,
    stored_write_filter,
    write_filter,
    write_transform,
)
from contracts.errors import ConfigError
from contracts.subjects import ROOT, Channel

__all__ = [
    "ACTOR_DURABLE",
    "BUCKET_STREAMS",
    "DUPLICATE_WINDOW_S",
    "EVENTS_STREAM",
    "WRITES_STREAM",
    "Drift",
    "actor_consumer_config",
    "actor_durable",
    "drifts",
    "events_stream_config",
    "migrate",
    "provision",
    "stream_partitions",
    "take_over_consumer",
    "writes_stream_config",
]

log = logging.getLogger("ctxstore.streams")

WRITES_STREAM: Final = "CTXSTORE_WRITES"
EVENTS_STREAM: Final = "CTXSTORE_EVENTS"
ACTOR_DURABLE: Final = "ctxstore-actor"
DUPLICATE_WINDOW_S: Final = 120.0
"""How long the streams remember a ``Nats-Msg-Id``: a retry within it is stored once."""
_EVENTS_MAX_AGE_S: Final = 7 * 24 * 3600.0
BUCKET_STREAMS: Final = ("KV_ctxstore_leases", "OBJ_ctxstore_snapshots")
"""The streams under the lease bucket and the snapshot object store (made by the actor)."""


def _storage(config: StoreConfig) -> StorageType:
    return StorageType.MEMORY if config.backend == "memory" else StorageType.FILE


def writes_stream_config(config: StoreConfig) -> StreamConfig:
    partitions = config.partitions
    transform = None
    if partitions > 1:
        src, dest = write_transform(partitions)
        transform = SubjectTransform(src=src, dest=dest)
    return StreamConfig(
        name=WRITES_STREAM,
        description="SharedContextStore write log: persistence, audit trail, replay source",
        subjects=[stored_write_filter(partitions)],
        subject_transform=transform,
        storage=_storage(config),
        max_msg_size=config.max_payload,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
        compression=(
            StoreCompression.S2
            if config.compression and config.backend == "file"
            else StoreCompression.NONE
        ),
        num_replicas=config.replicas,
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
        # write. Set at creation only: the server cannot change it on an existing stream,
        # and refuses it on a replicated one (there each event has its copies instead).
        persist_mode=(
            PersistMode.ASYNC
            if storage is StorageType.FILE and config.replicas == 1
            else PersistMode.DEFAULT
        ),
        max_age=_EVENTS_MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
        num_replicas=config.replicas,
    )


def stream_partitions(config: StreamConfig) -> int:
    """The partitions of a write stream, from its subject transform (1: none)."""
    transform = config.subject_transform
    return partitions_of_transform(None if transform is None else transform.dest)


def actor_durable(partition: int | None = None) -> str:
    """The leader's durable consumer: the store's, or one partition's (``partition``)."""
    return ACTOR_DURABLE if partition is None else f"{ACTOR_DURABLE}-{partition}"


def actor_consumer_config(start_seq: int = 1, partition: int | None = None) -> ConsumerConfig:
    """The store actor's durable consumer, delivering from ``start_seq``: of the whole store,
    or of one ``partition`` (its writes only)."""
    return ConsumerConfig(
        durable_name=actor_durable(partition),
        description="the store actor: applies writes in stream order",
        deliver_policy=DeliverPolicy.ALL if start_seq <= 1 else DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=None if start_seq <= 1 else start_seq,
        # One ack per fetched batch: the actor applies in order, so acking the last write
        # acknowledges all before it.
        ack_policy=AckPolicy.ALL,
        filter_subject=write_filter() if partition is None else partition_filter(partition),
        max_ack_pending=20_000,
        ack_wait=30.0,
        max_deliver=-1,
    )


# Settings provisioning aligns by itself: none can drop a stored message.
_SAFE: Final = ("subjects", "max_msg_size", "duplicate_window", "allow_direct")
# Settings only an explicit migration changes: copies and retention.
_GUARDED: Final = (
    "num_replicas",
    "max_age",
    "max_bytes",
    "max_msgs",
    "max_msgs_per_subject",
    "discard",
    "retention",
    "persist_mode",
    "storage",
    "compression",
)
# What the server reports for a setting left unset.
_UNSET: Final[dict[str, Any]] = {
    "num_replicas": 1,
    "max_age": 0,
    "max_bytes": -1,
    "max_msgs": -1,
    "max_msgs_per_subject": -1,
    "discard": DiscardPolicy.OLD,
    "retention": RetentionPolicy.LIMITS,
    "persist_mode": PersistMode.DEFAULT,
    "compression": StoreCompression.NONE,
}
# Changed in place by no update: a migration creates the stream anew (its messages go).
_RECREATE: Final = frozenset({"persist_mode", "storage"})


@dataclass(frozen=True, slots=True)
class Drift:
    """One setting of an existing stream that differs from what the configuration wants."""

    stream: str
    field: str
    current: Any
    wanted: Any

    def __str__(self) -> str:
        return (
            f"{self.stream}: {self.field} is {_shown(self.current)}, the configuration wants "
            f"{_shown(self.wanted)}"
        )

    @property
    def recreates(self) -> bool:
        """Applying it means creating the stream anew (JetStream cannot change it)."""
        return self.field in _RECREATE


def _shown(value: Any) -> str:
    return str(value.value) if hasattr(value, "value") else str(value)


def _value(config: StreamConfig, field: str) -> Any:
    value = getattr(config, field)
    if field in ("max_age", "duplicate_window") and value is not None:
        return float(value)
    if value is None:
        return _UNSET.get(field, 0 if field != "subjects" else [])
    return value


def _guarded_drifts(wanted: StreamConfig, current: StreamConfig) -> list[Drift]:
    assert wanted.name is not None
    return [
        Drift(wanted.name, f, _value(current, f), _value(wanted, f))
        for f in _GUARDED
        if _value(current, f) != _value(wanted, f)
    ]


def _safe_differs(wanted: StreamConfig, current: StreamConfig) -> bool:
    return any(_value(wanted, f) != _value(current, f) for f in _SAFE)


def _stream_configs(config: StoreConfig) -> list[StreamConfig]:
    return [writes_stream_config(config), events_stream_config(config)]


def _check_partitions(wanted: StreamConfig, current: StreamConfig) -> None:
    """Refuse a write stream made for another number of partitions: its stored subjects say
    which partition each write is in (or that none is), and no setting changes them."""
    if wanted.name != WRITES_STREAM:
        return
    have, want = stream_partitions(current), stream_partitions(wanted)
    if have != want:
        raise ConfigError(
            f"{WRITES_STREAM} was created with {have} partition(s) and its writes are stored "
            f"that way; this actor is configured for {want} (CONTEXT_STORE_PARTITIONS): run "
            f"it with CONTEXT_STORE_PARTITIONS={have}"
        )


async def _ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> list[Drift]:
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        await js.add_stream(wanted)
        return []
    current = info.config
    _check_partitions(wanted, current)
    drifted = _guarded_drifts(wanted, current)
    if _safe_differs(wanted, current):
        # Only the safe settings move: copies and retention stay as they are.
        aligned = StreamConfig.from_response(current.as_dict())
        for f in _SAFE:
            setattr(aligned, f, getattr(wanted, f))
        await js.update_stream(aligned)
    return drifted


async def _bucket_drifts(js: JetStreamContext, config: StoreConfig) -> list[Drift]:
    found = []
    for name in BUCKET_STREAMS:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            continue  # made by the actor when first needed, with the configured replicas
        current = info.config.num_replicas or 1
        if current != config.replicas:
            found.append(Drift(name, "num_replicas", current, config.replicas))
    return found


async def provision(js: JetStreamContext, config: StoreConfig) -> list[Drift]:
    """Create both streams, or align their safe settings (never the consumer: that is the
    leader's). Returns, and logs, what differs and only ``migrate`` may change."""
    drifted: list[Drift] = []
    for wanted in _stream_configs(config):
        drifted += await _ensure_stream(js, wanted)
    drifted += await _bucket_drifts(js, config)
    for drift in drifted:
        log.warning("%s: kept as it is; 'ctxstore migrate --apply' changes it", drift)
    return drifted


async def drifts(js: JetStreamContext, config: StoreConfig) -> list[Drift]:
    """What differs between the existing streams and buckets and the configuration."""
    found: list[Drift] = []
    for wanted in _stream_configs(config):
        assert wanted.name is not None
        try:
            info = await js.stream_info(wanted.name)
        except NotFoundError:
            continue
        _check_partitions(wanted, info.config)
        found += _guarded_drifts(wanted, info.config)
    return found + await _bucket_drifts(js, config)


async def migrate(js: JetStreamContext, config: StoreConfig, *, apply: bool) -> list[Drift]:
    """The differences ``provision`` keeps; with ``apply``, make the streams and buckets as the
    configuration wants them. A stream whose persist mode or storage must change is created
    anew: only the event stream may be (its events are derived from the write log); the
    write stream never is, and such a drift of it is left for the operator."""
    found = await drifts(js, config)
    if not apply:
        return found
    by_stream: dict[str, list[Drift]] = {}
    for drift in found:
        by_stream.setdefault(drift.stream, []).append(drift)
    wanted_by_name = {w.name: w for w in _stream_configs(config)}
    for name, its in by_stream.items():
        if name in BUCKET_STREAMS:
            info = await js.stream_info(name)
            updated = StreamConfig.from_response(info.config.as_dict())
            updated.num_replicas = config.replicas
            await js.update_stream(updated)
        elif any(d.recreates for d in its):
            if name == WRITES_STREAM:
                raise ConfigError(
                    f"{', '.join(str(d) for d in its if d.recreates)}: JetStream cannot change "
                    "this on an existing stream, and the write stream is the store's record: "
                    "it is never recreated by a migration"
                )
            await js.delete_stream(name)
            await js.add_stream(wanted_by_name[name])
            log.warning("%s: created anew (its past events are gone)", name)
        else:
            await js.update_stream(wanted_by_name[name])
        for drift in its:
            log.warning("migrated %s", drift)
    return found


async def take_over_consumer(
    js: JetStreamContext, start_seq: int, partition: int | None = None
) -> None:
    """(Re)create the actor's durable consumer (or ``partition``'s) to deliver from
    ``start_seq``.

    A new leader does this when it takes over: writes delivered to its predecessor and not
    acked would otherwise come again only after the ack wait, and the ones before
    ``start_seq`` are in the new leader's state already."""
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(WRITES_STREAM, actor_durable(partition))
    await js.add_consumer(WRITES_STREAM, actor_consumer_config(start_seq, partition))
