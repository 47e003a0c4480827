"""Snapshots of the store actor's state, kept in a JetStream object store.

A snapshot is the whole ``StoreState`` (``StoreState.image()``: every context in creation order,
as held (phases as encoded JSON, the larger ones compressed), the newest context per tenant,
the outcomes of the latest writes, the stream time of each context's last write, the chunks
of unfinished writes) as of ``applied_seq``, msgpack-encoded, framed as::

    b"CTXSNAP4" | packing (1 byte: 0 as is, 1 zstd) | crc32(packed body) (4 bytes) | body

The body is a head (everything but the contexts) and the contexts in segments of about a
megabyte, each a msgpack document after its length: start-up decodes them one at a time from
the chunks the snapshot came in, without joining them first (format 3, one document, is
still read).

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
from typing import Final, Literal

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
    "decode_pieces",
    "decode_snapshot",
    "encode_snapshot",
]

log = logging.getLogger("ctxstore.snapshots")

SNAPSHOT_BUCKET: Final = "ctxstore_snapshots"
# 2: outcomes of the latest writes, stream times of last writes; 3: contexts as held, the
# unfinished writes in chunks, the body compressed only when that pays; 4: the contexts in
# segments decoded one at a time (format 3 is still read)
FORMAT: Final = 4
KEEP: Final = 2
_MAGIC: Final = b"CTXSNAP4"
_MAGIC_V3: Final = b"CTXSNAP3"
_SEGMENT: Final = 1 << 20  # bytes of encoded contexts per segment, about
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


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the message says why."""


class _Head(msgspec.Struct, frozen=True, kw_only=True):
    """Everything but the contexts, which follow it in ``segments`` segments."""

    format: int
    stream_created: datetime
    applied_seq: int
    max_write: int
    max_contexts: int | None
    segments: int
    latest: dict[str, str]
    outcomes: list[WriteOutcome]
    touched: list[tuple[str, str, float]]
    open_writes: list[OpenWrite]


class _BodyV3(msgspec.Struct, frozen=True, kw_only=True):
    """Format 3: one msgpack document, the contexts in it (read, never written)."""

    format: int
    stream_created: datetime
    applied_seq: int
    max_write: int
    max_contexts: int | None
    contexts: list[HeldContext]
    latest: dict[str, str]
    outcomes: list[WriteOutcome]
    touched: list[tuple[str, str, float]]
    open_writes: list[OpenWrite]


class _Format(msgspec.Struct, kw_only=True):
    format: int


_encoder = msgspec.msgpack.Encoder()
_head_decoder = msgspec.msgpack.Decoder(_Head)
_segment_decoder = msgspec.msgpack.Decoder(list[HeldContext])
_v3_decoder = msgspec.msgpack.Decoder(_BodyV3)
_format_decoder = msgspec.msgpack.Decoder(_Format)


def _sized(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _body(image: StateImage, stream_created: datetime, contexts: list[bytes]) -> bytes:
    """The body, the contexts already encoded one by one (``contexts``): the head, then the
    contexts in segments of about ``_SEGMENT`` bytes, each a msgpack array, each one (and the
    head) after its length (4 bytes). A reader decodes a segment at a time from the chunks the
    snapshot came in, never joining the whole body (a gigabyte for 100,000 real contexts:
    joining it alone took longer than decoding it)."""
    segments: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for encoded in contexts:
        group.append(encoded)
        size += len(encoded)
        if size >= _SEGMENT:
            segments.append(_segment(group))
            group, size = [], 0
    if group:
        segments.append(_segment(group))
    head = _Head(
        format=FORMAT,
        stream_created=stream_created,
        applied_seq=image.applied_seq,
        max_write=image.limits.max_write,
        max_contexts=image.limits.max_contexts,
        segments=len(segments),
        latest=image.latest,
        outcomes=image.outcomes,
        touched=image.touched,
        open_writes=image.open_writes,
    )
    return b"".join([_sized(_encoder.encode(head)), *map(_sized, segments)])


def _segment(encoded: list[bytes]) -> bytes:
    # A msgpack array of any length may use the 32-bit header.
    return b"".join([b"\xdd", len(encoded).to_bytes(4, "big"), *encoded])


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


def encode_snapshot(
    state: StoreState, stream_created: datetime, *, squeeze_if_it_pays: bool = True
) -> bytes:
    """The framed snapshot of ``state`` for the write stream created at ``stream_created``."""
    image = state.image()
    contexts = [_encoder.encode(c) for c in image.contexts]
    return _frame(_body(image, stream_created, contexts), squeeze_if_it_pays)


class _Short(ValueError):
    """The body ends before what its lengths announce."""


class _Pieces:
    """A body read in order from the pieces it came in (the object store's chunks): a view
    when what is asked for lies in one piece, else a copy of just that much."""

    def __init__(self, pieces: list[memoryview]) -> None:
        self._pieces = [p for p in pieces if len(p)]
        self._next = 0  # the current piece
        self._at = 0  # in the current piece

    def take(self, n: int) -> memoryview | bytes:
        pieces = self._pieces
        if self._next < len(pieces) and self._at + n <= len(pieces[self._next]):
            view = pieces[self._next][self._at : self._at + n]
            self._advance(n)
            return view
        out = bytearray()
        while len(out) < n:
            if self._next == len(pieces):
                raise _Short(f"the body ends {n - len(out)} bytes short")
            rest = pieces[self._next][self._at :]
            part = rest[: n - len(out)]
            out += part
            self._advance(len(part))
        return bytes(out)

    def _advance(self, n: int) -> None:
        self._at += n
        if self._at == len(self._pieces[self._next]):
            self._next += 1
            self._at = 0

    def sized(self) -> memoryview | bytes:
        """The next item: its length (4 bytes), then that many bytes."""
        return self.take(int.from_bytes(self.take(4), "big"))

    @property
    def left(self) -> int:
        return sum(len(p) for p in self._pieces[self._next :]) - self._at


def decode_snapshot(data: bytes, limits: Limits) -> tuple[StoreState, datetime]:
    """The state in a framed snapshot and the creation time of its stream; ``SnapshotError``
    when the frame, checksum, body, format or limits are not right."""
    return decode_pieces([data], limits)


def decode_pieces(pieces: list[bytes], limits: Limits) -> tuple[StoreState, datetime]:
    """``decode_snapshot`` of the snapshot the pieces make, joined (kept apart: each segment
    is decoded from them as it lies, see ``_body``)."""
    head = len(_MAGIC) + 1 + _DIGEST_LEN
    if pieces and len(pieces[0]) < head:
        pieces = [b"".join(pieces)]
    if pieces and pieces[0].startswith(_MAGIC_V3):
        return _decode_v3(b"".join(pieces), limits)
    packing, views = _checked(pieces)
    try:
        if packing == _ZSTD:
            views = [memoryview(zstandard.ZstdDecompressor().decompress(b"".join(views)))]
        top, contexts = _segments(_Pieces(views), limits)
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError, _Short) as exc:
        raise SnapshotError(f"undecodable body: {exc}") from None
    image = StateImage(
        limits=limits,
        applied_seq=top.applied_seq,
        contexts=contexts,
        latest=top.latest,
        outcomes=top.outcomes,
        touched=top.touched,
        open_writes=top.open_writes,
    )
    return StoreState.from_image(image), top.stream_created


def _checked(pieces: list[bytes]) -> tuple[int, list[memoryview]]:
    """The packing and the packed body (as views of the pieces) of a framed snapshot whose
    frame and checksum are right."""
    head = len(_MAGIC) + 1 + _DIGEST_LEN
    first = pieces[0] if pieces else b""
    if len(first) < head or not first.startswith(_MAGIC):
        raise SnapshotError("not a snapshot of this format (bad frame)")
    packing, digest = first[len(_MAGIC)], first[len(_MAGIC) + 1 : head]
    if packing not in (_AS_IS, _ZSTD):
        raise SnapshotError(f"unknown packing {packing}")
    views = [memoryview(first)[head:], *(memoryview(p) for p in pieces[1:])]
    crc = 0
    for view in views:
        crc = zlib.crc32(view, crc)
    if crc.to_bytes(4, "big") != digest:
        raise SnapshotError("checksum mismatch")
    return packing, views


def _segments(body: _Pieces, limits: Limits) -> tuple[_Head, list[HeldContext]]:
    raw_head = body.sized()
    found = _format_decoder.decode(raw_head).format
    if found != FORMAT:
        raise SnapshotError(f"format {found}, this actor reads {FORMAT} (and 3)")
    top = _head_decoder.decode(raw_head)
    _check_limits(top.max_write, top.max_contexts, limits)
    contexts: list[HeldContext] = []
    for _ in range(top.segments):
        contexts += _segment_decoder.decode(body.sized())
    if body.left:
        raise SnapshotError(f"{body.left} bytes after the last segment")
    return top, contexts


def _check_limits(max_write: int, max_contexts: int | None, limits: Limits) -> None:
    if (max_write, max_contexts) != (limits.max_write, limits.max_contexts):
        raise SnapshotError(
            f"taken with limits max_write={max_write} max_contexts={max_contexts}"
            f", the actor runs with {limits.max_write} and {limits.max_contexts}"
        )


def _decode_v3(data: bytes, limits: Limits) -> tuple[StoreState, datetime]:
    """A snapshot of format 3 (taken before the segments), read as it was written."""
    head = len(_MAGIC_V3) + 1 + _DIGEST_LEN
    if len(data) < head:
        raise SnapshotError("not a snapshot of this format (bad frame)")
    view = memoryview(data)
    at = len(_MAGIC_V3)
    packing, digest, packed = data[at], view[at + 1 : head], view[head:]
    if packing not in (_AS_IS, _ZSTD):
        raise SnapshotError(f"unknown packing {packing}")
    if zlib.crc32(packed).to_bytes(4, "big") != digest:
        raise SnapshotError("checksum mismatch")
    try:
        raw = zstandard.ZstdDecompressor().decompress(packed) if packing == _ZSTD else packed
        found = _format_decoder.decode(raw).format
        if found != 3:
            raise SnapshotError(f"format {found} in a format 3 frame")
        body = _v3_decoder.decode(raw)
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotError(f"undecodable body: {exc}") from None
    _check_limits(body.max_write, body.max_contexts, limits)
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
                pieces = self._unsealed(await self._fetch(store, name))
                fetched = time.perf_counter()
                state, created = await asyncio.to_thread(decode_pieces, pieces, limits)
                log.info(
                    "snapshot %s: %d bytes read in %.2fs, decoded in %.2fs",
                    name,
                    sum(len(p) for p in pieces),
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

    async def _fetch(self, store: ObjectStore, name: str) -> list[bytes]:
        """The object's bytes, in the chunks a consumer of this read's own pulled (not
        joined: see ``_body``)."""
        if self._nc is None:
            buffer = io.BytesIO()
            await store.get(name, writeinto=buffer)
            return [buffer.getvalue()]
        info = await store.get_info(name)
        if not info.size:
            return []
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
        read = sum(len(p) for p in parts)
        if read != info.size:
            raise SnapshotError(f"{read} bytes read, the object has {info.size}")
        return parts

    def _unsealed(self, pieces: list[bytes]) -> list[bytes]:
        """The snapshot's frame: opened when encryption is on (then a snapshot that is not
        sealed, or does not open under this key, is refused: nobody can plant one)."""
        key = self._config.key
        # Its first bytes say. Chunks are all full but the last: a short first one is the
        # whole (tiny) object.
        first = pieces[0] if pieces and len(pieces[0]) >= 64 else b"".join(pieces)
        sealed = is_sealed(first[:64])
        if key is None:
            if sealed:
                raise SnapshotError("encrypted, and this actor has no encryption key")
            return pieces
        if not sealed:
            raise SnapshotError("not encrypted, and encryption is on: refused")
        try:
            return [open_sealed(b"".join(pieces), key, _PURPOSE)]
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
