"""One store, several actors: exactly one leads (applies, announces, acks); the others follow
the write stream as hot standbys, answer reads fenced by ``min_seq``, and take over when the
leader goes. Before: two actors both consumed the durable consumer and split the writes
("not found" on half of them, reads timing out), with no warning.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from test_recovery import applied_events
from workload import (
    ActorProcess,
    Expected,
    contexts_at,
    create_contexts,
    running_actor,
    wait_on,
    write_as,
    writers,
)

from actors import SharedContextStore
from actors.store.lease import LEASE_BUCKET, Holder, lease_key
from broker import EmbeddedServer, StoreConfig
from contracts import Decoders, GetRequest, Query, WriteApplied, encode, event_filter, query_subject

Record = Callable[[str, object], None]


async def test_a_second_actor_stands_by_serves_fenced_reads_and_takes_over(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    async with running_actor(server, config, "first") as first:
        assert first.role == "leader"
        async with running_actor(server, config, "second") as second:
            assert second.role == "standby"
            async with SharedContextStore(config=config, name="agent") as store:
                eid = await store.create_context("./p")
                receipt = await store.store_original_analysis(2, {}, [], [], evolution_id=eid)
                # The standby follows: it reaches the write without applying it for the store.
                async with asyncio.timeout(10):
                    await second.queries.reach(receipt.seq)
                ctx = second.state.get("default", eid)
                assert ctx is not None
                assert ctx.original_analysis["files_analyzed"] == 2
                # Reads fenced by min_seq are right whichever actor answers them.
                for _ in range(20):
                    got = await store.get_context(eid)
                    assert got.version == receipt.seq
                await first.aclose()  # hands the lease over at once
                async with asyncio.timeout(10):
                    await second.wait_role("leader")
                after = await store.store_external_research(["x"], [], [], evolution_id=eid)
                assert (await store.get_context(eid)).version == after.seq
            assert second.state.applied_seq == after.seq
    events = await applied_events(nc)
    assert set(events.values()) == {1}  # nothing announced twice
    assert sorted(events) == [receipt.seq - 1, receipt.seq, after.seq]


async def test_two_actors_never_split_the_writes(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    expected = Expected()
    async with running_actor(server, config, "a"), running_actor(server, config, "b"):
        owned = await create_contexts(config, clients=2, per_client=3, expected=expected)
        async with writers(config, 2) as clients:
            await asyncio.gather(
                *(write_as(c, eids, 150, expected) for c, eids in zip(clients, owned, strict=True))
            )
        contexts = await contexts_at(nc, expected.max_seq)
    assert expected.lost_and_duplicated(contexts) == (0, 0)
    for eid, log in expected.contexts.items():
        assert log.check(contexts[eid]) == [], eid
    events = await applied_events(nc)
    assert set(events.values()) == {1}
    assert len(events) == expected.writes


async def leader_pid(nc: Client, partition: int | None = None) -> int:
    """The pid of the store's leader, or of one ``partition``'s."""
    kv = await nc.jetstream().key_value(LEASE_BUCKET)
    entry = await kv.get(lease_key(partition))
    assert entry.value is not None
    return msgspec.json.decode(entry.value, type=Holder).pid


async def test_kill_9_of_the_leader_under_load_the_standby_serves_within_5_s(
    server: EmbeddedServer,
    config: StoreConfig,
    nc: Client,
    tmp_path: Path,
    record_property: Record,
) -> None:
    progress = asyncio.Event()
    expected = Expected(progress=progress)
    applied_at: dict[int, float] = {}  # write seq -> when its event was seen

    async def on_event(msg: Msg) -> None:
        event = Decoders.event.decode(msg.data)
        if isinstance(event, WriteApplied):
            applied_at.setdefault(event.seq, perf_counter())
        progress.set()

    await nc.subscribe(event_filter(), cb=on_event)
    await nc.flush()

    until = functools.partial(wait_on, progress)

    one, two = ActorProcess(server.url, tmp_path, "one"), ActorProcess(server.url, tmp_path, "two")
    await one.start()
    await two.start()
    stop = asyncio.Event()
    try:
        owned = await create_contexts(config, clients=4, per_client=8, expected=expected)
        async with asyncio.timeout(90), writers(config, 4) as clients:
            load = asyncio.gather(
                *(
                    write_as(c, eids, 50_000, expected, stop)
                    for c, eids in zip(clients, owned, strict=True)
                )
            )
            await until(lambda: len(applied_at) >= 1500)
            leader = one if await leader_pid(nc) == one.pid else two
            standby = two if leader is one else one
            await leader.kill()
            killed = perf_counter()
            acked_before = expected.max_seq
            # The first write acknowledged after the kill, applied by the new leader.
            await until(lambda: any(s > acked_before for s in applied_at))
            takeover = min(t for s, t in applied_at.items() if s > acked_before) - killed
            target = len(applied_at) + 1000
            await until(lambda: len(applied_at) >= target)
            stop.set()
            await load
            contexts = await contexts_at(nc, expected.max_seq)
            assert await leader_pid(nc) == standby.pid
    finally:
        stop.set()
        await one.stop()
        await two.stop()
    lost, duplicated = expected.lost_and_duplicated(contexts)
    problems = {eid: p for eid, log in expected.contexts.items() if (p := log.check(contexts[eid]))}
    events = await applied_events(nc)
    acked = [s for log in expected.contexts.values() for s in log.seqs]
    unannounced = [s for s in acked if events[s] == 0]
    announced_twice = [s for s, n in events.items() if n > 1]
    figures = {
        "writes": expected.writes,
        "takeover_s": round(takeover, 3),
        "lost": lost,
        "applied_twice": duplicated,
        "unannounced": len(unannounced),
        "announced_twice": len(announced_twice),
    }
    print(f"\nstandby takeover: {figures}")
    for key, value in figures.items():
        record_property(key, value)
    assert (lost, duplicated) == (0, 0), figures
    assert problems == {}
    assert unannounced == []
    assert announced_twice == []
    # Issue 9's target is 5 s, for the intake the store runs on. The public-API intake (a
    # fallback for a nats-py whose internals changed, run by CI on this file too) follows
    # the stream more slowly, and took 8.2 s once in about ten runs on 2 loaded cores: it
    # is held to twice the target, so that a takeover that hangs still fails.
    bound = 10.0 if os.environ.get("CTXSTORE_INTAKE") == "public" else 5.0
    assert takeover < bound, figures


async def test_a_plain_get_is_answered_by_either_actor_with_the_same_context(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    async with running_actor(server, config, "a"), running_actor(server, config, "b") as b:
        async with SharedContextStore(config=config) as store:
            eid = await store.create_context("./p")
            receipt = await store.update_phase("research", eid)
        async with asyncio.timeout(10):
            await b.queries.reach(receipt.seq)
        seen: Counter[int] = Counter()
        for _ in range(30):
            msg = await nc.request(
                query_subject("default", Query.GET),
                encode(GetRequest(evolution_id=eid, min_seq=receipt.seq)),
                timeout=10,
            )
            seen[Decoders.context.decode(msg.data).version] += 1
        assert seen == Counter({receipt.seq: 30})
