"""Snapshots of the store actor's state, kept in a JetStream object store.

A snapshot is the whole ``StoreState`` (``StoreState.image()``: every context in creation order,
the newest context per tenant, the outcomes of the latest writes, the stream time of each
context's last write) as of ``applied_seq``,
msgpack-encoded, zlib-compressed, framed as::

    b"CTXSNAP1" | sha256(compressed body) (32 bytes) | compressed body

sealed with AES-256-GCM when encryption at rest is on (``actors.core.sealing``; a snapshot
that is not sealed under the actor's key is then refused), and stored as object
``snapshot-<applied_seq, 20 digits>`` in the bucket
``ctxstore_snapshots`` (the object store chunks it, so JetStream's message size limit does
not bound it, and checks its own SHA-256 digest). The actor keeps the newest ``KEEP``.

On start the actor loads the newest snapshot that is valid for the stream it reads: right
frame and checksum, a body that decodes, the same format, taken from this very write stream
(its creation time is recorded: a recreated stream with the same name does not match), no
further than the stream's last sequence, and with the same limits (``max_payload`` and
``max_contexts`` decide outcomes, so a state built under other limits is another state).
Anything else is skipped with a logged reason, the next older one is tried, and with none
left the actor replays the whole stream. A snapshot never yields a state a full replay
would not: it is the state a replay had reached at ``applied_seq``.

One known difference: writes removed from the stream by hand (not by the store, whose
deletes are writes in the log) before ``applied_seq`` stay in the snapshot's state.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from actors.core.fold import Limits, StateImage, StoreState, WriteOutcome
from actors.core.sealing import SealError, is_sealed, open_sealed, seal
from broker.config import StoreConfig
from contracts import EvolutionContext

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
FORMAT: Final = 2  # 2: outcomes of the latest writes, stream times of last writes
KEEP: Final = 2
_MAGIC: Final = b"CTXSNAP1"
_DIGEST_LEN: Final = 32
_CHUNK: Final = 256 * 1024
_PREFIX: Final = "snapshot-"
_PURPOSE: Final = b"snapshot"
WRITES_PER_CONTEXT: Final = 4  # the counted cadence is at least this many writes per context
_YIELD_BYTES: Final = 512 * 1024  # encoded between two turns of the event loop: a few ms


C = TypeVar("C")


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the message says why."""


class _Body(msgspec.Struct, Generic[C], frozen=True, kw_only=True):
    """Read with the contexts decoded (``list[EvolutionContext]``), written with them
    already encoded one by one (``msgspec.Raw``)."""

    format: int
    stream_created: datetime
    applied_seq: int
    max_payload: int
    max_contexts: int | None
    contexts: C  # in the state's (creation) order: pruning depends on it
    latest: dict[str, str]
    outcomes: list[WriteOutcome]
    touched: list[tuple[str, str, float]]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Body[list[EvolutionContext]])


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
        max_payload=image.limits.max_payload,
        max_contexts=image.limits.max_contexts,
        contexts=msgspec.Raw(array),
        latest=image.latest,
        outcomes=image.outcomes,
        touched=image.touched,
    )
    return _encoder.encode(body)


def _frame(body: bytes) -> bytes:
    # zlib and hashlib release the GIL on large buffers: this part can run in a thread.
    packed = zlib.compress(body, 1)
    return _MAGIC + hashlib.sha256(packed).digest() + packed


async def _encode_stepwise(image: StateImage, stream_created: datetime) -> bytes:
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
    return await asyncio.to_thread(_frame, body)


def encode_snapshot(state: StoreState, stream_created: datetime) -> bytes:
    """The framed snapshot of ``state`` for the write stream created at ``stream_created``."""
    image = state.image()
    return _frame(_body(image, stream_created, [_encoder.encode(c) for c in image.contexts]))


def decode_snapshot(data: bytes, limits: Limits) -> tuple[StoreState, datetime]:
    """The state in a framed snapshot and the creation time of its stream; ``SnapshotError``
    when the frame, checksum, body, format or limits are not right."""
    head = len(_MAGIC) + _DIGEST_LEN
    if len(data) < head or not data.startswith(_MAGIC):
        raise SnapshotError("not a snapshot (bad frame)")
    digest, packed = data[len(_MAGIC) : head], data[head:]
    if hashlib.sha256(packed).digest() != digest:
        raise SnapshotError("checksum mismatch")
    try:
        body = _decoder.decode(zlib.decompress(packed))
    except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotError(f"undecodable body: {exc}") from None
    if body.format != FORMAT:
        raise SnapshotError(f"format {body.format}, this actor reads {FORMAT}")
    if (body.max_payload, body.max_contexts) != (limits.max_payload, limits.max_contexts):
        raise SnapshotError(
            f"taken with limits max_payload={body.max_payload} max_contexts={body.max_contexts}"
            f", the actor runs with {limits.max_payload} and {limits.max_contexts}"
        )
    image = StateImage(
        limits=limits,
        applied_seq=body.applied_seq,
        contexts=body.contexts,
        latest=body.latest,
        outcomes=body.outcomes,
        touched=body.touched,
    )
    return StoreState.from_image(image), body.stream_created


def _name(seq: int) -> str:
    return f"{_PREFIX}{seq:020d}"


def _seq_of(name: str) -> int | None:
    if not name.startswith(_PREFIX):
        return None
    try:
        return int(name[len(_PREFIX) :])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class LoadResult:
    state: StoreState | None  # None: replay the whole stream (the actor then moves it on)
    name: str | None = None
    seq: int = 0  # the snapshot's applied_seq: replay starts after it
    skipped: tuple[str, ...] = ()  # "<name>: <why>" for each snapshot not used


class Snapshots:
    """Saving and loading the actor's snapshots, on the cadence of the configuration."""

    def __init__(self, js: JetStreamContext, config: StoreConfig) -> None:
        self._js = js
        self._config = config
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
        found = [(_seq_of(i.name), i.name) for i in infos if not i.deleted]
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
                buffer = io.BytesIO()
                await store.get(name, writeinto=buffer)
                data = self._unsealed(buffer.getvalue())
                state, created = await asyncio.to_thread(decode_snapshot, data, limits)
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

    async def save(self, state: StoreState, stream_created: datetime) -> str:
        """Store a snapshot of ``state`` as it is now; drop all but the newest ``KEEP``."""
        image = state.image()  # synchronously: the state moves on meanwhile
        self.last_seq = image.applied_seq
        self._last_time = time.monotonic()
        data = await _encode_stepwise(image, stream_created)
        key = self._config.key
        if key is not None:
            data = await asyncio.to_thread(seal, data, key, _PURPOSE)
        store = await self._bucket(create=True)
        assert store is not None
        name = _name(image.applied_seq)
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
