"""Snapshots of the store actor's state, kept in a JetStream object store.

A snapshot is the whole ``StoreState`` (``StoreState.image()``: every context in creation order,
as held (phases as encoded JSON, the larger ones compressed), the newest context per tenant,
the outcomes of the latest writes, the stream time of each context's last write, the chunks
of unfinished writes) as of ``applied_seq``, msgpack-encoded, framed as::

    b"CTXSNAP3" | packing (1 byte: 0 as is, 1 zstd) | crc32(packed body) (4 bytes) | body

The body is compressed (zstd) only when that pays: the larger phases are held compressed
already, and compressing them again cost seconds for a large store and saved little. The
checksum is a CRC-32 (3.6 GB/s here, against 0.65 GB/s for SHA-256: for a store of 100,000
real contexts, over a gigabyte, the difference is seconds of start-up); the object store
keeps its own SHA-256 digest of the object beside it.

Start-up reads the snapshot's chunks with a pull consumer of its own on the raw intake
(``broker.intake``): nats-py's object store ``get`` delivered 60 MB/s here, the raw pull
several times that.

sealed with AES-256-GCM when encryption at rest is on (``actors.core.sealing``; a snapshot
that is not sealed under the actor's key is then refused), and stored as object
``snapshot-<applied_seq, 20 digits>`` (a partition's: ``snapshot-p<k>-<applied_seq>``) in the
bucket ``ctxstore_snapshots`` (the object store chunks it, so JetStream's message size limit does
not bound it, and checks its own SHA-256 digest). The actor keeps the newest ``KEEP``.

On start the actor loads the newest snapshot that is valid for the stream it reads: right
frame and checksum, a body that decodes, the same format, taken from this very write stream
(its creation time is recorded: a recreated stream with the same name does not match), no
further than the stream's last sequence, and with the same limits (``max_write`` and
``max_contexts`` decide outcomes, so a state built under other limits is another state).
Anything else is skipped with a logged reason, the next older one is tried, and with none
left the actor replays the whole stream. A snapshot never yields a state a full replay
would not: it is the state a replay had reached at ``applied_seq``.

One known difference: writes removed from the stream by hand (not by the store, whose
deletes are writes in the log) before ``applied_seq`` stay in the snapshot's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, Literal, TypeVar

import msgspec
import zstandard
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ObjectMeta,
    ObjectMetaOptions,
    ObjectStoreConfig,
    StorageType,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from actors.core.chunks import OpenWrite
from actors.core.fold import Limits, StateImage, StoreState, WriteOutcome
from actors.core.held import HeldContext
from actors.core.sealing import SealError, is_sealed, open_sealed, seal
from broker.config import StoreConfig
from broker.connection import BusClient
from broker.intake import Delivery, Intake, open_intake

__all__ = [
    "FORMAT",
    "KEEP",
    "SNAPSHOT_BUCKET",
    "WRITES_PER_CONTEXT",
    "LoadResult",
    "Snapshots",
    "decode_snapshot",
    "encode_snapshot",
]

log = logging.getLogger("ctxstore.snapshots")

SNAPSHOT_BUCKET: Final = "ctxstore_snapshots"
# 2: outcomes of the latest writes, stream times of last writes; 3: contexts as held, the
# unfinished writes in chunks, the body compressed only when that pays
FORMAT: Final = 3
KEEP: Final = 2
_MAGIC: Final = b"CTXSNAP3"
_AS_IS: Final = 0
_ZSTD: Final = 1
_DIGEST_LEN: Final = 4
_PROBE: Final = 1 << 20  # compressed first, to see whether compressing the body pays
_PULL_BYTES: Final = 64 << 20  # asked for per pull request when reading a snapshot
_CHUNK: Final = 256 * 1024
_PREFIX: Final = "snapshot-"
_PURPOSE: Final = b"snapshot"
WRITES_PER_CONTEXT: Final = 4  # the counted cadence is at least this many writes per context
_YIELD_BYTES: Final = 512 * 1024  # encoded between two turns of the event loop: a few ms


C = TypeVar("C")


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the message says why."""


class _Body(msgspec.Struct, Generic[C], frozen=True, kw_only=True):
    """Read with the contexts decoded (``list[HeldContext]``), written with them already
    encoded one by one (``msgspec.Raw``)."""

    format: int
    stream_created: datetime
    applied_seq: int
    max_write: int
    max_contexts: int | None
    contexts: C  # in the state's (creation) order: pruning depends on it
    latest: dict[str, str]
    outcomes: list[WriteOutcome]
    touched: list[tuple[str, str, float]]
    open_writes: list[OpenWrite]


class _Format(msgspec.Struct, kw_only=True):
    format: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Body[list[HeldContext]])
_format_decoder = msgspec.msgpack.Decoder(_Format)


def _body(image: StateImage, stream_created: datetime, contexts: list[bytes]) -> bytes:
    """The msgpack body, the contexts already encoded one by one (``contexts``)."""
    # A msgpack array of any length may use the 32-bit header.
    array = bytearray(b"\xdd" + len(contexts).to_bytes(4, "big"))
    for encoded in contexts:
        array += encoded
    body = _Body[msgspec.Raw](
        format=FORMAT,
        stream_created=stream_created,
        applied_seq=image.applied_seq,
        max_write=image.limits.max_write,
        max_contexts=image.limits.max_contexts,
        contexts=msgspec.Raw(array),
        latest=image.latest,
        outcomes=image.outcomes,
        touched=image.touched,
        open_writes=image.open_writes,
    )
    return _encoder.encode(body)


def _frame(body: bytes, squeeze_if_it_pays: bool = True) -> bytes:
    # zstd and zlib release the GIL on large buffers: this part can run in a thread.
    packing, packed = _AS_IS, body
    probe = body[:_PROBE]
    squeeze = zstandard.ZstdCompressor(level=1)
    if squeeze_if_it_pays and len(squeeze.compress(probe)) < len(probe) * 0.6:
        packing, packed = _ZSTD, squeeze.compress(body)
    return _MAGIC + bytes([packing]) + zlib.crc32(packed).to_bytes(4, "big") + packed


async def _encode_stepwise(
    image: StateImage, stream_created: datetime, squeeze_if_it_pays: bool = True
) -> bytes:
    """``encode_snapshot`` in steps the actor's event loop can run between: msgpack encoding
    holds the GIL (one piece of 10,000 scaled contexts took 1.2 s), so it goes a slice of
    contexts at a time on the loop, and only compression and hashing go to a thread."""
    contexts: list[bytes] = []
    since_yield = 0
    for ctx in image.contexts:
        encoded = _encoder.encode(ctx)
        contexts.append(encoded)
        since_yield += len(encoded)
        if since_yield >= _YIELD_BYTES:
            since_yield = 0
            await asyncio.sleep(0)
    body = _body(image, stream_created, contexts)
    return await asyncio.to_thread(_frame, body, squeeze_if_it_pays)


def encode_snapshot(state: StoreState, stream_created: datetime) -> bytes:
    """The framed snapshot of ``state`` for the write stream created at ``stream_created``."""
    image = state.image()
    return _frame(_body(image, stream_created, [_encoder.encode(c) for c in image.contexts]))


def decode_snapshot(data: bytes, limits: Limits) -> tuple[StoreState, datetime]:
    """The state in a framed snapshot and the creation time of its stream; ``SnapshotError``
    when the frame, checksum, body, format or limits are not right."""
    head = len(_MAGIC) + 1 + _DIGEST_LEN
    if len(data) < head or not data.startswith(_MAGIC):
        raise SnapshotError("not a snapshot of this format (bad frame)")
    view = memoryview(data)
    packing, digest, packed = data[len(_MAGIC)], view[len(_MAGIC) + 1 : head], view[head:]
    if packing not in (_AS_IS, _ZSTD):
        raise SnapshotError(f"unknown packing {packing}")
    if zlib.crc32(packed).to_bytes(4, "big") != digest:
        raise SnapshotError("checksum mismatch")
    try:
        raw = zstandard.ZstdDecompressor().decompress(packed) if packing == _ZSTD else packed
        found = _format_decoder.decode(raw).format
        if found != FORMAT:
            raise SnapshotError(f"format {found}, this actor reads {FORMAT}")
        body = _decoder.decode(raw)
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotError(f"undecodable body: {exc}") from None
    if (body.max_write, body.max_contexts) != (limits.max_write, limits.max_contexts):
        raise SnapshotError(
            f"taken with limits max_write={body.max_write} max_contexts={body.max_contexts}"
            f", the actor runs with {limits.max_write} and {limits.max_contexts}"
        )
    image = StateImage(
        limits=limits,
        applied_seq=body.applied_seq,
        contexts=body.contexts,
        latest=body.latest,
        outcomes=body.outcomes,
        touched=body.touched,
        open_writes=body.open_writes,
    )
    return StoreState.from_image(image), body.stream_created


def _prefix(partition: int | None) -> str:
    return _PREFIX if partition is None else f"{_PREFIX}p{partition}-"


def _name(seq: int, prefix: str = _PREFIX) -> str:
    return f"{prefix}{seq:020d}"


def _seq_of(name: str, prefix: str = _PREFIX) -> int | None:
    """The sequence of a snapshot named with ``prefix`` (None: another's, or not one)."""
    if not name.startswith(prefix):
        return None
    digits = name[len(prefix) :]
    return int(digits) if digits.isascii() and digits.isdigit() else None


@dataclass(frozen=True, slots=True)
class LoadResult:
    state: StoreState | None  # None: replay the whole stream (the actor then moves it on)
    name: str | None = None
    seq: int = 0  # the snapshot's applied_seq: replay starts after it
    skipped: tuple[str, ...] = ()  # "<name>: <why>" for each snapshot not used


class Snapshots:
    """Saving and loading the actor's snapshots, on the cadence of the configuration."""

    def __init__(
        self,
        js: JetStreamContext,
        config: StoreConfig,
        *,
        nc: BusClient | None = None,
        intake: Literal["raw", "public"] = "public",
        partition: int | None = None,
    ) -> None:
        """``nc`` and ``intake``: the connection and intake kind (``broker.intake``) to read
        snapshots with; without them, nats-py's object store ``get``. ``partition``: the
        snapshots of one partition's actors (of a partitioned store)."""
        self._prefix = _prefix(partition)
        self._js = js
        self._config = config
        self._nc = nc
        self._intake = intake
        self._store: ObjectStore | None = None
        self.last_seq = 0  # applied_seq of the newest snapshot saved or loaded
        self._last_time = time.monotonic()
        self.saved = 0
        self.saved_seq = 0  # applied_seq of the newest snapshot stored by this actor
        self._stored = asyncio.Condition()

    @property
    def enabled(self) -> bool:
        return self._config.snapshot_every is not None or self._config.snapshot_interval is not None

    async def _bucket(self, *, create: bool) -> ObjectStore | None:
        if self._store is not None:
            return self._store
        try:
            self._store = await self._js.object_store(SNAPSHOT_BUCKET)
        except BucketNotFoundError:
            if not create:
                return None
            storage = StorageType.MEMORY if self._config.backend == "memory" else StorageType.FILE
            self._store = await self._js.create_object_store(
                SNAPSHOT_BUCKET,
                config=ObjectStoreConfig(
                    description="SharedContextStore: snapshots of the store actor's state",
                    storage=storage,
                    replicas=self._config.replicas,
                ),
            )
        return self._store

    async def _names(self, store: ObjectStore) -> list[tuple[int, str]]:
        try:
            infos = await store.list(ignore_deletes=True)
        except NotFoundError:
            return []
        found = [(_seq_of(i.name, self._prefix), i.name) for i in infos if not i.deleted]
        return sorted(((s, n) for s, n in found if s is not None), reverse=True)

    async def load(
        self, limits: Limits, stream_created: datetime | None, last_seq: int
    ) -> LoadResult:
        """The newest snapshot valid for this stream and these limits, or a full replay."""
        if stream_created is None:
            return LoadResult(None, skipped=("the stream reports no creation time",))
        store = await self._bucket(create=False)
        if store is None:
            return LoadResult(None)
        skipped: list[str] = []
        for seq, name in await self._names(store):
            try:
                started = time.perf_counter()
                data = self._unsealed(await self._fetch(store, name))
                fetched = time.perf_counter()
                state, created = await asyncio.to_thread(decode_snapshot, data, limits)
                log.info(
                    "snapshot %s: %d bytes read in %.2fs, decoded in %.2fs",
                    name,
                    len(data),
                    fetched - started,
                    time.perf_counter() - fetched,
                )
                if created != stream_created:
                    raise SnapshotError(
                        f"taken from another stream (created {created.isoformat()})"
                    )
                if state.applied_seq != seq:
                    raise SnapshotError(f"holds seq {state.applied_seq}, named {seq}")
                if state.applied_seq > last_seq:
                    raise SnapshotError(f"ahead of the stream (last seq {last_seq})")
            except Exception as exc:  # any failure means "not this one", never a wrong state
                reason = f"{name}: {exc}" if str(exc) else f"{name}: {type(exc).__name__}"
                log.warning("snapshot skipped: %s", reason)
                skipped.append(reason)
                continue
            self.last_seq = state.applied_seq
            self._last_time = time.monotonic()
            return LoadResult(state, name, state.applied_seq, tuple(skipped))
        return LoadResult(None, skipped=tuple(skipped))

    async def _fetch(self, store: ObjectStore, name: str) -> bytes:
        """The object's bytes: its chunks pulled by a consumer of this read's own."""
        if self._nc is None:
            buffer = io.BytesIO()
            await store.get(name, writeinto=buffer)
            return buffer.getvalue()
        info = await store.get_info(name)
        if not info.size:
            return b""
        stream = f"OBJ_{SNAPSHOT_BUCKET}"
        consumer = await self._js.add_consumer(
            stream,
            ConsumerConfig(
                description="store actor: reading a snapshot",
                filter_subject=f"$O.{SNAPSHOT_BUCKET}.C.{info.nuid}",
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=30.0,
                mem_storage=True,
            ),
        )
        parts: list[bytes] = []
        intake: Intake

        async def take(delivery: Delivery) -> None:
            parts.append(delivery.data)
            if delivery.pending == 0:
                intake.stop()

        intake = open_intake(
            self._nc,
            self._intake,
            stream,
            consumer.name,
            take,
            batch=100_000,
            max_bytes=_PULL_BYTES,
            expires=5.0,
        )
        try:
            async with intake:
                while not intake.stopped:
                    before = len(parts)
                    async with asyncio.timeout(10.0):
                        code = await intake.pull()
                    if code is not None and len(parts) == before and not intake.stopped:
                        raise SnapshotError(f"its chunks stopped coming ({code!r})")
        finally:
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(stream, consumer.name)
        data = b"".join(parts)
        if len(data) != info.size:
            raise SnapshotError(f"{len(data)} bytes read, the object has {info.size}")
        return data

    def _unsealed(self, data: bytes) -> bytes:
        """The snapshot's frame: opened when encryption is on (then a snapshot that is not
        sealed, or does not open under this key, is refused: nobody can plant one)."""
        key = self._config.key
        if key is None:
            if is_sealed(data):
                raise SnapshotError("encrypted, and this actor has no encryption key")
            return data
        if not is_sealed(data):
            raise SnapshotError("not encrypted, and encryption is on: refused")
        try:
            return open_sealed(data, key, _PURPOSE)
        except SealError as exc:
            raise SnapshotError(str(exc)) from None

    def due(self, applied_seq: int, contexts: int = 0) -> bool:
        """Whether a snapshot should be taken now that ``applied_seq`` was reached by a state
        holding ``contexts`` contexts.

        Counted cadence: ``snapshot_every`` writes, or ``WRITES_PER_CONTEXT`` writes per
        context if that is more. A snapshot encodes every context (about 20 us each for a
        spec-sized one here), so a fixed cadence would cost each write more as the store
        grows; this way a write pays for a quarter of one context's encoding at most, and
        the writes left to replay after a snapshot stay proportional to the contexts it
        loads, never to the length of the history."""
        if applied_seq <= self.last_seq:
            return False
        every, interval = self._config.snapshot_every, self._config.snapshot_interval
        if every is not None and applied_seq - self.last_seq >= max(
            every, WRITES_PER_CONTEXT * contexts
        ):
            return True
        return interval is not None and time.monotonic() - self._last_time >= interval

    async def wait_saved(self, seq: int) -> None:
        """Until this actor has stored a snapshot at ``seq`` or later (bound it yourself)."""
        async with self._stored:
            await self._stored.wait_for(lambda: self.saved_seq >= seq)

    async def save(
        self, state: StoreState, stream_created: datetime, *, squeeze_if_it_pays: bool = True
    ) -> str:
        """Store a snapshot of ``state`` as it is now; drop all but the newest ``KEEP``.
        ``squeeze_if_it_pays=False``: never compress the body (benchmarks whose contexts
        are copies of a few, which compress across contexts as real ones would not)."""
        image = state.image()  # synchronously: the state moves on meanwhile
        self.last_seq = image.applied_seq
        self._last_time = time.monotonic()
        data = await _encode_stepwise(image, stream_created, squeeze_if_it_pays)
        key = self._config.key
        if key is not None:
            data = await asyncio.to_thread(seal, data, key, _PURPOSE)
        store = await self._bucket(create=True)
        assert store is not None
        name = _name(image.applied_seq, self._prefix)
        meta = ObjectMeta(
            name=name,
            description=f"store state at seq {image.applied_seq}",
            options=ObjectMetaOptions(max_chunk_size=_CHUNK),
        )
        await store.put(name, data, meta=meta)
        self.saved += 1
        async with self._stored:
            self.saved_seq = max(self.saved_seq, image.applied_seq)
            self._stored.notify_all()
        for _, old in (await self._names(store))[KEEP:]:
            await store.delete(old)
        log.info("snapshot %s: %d bytes", name, len(data))
        return name
