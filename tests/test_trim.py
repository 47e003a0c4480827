"""``ctxstore trim``: history is dropped only before the newest verified snapshot, never
without one, and an actor starts after a trim from that snapshot (and refuses to start
without one that covers the cut)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from workload import contexts_at, running_actor

from actors import SharedContextStore
from actors.store.snapshots import SNAPSHOT_BUCKET
from actors.store.trim import TRIMMED_BEFORE, trim_history
from broker import WRITES_STREAM, EmbeddedServer, StoreConfig
from contracts import ConfigError, Stage, StoreUnavailableError


async def _history(config: StoreConfig, writes: int) -> str:
    async with SharedContextStore(config=config, name="writer") as store:
        eid = await store.create_context("./p")
        for n in range(writes):
            await store.update_phase(Stage.RESEARCH, eid, error=f"e-{n}")
    return eid


async def test_nothing_is_trimmed_without_a_verified_snapshot(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = config.replace(snapshot_every=None)
    async with running_actor(server, config):
        await _history(config, 10)
    js = nc.jetstream()
    before = (await js.stream_info(WRITES_STREAM)).state
    with pytest.raises(ConfigError, match="no verified snapshot"):
        await trim_history(js, config, max_age=0)
    with pytest.raises(ConfigError, match="say what to keep"):
        await trim_history(js, config)
    after = (await js.stream_info(WRITES_STREAM)).state
    assert (after.first_seq, after.messages) == (before.first_seq, before.messages)


async def test_a_trim_stops_at_the_newest_snapshot_and_an_actor_starts_from_it(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = config.replace(snapshot_every=40, snapshot_interval=None)
    async with running_actor(server, config) as first:
        eid = await _history(config, 60)
        assert first.snapshots is not None
        await first.snapshots.wait_saved(40)
        snapshot_seq = first.snapshots.saved_seq
        last = first.state.applied_seq
        before = await contexts_at(nc, last)
    assert snapshot_seq < last  # writes after the snapshot: those stay
    js = nc.jetstream()
    # Everything is younger than an hour: nothing goes.
    kept = await trim_history(js, config, max_age=3600)
    assert kept.removed == 0
    assert (await js.stream_info(WRITES_STREAM)).state.first_seq == 1
    # Everything is older than now: only what the snapshot holds goes.
    done = await trim_history(js, config, max_age=0)
    assert (done.snapshot_seq, done.cut, done.removed) == (
        snapshot_seq,
        snapshot_seq + 1,
        snapshot_seq,
    )
    info = await js.stream_info(WRITES_STREAM)
    assert (info.state.first_seq, info.state.last_seq) == (snapshot_seq + 1, last)
    assert (info.config.metadata or {})[TRIMMED_BEFORE] == str(snapshot_seq + 1)
    # A new actor: from the snapshot, then the writes after it; the same contexts.
    async with running_actor(server, config, "after-trim") as second:
        assert second.snapshot_loaded is not None
        assert second.snapshot_loaded.seq == snapshot_seq
        assert second.recovered_writes == last - snapshot_seq
        assert await contexts_at(nc, last) == before
    assert before[eid].error_log[-1] == "e-59"


async def test_an_actor_refuses_a_trimmed_stream_without_a_snapshot_covering_the_cut(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = config.replace(snapshot_every=20, snapshot_interval=None)
    async with running_actor(server, config) as first:
        await _history(config, 30)
        assert first.snapshots is not None
        await first.snapshots.wait_saved(20)
    js = nc.jetstream()
    done = await trim_history(js, config, max_age=0)
    assert done.removed > 0
    bucket = await js.object_store(SNAPSHOT_BUCKET)
    for info in await bucket.list(ignore_deletes=True):  # the snapshots are lost
        await bucket.put(info.name, b"not a snapshot")
    with pytest.raises(ExceptionGroup) as refused:  # (the actor's start raises its group)
        async with running_actor(server, config, "no-snapshot"):
            pass
    assert refused.group_contains(StoreUnavailableError, match=f"trimmed before seq {done.cut}")
