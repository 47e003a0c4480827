"""Partitioned actors (``CONTEXT_STORE_PARTITIONS`` = P > 1): the write stream stores each
write with nats-server's ``{{partition(P,1,2)}}`` of its tenant and id, each partition's
actor applies only its own writes, and every query is answered right through any actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from time import perf_counter

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from test_recovery import applied_events
from test_standby import leader_pid
from workload import (
    ActorProcess,
    Expected,
    contexts_at,
    create_contexts,
    wait_on,
    write_as,
    writers,
)

from actors import SharedContextStore, StoreActor
from actors.store.lease import lease_key
from actors.store.local import LocalStack
from broker import (
    ACTOR_DURABLE,
    WRITES_STREAM,
    EmbeddedServer,
    StoreConfig,
    actor_consumer_config,
    actor_durable,
    connect,
    writes_stream_config,
)
from contracts import (
    CompareRequest,
    ConfigError,
    ConflictError,
    Decoders,
    ExportRequest,
    GetRequest,
    HistoryRequest,
    ListRequest,
    OutcomeRequest,
    Query,
    StatsRequest,
    WriteApplied,
    WriteSubject,
    encode,
    event_filter,
    partition_of,
    published_subject,
    query_subject,
    service_error,
    stored_partition,
    write_subject,
)

Record = Callable[[str, object], None]


@contextlib.asynccontextmanager
async def partition_actors(
    server: EmbeddedServer, config: StoreConfig, *, read_wait: float = 5.0
) -> AsyncIterator[list[StoreActor]]:
    """One actor per partition, each on its own connection, in this process."""
    async with contextlib.AsyncExitStack() as stack:
        actors = []
        for k in range(config.partitions):
            nc = await connect(server.url, name=f"actor-p{k}", long_running=True)
            stack.push_async_callback(nc.close)
            actor = StoreActor(nc, config, partition=k, read_wait=read_wait)
            actors.append(await stack.enter_async_context(actor))
        yield actors


async def ask(nc: Client, subject: str, body: msgspec.Struct) -> bytes:
    reply = await nc.request(subject, encode(body), timeout=10)
    err = service_error(reply.headers, reply.data)
    assert err is None, f"{subject}: {err}"
    return reply.data


# -- the partition function ----------------------------------------------------------------


@pytest.mark.parametrize("partitions", [2, 3, 7])
async def test_the_client_computes_the_partition_the_server_stores_each_write_in(
    server: EmbeddedServer, config: StoreConfig, nc: Client, partitions: int
) -> None:
    """4,000 ids over 4 tenants, published as writers publish them (with and without a
    role token): every stored subject carries ``partition_of``'s partition."""
    js = nc.jetstream()
    await js.add_stream(writes_stream_config(config.replace(partitions=partitions)))
    ids = [(f"t{i % 4}", f"evo-{i:05d}-{i * 7919 % 100_003:x}") for i in range(4000)]
    for start in range(0, len(ids), 500):
        acks = [
            await js.publish_async(
                write_subject(t, eid, "create", "admin" if i % 2 else None), b"{}"
            )
            for i, (t, eid) in enumerate(ids[start : start + 500], start)
        ]
        await asyncio.wait_for(asyncio.gather(*acks), timeout=30)
    info = await js.stream_info(WRITES_STREAM, subjects_filter=">")
    stored = info.state.subjects or {}
    assert len(stored) == len(ids)
    for subject in stored:
        written = WriteSubject.parse(published_subject(subject, partitioned=True))
        owner = partition_of(written.tenant, written.evolution_id, partitions)
        assert stored_partition(subject) == owner, subject
    assert {stored_partition(s) for s in stored} == set(range(partitions))


def test_one_partition_is_the_store_as_it_was(config: StoreConfig) -> None:
    stream = writes_stream_config(config)
    assert stream.subject_transform is None
    assert stream.subjects == ["ctxstore.write.*.>"]
    consumer = actor_consumer_config(1)
    assert (consumer.durable_name, consumer.filter_subject) == (ACTOR_DURABLE, "ctxstore.write.*.>")
    assert lease_key() == "actor"
    assert query_subject("default", Query.GET) == "ctxstore.query.default.get"


async def test_an_actor_refuses_a_stream_made_for_another_number_of_partitions(
    server: EmbeddedServer, config: StoreConfig, actor: StoreActor
) -> None:
    nc = await connect(server.url, name="second")
    try:
        with pytest.raises(ExceptionGroup) as refused:  # (the actor's start raises its group)
            async with StoreActor(nc, config.replace(partitions=2), partition=1):
                pass
        assert refused.group_contains(ConfigError, match="created with 1 partition")
    finally:
        await nc.close()


# -- writes and queries ----------------------------------------------------------------------


@pytest.mark.parametrize("partitions", [2, 3])
async def test_writes_land_in_their_owners_state_and_every_query_is_answered_through_any_actor(
    server: EmbeddedServer, config: StoreConfig, nc: Client, partitions: int
) -> None:
    config = config.replace(partitions=partitions)
    async with (
        partition_actors(server, config) as actors,
        SharedContextStore(config=config, name="agent") as store,
    ):
        eids = [await store.create_context(f"./p{i}") for i in range(4 * partitions)]
        last = {eid: (await store.update_phase("research", eid)).seq for eid in eids}
        owner = {eid: partition_of("default", eid, partitions) for eid in eids}
        assert set(owner.values()) == set(range(partitions))  # some in every partition
        for k, held in enumerate(actors):
            assert {c.evolution_id for c in held.state.contexts.values()} == {
                e for e in eids if owner[e] == k
            }
        seq = store.last_seq
        for eid in eids:
            # The client asks the owner; the store's subject (any actor), and every
            # partition's subject (another partition passes it on) answer the same.
            want = await store.get_context(eid)
            assert want.version == last[eid]
            for partition in (None, *range(partitions)):
                for op, body in (
                    (Query.GET, GetRequest(evolution_id=eid, min_seq=seq)),
                    (Query.EXPORT, ExportRequest(evolution_id=eid, min_seq=seq)),
                ):
                    got = await ask(nc, query_subject("default", op, partition), body)
                    assert Decoders.context.decode(got) == want, (eid, op, partition)
                cmp = CompareRequest(evolution_id=eid, min_seq=seq)
                got = await ask(nc, query_subject("default", Query.COMPARE, partition), cmp)
                assert Decoders.comparison.decode(got).evolution_id == eid
                history = HistoryRequest(evolution_id=eid, min_seq=seq)
                got = await ask(nc, query_subject("default", Query.HISTORY, partition), history)
                page = Decoders.history_page.decode(got)
                assert [e.seq for e in page.entries][-1] == last[eid]
            outcome = OutcomeRequest(seq=last[eid], min_seq=last[eid])
            for partition in (None, owner[eid]):
                got = await ask(nc, query_subject("default", Query.OUTCOME, partition), outcome)
                decoded = Decoders.outcome.decode(got)
                assert (decoded.applied, decoded.evolution_id) == (True, eid)
        # list and stats gather from every partition; the newest context is found wherever.
        summaries = await store.get_all_contexts()
        assert [s.evolution_id for s in summaries] == eids  # oldest first
        for k in range(partitions):
            listed = await ask(nc, query_subject("default", Query.LIST, k), ListRequest())
            own = Decoders.context_list.decode(listed).contexts
            assert {s.evolution_id for s in own} == {e for e in eids if owner[e] == k}
        newest = await ask(nc, query_subject("default", Query.GET), GetRequest(min_seq=seq))
        assert Decoders.context.decode(newest).evolution_id == eids[-1]
        stats = Decoders.stats_reply.decode(
            await ask(nc, query_subject("default", Query.STATS), StatsRequest(min_seq=seq))
        )
        labelled = {s.labels.get("partition") for family in stats.metrics for s in family.samples}
        assert labelled == {str(k) for k in range(partitions)}
        assert len(stats.actor.split(",")) == partitions
        # What the client reads from the stream itself: history, time travel, bundles.
        eid = eids[0]
        assert [e.seq for e in await store.history(eid)][-1] == last[eid]
        assert (await store.get_context(eid, at=last[eid] - 1)).current_phase == "initialized"
        copy = await store.import_context(await store.export_context(eid), evolution_id="copy")
        assert (await store.get_context(copy)).current_phase == "research"


async def test_a_read_waits_for_its_partition_only(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    """``min_seq`` names a sequence of the whole stream: a partition whose last write is far
    behind it answers at once once it has every write of its own up to it (before: it
    waited for a sequence it never applies, and timed out)."""
    config = config.replace(partitions=2)
    async with (
        partition_actors(server, config, read_wait=30.0) as actors,
        SharedContextStore(config=config, name="agent") as store,
    ):
        by_partition: dict[int, list[str]] = {0: [], 1: []}
        while min(len(v) for v in by_partition.values()) < 2:
            eid = await store.create_context("./p")
            by_partition[partition_of("default", eid, 2)].append(eid)
        quiet = by_partition[1][0]
        for _ in range(20):
            await store.update_phase("research", by_partition[0][0])
        assert actors[1].state.applied_seq < store.last_seq
        began = perf_counter()
        got = await ask(
            nc,
            query_subject("default", Query.GET, 1),
            GetRequest(evolution_id=quiet, min_seq=store.last_seq),
        )
        assert Decoders.context.decode(got).evolution_id == quiet
        assert perf_counter() - began < 30.0  # answered, not timed out (the read wait)
        assert actors[1].queries.seen() >= store.last_seq
        # A write of its own past the fence is waited for, and seen.
        receipt = await store.update_phase("planning", quiet)
        assert (await store.get_context(quiet)).version == receipt.seq


async def test_a_second_create_by_a_role_is_refused_by_the_server(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    """A role's create guards every role's create subject of its id, as stored: with the
    partition token (before: the guard's filter matched nothing in a partitioned stream, and
    a second create was stored, then rejected by the actor)."""
    config = config.replace(partitions=2, role="admin")
    async with (
        partition_actors(server, config),
        SharedContextStore(config=config, name="engine") as store,
    ):
        eid = await store.create_context("./p", evolution_id="evo-twice")
        before = (await nc.jetstream().stream_info(WRITES_STREAM)).state.messages
        with pytest.raises(ConflictError, match="already exists"):
            await store.create_context("./p", evolution_id=eid)
        assert (await nc.jetstream().stream_info(WRITES_STREAM)).state.messages == before


async def test_the_local_store_runs_an_actor_per_partition(tmp_path: Path) -> None:
    config = StoreConfig.build({}, partitions=2, backend="memory")
    async with LocalStack(tmp_path / "home", config) as stack:
        actors = [stack.actor, *(a for _, a in stack.tenant_actors)]
        assert [a.partition for a in actors if a is not None] == [0, 1]
        async with SharedContextStore(config=config.replace(nats_url=stack.url)) as store:
            eids = [await store.create_context(f"./p{i}") for i in range(6)]
            assert [s.evolution_id for s in await store.get_all_contexts()] == eids
            assert [(await store.get_context(e)).evolution_id for e in eids] == eids


# -- failover --------------------------------------------------------------------------------


async def test_a_new_leader_announces_only_what_its_partition_left_unannounced(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    """Its durable consumer gone (so no ack floor says what was announced), a partition's new
    leader finds its partition's last announced write in the events stream, which every
    partition shares (before: it announced all its partition's writes again)."""
    config = config.replace(partitions=2)
    async with partition_actors(server, config) as actors:
        async with SharedContextStore(config=config, name="agent") as store:
            for i in range(12):
                await store.update_phase("research", await store.create_context(f"./p{i}"))
        await actors[0].aclose()
        await nc.jetstream().delete_consumer(WRITES_STREAM, actor_durable(0))
        conn = await connect(server.url, name="next-p0", long_running=True)
        try:
            async with StoreActor(conn, config, partition=0) as successor:
                assert successor.role == "leader"
                assert successor.reannounced == 0
        finally:
            await conn.close()
    events = await applied_events(nc)
    assert len(events) == 24
    assert set(events.values()) == {1}


async def test_a_new_leader_announces_what_its_partition_left_unannounced(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    """Writes stored while a partition had no actor are announced by the next, once."""
    config = config.replace(partitions=2)
    async with (
        partition_actors(server, config) as actors,
        SharedContextStore(config=config, name="agent") as store,
    ):
        eids = [await store.create_context(f"./p{i}") for i in range(12)]  # each announced
        store.confirm_writes = False  # no actor would confirm partition 0's
        await actors[0].aclose()
        for eid in eids:
            await store.update_phase("research", eid)
        conn = await connect(server.url, name="next-p0", long_running=True)
        try:
            async with StoreActor(conn, config, partition=0) as successor:
                orphans = sum(1 for e in eids if partition_of("default", e, 2) == 0)
                assert successor.reannounced == orphans
                assert (await store.get_context(eids[-1])).version > 0
        finally:
            await conn.close()
    events = await applied_events(nc)
    assert len(events) == 24
    assert set(events.values()) == {1}


async def test_kill_9_of_one_partitions_leader_under_load_its_standby_takes_over_that_one_only(
    server: EmbeddedServer,
    config: StoreConfig,
    nc: Client,
    tmp_path: Path,
    record_property: Record,
) -> None:
    progress = asyncio.Event()
    expected = Expected(progress=progress)
    applied_at: dict[int, tuple[float, int]] = {}  # write seq -> when announced, partition

    async def on_event(msg: Msg) -> None:
        event = Decoders.event.decode(msg.data)
        if isinstance(event, WriteApplied):
            k = partition_of(event.tenant, event.evolution_id, 2)
            applied_at.setdefault(event.seq, (perf_counter(), k))
        progress.set()

    await nc.subscribe(event_filter(), cb=on_event)
    await nc.flush()

    until = functools.partial(wait_on, progress)

    env = {"CONTEXT_STORE_PARTITIONS": "2"}
    procs = {
        (k, role): ActorProcess(
            server.url, tmp_path, f"p{k}-{role}", env, serve_args=("--partition", str(k))
        )
        for k in (0, 1)
        for role in ("first", "second")
    }
    for proc in procs.values():  # the first of each partition leads
        await proc.start()
    stop = asyncio.Event()
    try:
        owned = await create_contexts(config, clients=4, per_client=6, expected=expected)
        async with asyncio.timeout(90), writers(config, 4) as clients:
            load = asyncio.gather(
                *(
                    write_as(c, eids, 50_000, expected, stop)
                    for c, eids in zip(clients, owned, strict=True)
                )
            )
            await until(lambda: len(applied_at) >= 600)
            leader = procs[(0, "first")]
            assert await leader_pid(nc, 0) == leader.pid
            other_leader = await leader_pid(nc, 1)
            await leader.kill()
            killed = perf_counter()
            acked_before = expected.max_seq

            def after_kill(partition: int) -> list[float]:
                return [
                    t for s, (t, k) in applied_at.items() if s > acked_before and k == partition
                ]

            await until(lambda: bool(after_kill(0)))
            takeover = min(after_kill(0)) - killed
            # Partition 1 went on meanwhile: it applied writes stored after the kill before
            # partition 0's standby applied any.
            meanwhile = sum(1 for t in after_kill(1) if t < killed + takeover)
            target = len(applied_at) + 600
            await until(lambda: len(applied_at) >= target)
            stop.set()
            await load
            contexts = await contexts_at(nc, expected.max_seq)
            assert await leader_pid(nc, 0) == procs[(0, "second")].pid
            assert await leader_pid(nc, 1) == other_leader
    finally:
        stop.set()
        for proc in procs.values():
            await proc.stop()
    lost, duplicated = expected.lost_and_duplicated(contexts)
    problems = {eid: p for eid, log in expected.contexts.items() if (p := log.check(contexts[eid]))}
    events = await applied_events(nc)
    acked = [s for log in expected.contexts.values() for s in log.seqs]
    figures = {
        "writes": expected.writes,
        "takeover_s": round(takeover, 3),
        "partition_1_applied_meanwhile": meanwhile,
        "lost": lost,
        "applied_twice": duplicated,
        "unannounced": sum(1 for s in acked if events[s] == 0),
        "announced_twice": sum(1 for n in events.values() if n > 1),
    }
    print(f"\npartition takeover: {figures}")
    for key, value in figures.items():
        record_property(key, value)
    assert (lost, duplicated) == (0, 0), figures
    assert problems == {}
    assert (figures["unannounced"], figures["announced_twice"]) == (0, 0), figures
    assert meanwhile > 0, figures


async def test_partitions_are_set_when_the_stream_is_made(nc: Client, config: StoreConfig) -> None:
    js = nc.jetstream()
    await js.add_stream(writes_stream_config(config.replace(partitions=4)))
    made: StreamConfig = (await js.stream_info(WRITES_STREAM)).config
    assert made.subject_transform is not None
    assert "{{partition(4,1,2)}}" in (made.subject_transform.dest or "")
