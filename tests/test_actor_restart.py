"""A new store actor rebuilds state from the stream, whatever the stream's tail looks like."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from actors import SharedContextStore, StoreActor
from broker import ACTOR_DURABLE, WRITES_STREAM, EmbeddedServer, StoreConfig, connect


async def test_restart_after_the_last_writes_were_deleted(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    conn = await connect(server.url, name="actor-1")
    async with StoreActor(conn, config), SharedContextStore(config=config) as store:
        eid = await store.create_context("./p", ["documentation"])
        await store.store_original_analysis(
            files_analyzed=1, metrics={}, issues=[], improvements=[]
        )
        tail = await store.store_improvement_plan(
            tasks=[], priorities=[], dependencies={}, estimated_impact=0.1
        )
        expected = await store.get_context(eid)
    await conn.close()

    # The stream's last sequence now names a message that no longer exists.
    await nc.jetstream().delete_msg(WRITES_STREAM, tail.seq)

    conn = await connect(server.url, name="actor-2")
    async with asyncio.timeout(10), StoreActor(conn, config) as actor:
        assert actor.state.applied_seq < tail.seq
        assert actor.recovered_writes == 2  # the create and the analysis; the plan is gone
        # Recovery reads through a consumer of its own, gone once the actor serves.
        names = [c.name for c in await nc.jetstream().consumers_info(WRITES_STREAM)]
        assert names == [ACTOR_DURABLE]
        async with SharedContextStore(config=config) as store:
            ctx = await store.get_context(eid)
    await conn.close()
    assert ctx.original_analysis == expected.original_analysis
    assert ctx.improvement_plan == {}  # its write is gone from the log, so from the state


async def test_the_actor_recreates_its_consumer_when_it_is_deleted_under_it(
    store: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    await nc.jetstream().delete_consumer(WRITES_STREAM, ACTOR_DURABLE)
    # Confirmed: it returns only once the actor has applied it.
    async with asyncio.timeout(15):
        await store.update_phase("research")
    ctx = await store.get_context(eid)
    assert ctx.current_phase == "research"
    assert ctx.version == store.last_seq
