"""Retention and limits from the spec's configuration: storage backend, durability, S2
compression, TTL, max contexts (pruning, announced; refusal when nothing can be pruned) and
max payload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import StorageType, StoreCompression
from workload import running_actor

from actors import (
    CapacityError,
    ContextNotFoundError,
    SharedContextStore,
)
from actors.core.fold import Limits, StoredWrite, StoreState
from actors.store.local import LocalStack
from actors.store.retention import TTL_WRITER, expire
from broker import EVENTS_STREAM, WRITES_STREAM, EmbeddedServer, StoreConfig, connect, provision
from contracts import (
    HEADER_WRITER,
    WRITER_MAX,
    ContextPruned,
    Decoders,
    ErrorCode,
    WriteApplied,
    WriteRejected,
    event_filter,
    write_filter,
    write_subject,
)
from contracts.subjects import error_filter

# -- storage, durability, compression ------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "storage"), [("memory", StorageType.MEMORY), ("file", StorageType.FILE)]
)
async def test_the_backend_chooses_jetstream_storage(
    server: EmbeddedServer, nc: Client, backend: str, storage: StorageType
) -> None:
    config = StoreConfig.build({"CONTEXT_STORE_BACKEND": backend}, nats_url=server.url)
    async with running_actor(server, config), SharedContextStore(config=config) as store:
        eid = await store.create_context("./p")
        assert (await store.get_context(eid)).evolution_id == eid
    js = nc.jetstream()
    for stream in (WRITES_STREAM, EVENTS_STREAM):
        assert (await js.stream_info(stream)).config.storage == storage


@pytest.mark.parametrize(
    ("flag", "compression"), [("true", StoreCompression.S2), ("false", StoreCompression.NONE)]
)
async def test_compression_on_means_s2_stream_compression(
    nc: Client, server: EmbeddedServer, flag: str, compression: StoreCompression
) -> None:
    config = StoreConfig.build({"CONTEXT_STORE_COMPRESSION": flag}, nats_url=server.url)
    await provision(nc.jetstream(), config)
    info = await nc.jetstream().stream_info(WRITES_STREAM)
    assert info.config.compression == compression


async def test_sync_always_makes_the_embedded_server_fsync_every_write(tmp_path: Path) -> None:
    config = StoreConfig.build({"CONTEXT_STORE_SYNC": "always"})
    async with LocalStack(tmp_path / "home", config) as stack:
        conf = (stack.server.store_dir / "nats-server.conf").read_text()
        assert "sync_interval: always" in conf
        # And the server runs with it: writes are stored and applied.
        async with SharedContextStore(stack.url, name="agent") as store:
            eid = await store.create_context("./p")
            assert (await store.get_context(eid)).evolution_id == eid
    default = StoreConfig.build({})
    async with LocalStack(tmp_path / "other", default) as stack:
        assert "sync_interval" not in (stack.server.store_dir / "nats-server.conf").read_text()


# -- TTL -----------------------------------------------------------------------------------


async def subscribe(nc: Client, subject: str) -> Subscription:
    sub = await nc.subscribe(subject)
    await nc.flush()
    return sub


async def next_event(sub: Subscription, accept: Callable[[object], bool]) -> object:
    async with asyncio.timeout(10):
        while True:
            msg: Msg = await sub.next_msg(timeout=10)
            event = Decoders.event.decode(msg.data)
            if accept(event):
                return event


async def subjects_of(nc: Client, eid: str) -> dict[str, int]:
    info = await nc.jetstream().stream_info(WRITES_STREAM, subjects_filter=write_filter(None, eid))
    return dict(info.state.subjects or {})


@pytest.fixture
def ttl_config(config: StoreConfig) -> StoreConfig:
    return config.replace(**{"ttl_seconds": 0.3})


async def test_a_context_older_than_the_ttl_leaves_the_state_and_the_stream(
    server: EmbeddedServer, ttl_config: StoreConfig, nc: Client
) -> None:
    async with running_actor(server, ttl_config), SharedContextStore(config=ttl_config) as store:
        eid = await store.create_context("./p")
        events = await subscribe(nc, event_filter("default", eid))
        await store.store_original_analysis(1, {}, [], [])
        assert sum((await subjects_of(nc, eid)).values()) == 2
        # The delete is a write in the log, applied and announced like any other...
        deleted = await next_event(
            events, lambda e: isinstance(e, WriteApplied) and e.kind == "delete"
        )
        assert isinstance(deleted, WriteApplied)
        assert deleted.kind == "delete"
        assert deleted.writer == TTL_WRITER
        # ...and once the context's writes are purged from the stream, that is announced.
        gone = await next_event(events, lambda e: isinstance(e, ContextPruned))
        assert isinstance(gone, ContextPruned)
        assert gone.reason.startswith("ttl:")
        assert gone.seq == deleted.seq
        assert await subjects_of(nc, eid) == {}
        with pytest.raises(ContextNotFoundError):
            await store.get_context(eid)
        assert await store.get_all_contexts() == []
    # A replay of the stream does not bring it back.
    async with running_actor(server, ttl_config, "actor-2") as actor:
        assert actor.state.contexts == {}
        assert actor.recovered_writes == 0


async def test_expiry_never_deletes_a_context_written_since_it_was_judged(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    async with running_actor(server, config) as actor:
        async with SharedContextStore(config=config) as store:
            eid = await store.create_context("./p")
            judged = actor.state.held("default", eid)
            assert judged is not None
            await store.store_original_analysis(1, {}, [], [])  # a write after the judgement

            async def reach(seq: int) -> None:
                raise AssertionError("nothing may be deleted")

            assert await expire(nc.jetstream(), judged, 0.3, reach) is None
            ctx = await store.get_context(eid)
            assert ctx.original_analysis["files_analyzed"] == 1
            assert sum((await subjects_of(nc, eid)).values()) == 2
        assert actor.state.contexts


def test_expired_judges_by_the_last_write() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    old = now - timedelta(seconds=100)
    state = StoreState(Limits(64 * 1024))
    writes = [
        ("idle", old, b'{"type":"create","target_path":"."}'),
        ("busy", old, b'{"type":"create","target_path":"."}'),
        ("idle", old + timedelta(seconds=5), b'{"type":"stage","phase":"research"}'),
        ("busy", now - timedelta(seconds=10), b'{"type":"stage","phase":"research"}'),
        ("new", now, b'{"type":"create","target_path":"."}'),
    ]
    for seq, (eid, at, body) in enumerate(writes, start=1):
        kind = "create" if b"create" in body else "stage"
        stamp = int(at.timestamp() * 1_000_000_000)
        state.apply(
            StoredWrite.received(seq, stamp, write_subject("default", eid, kind), body, None, None)
        )
    assert [c.evolution_id for c in state.idle(60, now)] == ["idle"]


# -- max contexts --------------------------------------------------------------------------


@pytest.fixture
def two_max(config: StoreConfig) -> StoreConfig:
    return config.replace(**{"max_contexts": 2})


@pytest.fixture
async def capped(server: EmbeddedServer, two_max: StoreConfig) -> AsyncIterator[SharedContextStore]:
    async with running_actor(server, two_max), SharedContextStore(config=two_max) as store:
        yield store


async def test_a_create_beyond_max_contexts_prunes_the_oldest_finished_and_announces_it(
    capped: SharedContextStore, nc: Client
) -> None:
    pruned = await subscribe(nc, event_filter("default"))
    first = await capped.create_context("./first")
    second = await capped.create_context("./second")
    await capped.update_phase("completed", second)  # finished, but created after first
    await capped.update_phase("evaluation", first, status="failed", error="boom")
    third = await capped.create_context("./third")  # prunes first: the earliest finished

    event = await next_event(pruned, lambda e: isinstance(e, ContextPruned))
    assert isinstance(event, ContextPruned)
    assert event.evolution_id == first
    assert event.created_by == third
    assert event.status == "failed"
    assert event.seq == capped.last_seq
    assert "max_contexts" in event.reason
    with pytest.raises(ContextNotFoundError):
        await capped.get_context(first)
    ids = [c["evolution_id"] for c in await capped.get_all_contexts()]
    assert ids == [second, third]
    # Its writes stay in the stream (audit trail, history).
    assert [h.kind for h in await capped.history(first)] == ["create", "stage"]

    fourth = await capped.create_context("./fourth")  # prunes second, the only finished one
    event = await next_event(pruned, lambda e: isinstance(e, ContextPruned))
    assert isinstance(event, ContextPruned)
    assert event.evolution_id == second
    assert [c["evolution_id"] for c in await capped.get_all_contexts()] == [third, fourth]


async def test_a_full_store_with_nothing_finished_refuses_new_contexts(
    capped: SharedContextStore, nc: Client
) -> None:
    rejected = await subscribe(nc, error_filter("default"))
    first = await capped.create_context("./first")
    await capped.create_context("./second")
    await capped.update_phase("research", first)  # running, not finished
    with pytest.raises(CapacityError, match="maximum of 2 contexts and none is finished"):
        await capped.create_context("./third")
    event = await next_event(rejected, lambda e: isinstance(e, WriteRejected))
    assert isinstance(event, WriteRejected)
    assert event.code == ErrorCode.CAPACITY
    assert len(await capped.get_all_contexts()) == 2
    # Once one is finished there is room again.
    await capped.update_phase("completed", first)
    third = await capped.create_context("./third")
    assert third in [c["evolution_id"] for c in await capped.get_all_contexts()]


async def test_pruning_is_the_same_on_replay(
    server: EmbeddedServer, two_max: StoreConfig, nc: Client
) -> None:
    async with (
        running_actor(server, two_max) as first_actor,
        SharedContextStore(config=two_max) as store,
    ):
        ids = []
        for n in range(6):
            ids.append(await store.create_context(f"./p{n}"))
            if n != 1:  # all finish but the second, which stays
                await store.update_phase("completed", ids[-1])
        before = dict(first_actor.state.contexts)
    assert [eid for _, eid in before] == [ids[1], ids[5]]
    no_snapshots = two_max.replace(**{"snapshot_every": None, "snapshot_interval": None})
    async with running_actor(server, no_snapshots, "actor-2") as second_actor:
        assert second_actor.state.contexts == before
        assert list(second_actor.state.contexts) == list(before)


# -- max payload ---------------------------------------------------------------------------


async def test_the_actor_enforces_its_limit_on_a_write_whatever_the_writer_checked(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    """Two layers: the client refuses a write over ``max_write`` before sending
    (tests/test_errors.py), and the actor rejects what another writer sent anyway."""
    strict = config.replace(**{"max_write": 2048})
    async with running_actor(server, strict) as actor:
        async with SharedContextStore(config=strict) as store:
            eid = await store.create_context("./p")
        rejected = await subscribe(nc, error_filter("default", eid))
        body = msgspec.json.encode(
            {"type": "original_analysis", "files_analyzed": 1, "metrics": {"x": "y" * 4000}}
        )
        ack = await nc.jetstream().publish(write_subject("default", eid, "original_analysis"), body)
        event = await next_event(rejected, lambda e: isinstance(e, WriteRejected))
        assert isinstance(event, WriteRejected)
        assert event.seq == ack.seq
        assert event.code == ErrorCode.TOO_LARGE
        ctx = actor.state.get("default", eid)
        assert ctx is not None
        assert ctx.original_analysis == {}
        assert "exceeds the limit of 2048 bytes" in ctx.error_log[-1]


async def test_a_writer_name_as_large_as_a_message_does_not_stop_the_actor(
    tmp_path: Path,
) -> None:
    """The actor's event echoes the write's writer header: unbounded, an event for a write
    near the server's max_payload was larger than max_payload, and its publish stopped the
    actor. Events (and history) carry the writer's name cut to ``WRITER_MAX`` characters."""
    limit = 16 * 1024
    async with EmbeddedServer(tmp_path / "nats", max_payload=limit) as small:
        config = StoreConfig.build({}, nats_url=small.url, max_payload=limit)
        raw = await connect(small.url, name="raw")
        async with (
            running_actor(small, config) as actor,
            SharedContextStore(config=config) as store,
        ):
            eid = await store.create_context("./p")
            events = await subscribe(raw, event_filter("default", eid))
            writer = "w" * (limit - 200)
            ack = await raw.jetstream().publish(
                write_subject("default", eid, "stage"),
                b'{"type": "stage", "phase": "research"}',
                headers={HEADER_WRITER: writer},
            )
            event = await next_event(events, lambda e: isinstance(e, WriteApplied))
            assert isinstance(event, WriteApplied)
            assert event.seq == ack.seq
            assert event.writer == f"{'w' * WRITER_MAX}... ({len(writer)} characters)"
            assert actor.running
            await store.update_phase("planning", evolution_id=eid)
            assert (await store.get_context(eid)).current_phase == "planning"
        await raw.close()
