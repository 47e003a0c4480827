"""Snapshots: the actor saves its state on a cadence and starts from the newest valid one,
replaying only what came after; a corrupt, foreign or missing snapshot means a full replay,
never a wrong state."""

from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, datetime

import msgspec
import pytest
from nats.aio.client import Client
from nats.js.object_store import ObjectStore
from workload import (
    Expected,
    contexts_at,
    create_contexts,
    request,
    running_actor,
    write_as,
    writers,
)

from actors import SharedContextStore
from actors.core.fold import Limits, StoredWrite, StoreState
from actors.store.snapshots import (
    SNAPSHOT_BUCKET,
    WRITES_PER_CONTEXT,
    SnapshotError,
    Snapshots,
    decode_pieces,
    decode_snapshot,
    encode_snapshot,
)
from broker import WRITES_STREAM, EmbeddedServer, StoreConfig
from contracts import (
    Decoders,
    EvolutionContext,
    OutcomeRequest,
    Query,
    encode,
    query_subject,
    write_subject,
)


def every(config: StoreConfig, n: int | None, interval: float | None = None) -> StoreConfig:
    return config.replace(**{"snapshot_every": n, "snapshot_interval": interval})


async def load(
    server: EmbeddedServer, config: StoreConfig, clients: int = 3, writes: int = 200
) -> Expected:
    """Contexts and writes with an actor running; returns what was acknowledged."""
    expected = Expected()
    owned = await create_contexts(config, clients=clients, per_client=3, expected=expected)
    async with writers(config, clients) as group:
        await asyncio.gather(
            *(write_as(c, e, writes, expected) for c, e in zip(group, owned, strict=True))
        )
    return expected


async def snapshotted(
    server: EmbeddedServer,
    config: StoreConfig,
    nc: Client,
    *,
    saved_by: int,
    clients: int = 3,
    writes: int = 200,
) -> tuple[Expected, dict[str, EvolutionContext], int]:
    """Load with an actor running until it has stored a snapshot at ``saved_by`` or later.
    Returns what was acknowledged, the contexts as the actor held them, and the sequence
    of the newest snapshot it stored."""
    async with running_actor(server, config, "actor-1") as first:
        expected = await load(server, config, clients=clients, writes=writes)
        before = await contexts_at(nc, expected.max_seq)
        assert first.snapshots is not None
        async with asyncio.timeout(10):
            await first.snapshots.wait_saved(saved_by)
    return expected, before, first.snapshots.saved_seq


async def bucket(nc: Client) -> ObjectStore:
    return await nc.jetstream().object_store(SNAPSHOT_BUCKET)


async def saved_names(nc: Client) -> list[str]:
    return sorted(i.name for i in await (await bucket(nc)).list(ignore_deletes=True))


async def full_replay_state(server: EmbeddedServer, config: StoreConfig) -> StoreState:
    async with running_actor(server, every(config, None), "reference") as reference:
        assert reference.snapshot_loaded is None
        return reference.state


def same_state(a: StoreState, b: StoreState) -> None:
    assert a.applied_seq == b.applied_seq
    assert list(a.contexts) == list(b.contexts)  # same order: pruning depends on it
    assert a.contexts == b.contexts
    for tenant in {t for t, _ in a.contexts}:
        assert a.get(tenant, None) == b.get(tenant, None)
    assert a.image() == b.image()  # outcomes and last-write times included


def _state_of_many(contexts: int) -> tuple[StoreState, datetime]:
    """Contexts with a phase each, held compressed: a snapshot of several segments."""
    state = StoreState(Limits(max_write=64 * 1024))
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    seq = 0
    for c in range(contexts):
        eid = f"evo-{c}"
        issues = ",".join(f'{{"file":"m{c}_{i}.py","line":{i * c}}}' for i in range(30))
        bodies = [
            ("create", b'{"type":"create","target_path":"./p"}'),
            ("original_analysis", f'{{"type":"original_analysis","issues":[{issues}]}}'.encode()),
        ]
        for kind, body in bodies:
            seq += 1
            state.apply(StoredWrite(seq, now, write_subject("default", eid, kind), body, "w"))
    return state, now


def test_a_snapshot_decodes_from_the_chunks_it_came_in() -> None:
    """Start-up decodes a snapshot segment by segment from the object store's chunks,
    never joining them: split anywhere (inside a length, a context, the frame), the state
    is the same; a chunk missing is refused."""
    state, now = _state_of_many(4000)
    data = encode_snapshot(state, now, squeeze_if_it_pays=False)
    assert len(data) > 2 * (1 << 20)  # more than one segment
    squeezed = encode_snapshot(state, now)
    assert len(squeezed) < len(data) / 2  # compressed as a whole: read from the chunks joined
    for framed in (data, squeezed):
        for size in (7, 1000, 256 * 1024, 3 << 20):
            pieces = [framed[i : i + size] for i in range(0, len(framed), size)]
            restored, created = decode_pieces(pieces, state.limits)
            assert created == now
            same_state(restored, state)
    pieces = [data[i : i + 256 * 1024] for i in range(0, len(data), 256 * 1024)]
    with pytest.raises(SnapshotError):
        decode_pieces(pieces[:-1], state.limits)
    with pytest.raises(SnapshotError):
        decode_pieces(pieces[:3] + pieces[4:], state.limits)


def test_a_snapshot_of_format_3_still_loads() -> None:
    """Snapshots taken before format 4 (one msgpack document) still load: a store whose
    stream was trimmed after one must start from it."""
    state, now = _state_of_many(50)
    image = state.image()
    body = msgspec.msgpack.encode(
        {
            "format": 3,
            "stream_created": now,
            "applied_seq": image.applied_seq,
            "max_write": image.limits.max_write,
            "max_contexts": image.limits.max_contexts,
            "contexts": image.contexts,
            "latest": image.latest,
            "outcomes": image.outcomes,
            "touched": image.touched,
            "open_writes": image.open_writes,
        }
    )
    framed = b"CTXSNAP3" + b"\0" + zlib.crc32(body).to_bytes(4, "big") + body
    restored, created = decode_snapshot(framed, state.limits)
    assert created == now
    same_state(restored, state)


async def test_start_up_from_a_snapshot_replays_only_the_writes_after_it(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = every(config, 500)
    expected, before, saved = await snapshotted(server, config, nc, saved_by=500)
    assert saved >= 500
    assert 1 <= len(await saved_names(nc)) <= 2  # the newest two are kept

    async with running_actor(server, config, "actor-2") as second:
        assert second.snapshot_loaded is not None
        assert second.snapshot_loaded.name is not None
        snapshot_seq = second.snapshot_loaded.seq
        assert snapshot_seq >= saved - 500  # the newest one
        # Only what came after the snapshot was replayed.
        assert second.recovered_writes == expected.max_seq - snapshot_seq
        assert second.recovered_writes < expected.writes
        assert await contexts_at(nc, 0) == before
        restored = second.state
    same_state(restored, await full_replay_state(server, config))
    for eid, log in expected.contexts.items():
        assert log.check(before[eid]) == [], eid


async def test_snapshots_are_also_taken_on_a_time_cadence(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = every(config, None, interval=0.2)
    async with running_actor(server, config, "actor-1") as actor:
        async with SharedContextStore(config=config) as store:
            await store.create_context("./p")
            await store.update_phase("research")
            last = store.last_seq
        assert actor.snapshots is not None
        async with asyncio.timeout(10):
            await actor.snapshots.wait_saved(last)
        assert actor.snapshots.saved == 1  # nothing new since: no second snapshot
    assert await saved_names(nc) == [f"snapshot-{2:020d}"]


async def test_the_counted_cadence_stretches_with_the_number_of_contexts(
    config: StoreConfig, nc: Client
) -> None:
    # A snapshot encodes every context: taken every 100 writes with 5,000 contexts, it would
    # cost each write 50 contexts' worth of encoding.
    snapshots = Snapshots(nc.jetstream(), every(config, 100))
    stretched = WRITES_PER_CONTEXT * 5_000
    assert not snapshots.due(99, contexts=10)
    assert snapshots.due(100, contexts=10)
    assert not snapshots.due(100, contexts=5_000)
    assert not snapshots.due(stretched - 1, contexts=5_000)
    assert snapshots.due(stretched, contexts=5_000)


@pytest.mark.parametrize(
    "garbage",
    [b"not a snapshot at all", b"CTXSNAP1" + b"\0" * 32 + b"zlib? no"],
    ids=["no-frame", "bad-checksum"],
)
async def test_a_corrupt_snapshot_falls_back_to_a_full_replay(
    server: EmbeddedServer, config: StoreConfig, nc: Client, garbage: bytes
) -> None:
    config = every(config, 300)
    expected, before, _ = await snapshotted(server, config, nc, saved_by=300, clients=2)
    store = await bucket(nc)
    names = await saved_names(nc)
    for name in names:  # every snapshot is garbage now
        await store.put(name, garbage)

    async with running_actor(server, config, "actor-2") as second:
        assert second.snapshot_loaded is not None
        assert second.snapshot_loaded.state is None
        assert len(second.snapshot_loaded.skipped) == len(names)
        assert second.recovered_writes == expected.writes  # the whole stream
        assert await contexts_at(nc, 0) == before
        restored = second.state
    same_state(restored, await full_replay_state(server, config))


async def test_a_corrupt_newest_snapshot_falls_back_to_the_one_before(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = every(config, 200)
    expected, before, _ = await snapshotted(server, config, nc, saved_by=400, clients=2, writes=300)
    names = await saved_names(nc)
    assert len(names) == 2
    store = await bucket(nc)
    newest = (await store.get(names[-1])).data
    assert newest is not None
    # A valid frame around a body changed after the checksum was taken.
    await store.put(names[-1], newest[:-10] + bytes(10))

    async with running_actor(server, config, "actor-2") as second:
        loaded = second.snapshot_loaded
        assert loaded is not None
        assert loaded.name == names[0]
        assert loaded.skipped[0].startswith(f"{names[-1]}: checksum mismatch")
        assert loaded.state is not None
        assert second.recovered_writes == expected.max_seq - loaded.seq
        assert await contexts_at(nc, 0) == before


async def test_a_snapshot_of_another_stream_is_not_used(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = every(config, 100)
    await snapshotted(server, config, nc, saved_by=100, clients=1, writes=150)
    # The write stream is deleted and recreated (same name): the old snapshot is not its.
    await nc.jetstream().delete_stream(WRITES_STREAM)
    async with running_actor(server, config, "actor-2") as second:
        loaded = second.snapshot_loaded
        assert loaded is not None
        assert loaded.state is None
        assert all("another stream" in s for s in loaded.skipped)
        assert second.state.contexts == {}
        async with SharedContextStore(config=config) as store:
            eid = await store.create_context("./fresh")
            assert [c["evolution_id"] for c in await store.get_all_contexts()] == [eid]


async def test_a_snapshot_taken_under_other_limits_is_not_used(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = every(config, 50)
    expected, _, _ = await snapshotted(server, config, nc, saved_by=50, clients=1, writes=60)
    other = config.replace(**{"max_contexts": 500})
    async with running_actor(server, other, "actor-2") as second:
        loaded = second.snapshot_loaded
        assert loaded is not None
        assert loaded.state is None
        assert "limits" in loaded.skipped[0]
        assert second.recovered_writes == expected.writes


async def test_a_rejection_before_the_snapshot_is_still_reported_after_a_restart(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    """The outcome endpoint (how a client learns its write was rejected) answers from the
    snapshot's rejections just as from a full replay."""
    config = every(config, 1)
    async with running_actor(server, config, "actor-1") as first:
        async with SharedContextStore(config=config) as store:
            eid = await store.create_context("./p")
        js = nc.jetstream()
        bad = await js.publish(write_subject("default", eid, "stage"), b'{"type":"stage"}')
        for _ in range(2):
            await js.publish(
                write_subject("default", eid, "stage"), b'{"type":"stage","phase":"research"}'
            )
        assert first.snapshots is not None
        async with asyncio.timeout(10):
            await first.snapshots.wait_saved(bad.seq + 2)
    async with running_actor(server, config, "actor-2") as second:
        assert second.snapshot_loaded is not None
        assert second.snapshot_loaded.state is not None
        assert second.recovered_writes == 0
        reply = await request(
            nc,
            query_subject("default", Query.OUTCOME),
            encode(OutcomeRequest(seq=bad.seq, min_seq=bad.seq)),
        )
    outcome = Decoders.outcome.decode(reply.data)
    assert not outcome.applied
    assert outcome.code == "invalid"
    assert outcome.version == bad.seq


def test_the_snapshot_codec_round_trips_and_refuses_tampering() -> None:
    limits = Limits(max_write=64 * 1024, max_contexts=3)
    state = StoreState(limits)
    now = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    writes = [
        ("e1", "create", b'{"type":"create","target_path":"./a"}'),
        ("e2", "create", b'{"type":"create","target_path":"./b","focus_areas":["x"]}'),
        ("e1", "stage", b'{"type":"stage","phase":"completed","error":"done"}'),
        ("e1", "original_analysis", b'{"type":"original_analysis","files_analyzed":-1}'),
        ("e3", "create", b'{"type":"create","target_path":"./c"}'),
        ("e4", "create", b'{"type":"create","target_path":"./d"}'),  # prunes e1
    ]
    for seq, (eid, kind, data) in enumerate(writes, start=1):
        state.apply(StoredWrite(seq, now, write_subject("default", eid, kind), data, "w"))
    assert set(state.contexts) == {("default", "e2"), ("default", "e3"), ("default", "e4")}

    data = encode_snapshot(state, now)
    restored, created = decode_snapshot(data, limits)
    assert created == now
    same_state(restored, state)
    assert restored.outcome(4) is not None
    assert restored.outcome(4) == state.outcome(4)
    assert restored.idle(60, now) == state.idle(60, now)

    with pytest.raises(SnapshotError, match="checksum"):
        decode_snapshot(data[:-1] + bytes([data[-1] ^ 1]), limits)
    with pytest.raises(SnapshotError, match="limits"):
        decode_snapshot(data, Limits(max_write=64 * 1024, max_contexts=None))
    with pytest.raises(SnapshotError, match="frame"):
        decode_snapshot(b"{}", limits)
