"""No input stops, wedges or disconnects the store actor or an agent host.

Each test here failed on the store before these fixes (issue: "Nothing lost, nothing stuck"):
a write on a subject that is not UTF-8 stopped the actor for good (every restart replayed it
and stopped again); a query on such a subject left the actor connected but deaf; a query with
a huge id made its error reply exceed the server's max payload, and the server dropped the
actor's connection; a context larger than one message could never be read; one oversized
agent reply stopped a whole agent host.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from rawnats import RawNats
from workload import running_actor

from actors import SharedContextStore, StoreActor
from actors.core.fold import Limits, StoredWrite, StoreState
from actors.evolution.agents import Agent, AgentHost
from broker import WRITES_STREAM, EmbeddedServer, StoreConfig, connect
from contracts import (
    HEADER_RECORDED_TIME,
    AgentReply,
    AgentRequest,
    Decoders,
    ErrorCode,
    OutcomeRequest,
    Query,
    WriteRejected,
    agent_subject,
    encode,
    error_filter,
    query_subject,
    service_error,
    write_subject,
)

MiB = 1024 * 1024


async def outcome_of(nc: Client, seq: int) -> Any:
    msg = await nc.request(
        query_subject("default", Query.OUTCOME),
        encode(OutcomeRequest(seq=seq, min_seq=seq)),
        timeout=10,
    )
    assert service_error(msg.headers, msg.data) is None, msg.data
    return Decoders.outcome.decode(msg.data)


async def last_seq(nc: Client) -> int:
    return int((await nc.jetstream().stream_info(WRITES_STREAM)).state.last_seq)


# -- bad encodings -------------------------------------------------------------------------


async def test_a_write_on_a_subject_that_is_not_utf8_is_rejected_and_restarts_still_work(
    server: EmbeddedServer,
    config: StoreConfig,
    actor: StoreActor,
    store: SharedContextStore,
    nc: Client,
) -> None:
    eid = await store.create_context("./p")
    # Its rejection is announced once stored and applied (a core publish's PONG means the
    # server read it, not that JetStream stored it).
    rejections = await nc.subscribe(error_filter())
    await nc.flush()
    async with RawNats(server.url) as raw:
        await raw.pub(
            b"ctxstore.write.default.\xff\xfe.stage", b'{"type":"stage","phase":"research"}'
        )
        await raw.flush()
    rejected = msgspec.json.decode((await rejections.next_msg(timeout=10)).data, type=WriteRejected)
    await rejections.unsubscribe()
    seq = rejected.seq
    assert seq == await last_seq(nc)
    outcome = await outcome_of(nc, seq)
    assert outcome.applied is False
    assert outcome.code == ErrorCode.INVALID
    assert actor.running
    await store.update_phase("research", eid)  # still applying writes
    assert (await store.get_context(eid)).current_phase == "research"
    # A restart replays the bad write like any other: it starts and serves.
    async with running_actor(server, config, "actor-2") as again:
        assert again.state.applied_seq >= seq
        assert again.state.outcome(seq) == actor.state.outcome(seq)


async def test_a_query_on_a_subject_that_is_not_utf8_leaves_the_actor_serving(
    server: EmbeddedServer, actor: StoreActor, store: SharedContextStore
) -> None:
    eid = await store.create_context("./p")
    async with RawNats(server.url) as raw:
        await raw.sub(b"_INBOX.raw.>")
        await raw.pub(b"ctxstore.query.\xff\xfe.get", b"{}", reply=b"_INBOX.raw.1")
        await raw.pub(
            b"ctxstore.query.default.get",
            b"{}",
            reply=b"_INBOX.raw.2",
            headers=b"NATS/1.0 \xff\xfe\r\nX-\xff: \xfe\r\n\r\n",
        )
        await raw.flush()
    # The actor's connection still reads: it answers the next query.
    assert (await store.get_context(eid)).evolution_id == eid
    assert actor.running


@pytest.fixture
async def small_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """A server with the common 1 MiB max payload (the embedded one allows 8 MiB)."""
    async with EmbeddedServer(tmp_path / "small", max_payload=MiB) as srv:
        yield srv


@pytest.mark.parametrize("op", [Query.GET, Query.COMPARE, Query.EXPORT, Query.HISTORY])
async def test_a_huge_id_gets_a_small_error_and_the_actor_stays_connected(
    small_server: EmbeddedServer, tmp_path: Path, op: Query
) -> None:
    config = StoreConfig.build({}, nats_url=small_server.url, export_path=tmp_path / "x")
    actor_nc = await connect(small_server.url, name="actor", long_running=True)
    try:
        async with (
            StoreActor(actor_nc, config) as actor,
            SharedContextStore(config=config) as store,
        ):
            eid = await store.create_context("./p")
            probe = await connect(small_server.url, name="probe")
            huge = encode({"evolution_id": "x" * 600_000})
            msg = await probe.request(query_subject("default", op), huge, timeout=10)
            error = service_error(msg.headers, msg.data)
            assert error is not None
            assert error.code == ErrorCode.INVALID
            assert len(msg.data) < 4096
            await probe.close()
            assert actor_nc.is_connected
            assert (await store.get_context(eid)).evolution_id == eid
            assert actor.running
    finally:
        await actor_nc.close()


# -- sizes ---------------------------------------------------------------------------------


async def test_a_context_larger_than_one_message_is_read_whole_and_never_stops_the_actor(
    small_server: EmbeddedServer, tmp_path: Path
) -> None:
    config = StoreConfig.build({}, nats_url=small_server.url, export_path=tmp_path / "x")
    actor_nc = await connect(small_server.url, name="actor", long_running=True)
    try:
        async with (
            StoreActor(actor_nc, config) as actor,
            SharedContextStore(config=config) as store,
        ):
            eid = await store.create_context("./p")
            filler = "y" * 1000
            issues = [{"n": i, "note": filler} for i in range(235)]  # about 240 KB a write
            await store.store_original_analysis(1, {}, issues, [], evolution_id=eid)
            await store.store_external_research([filler] * 235, [], [], evolution_id=eid)
            plan = [{"id": f"t{i}", "note": filler} for i in range(235)]
            await store.store_improvement_plan(plan, [], {}, 0.5, evolution_id=eid)
            await store.store_implementation_log([], issues, [], evolution_id=eid)
            await store.store_evaluation_results(issues, {}, 0.5, evolution_id=eid)
            ctx = await store.get_context(eid)  # over 1 MiB: read in chunks
            assert len(encode(ctx)) > MiB
            assert ctx.original_analysis["issues"] == issues
            assert ctx.improvement_plan["tasks"] == plan
            comparison = await store.get_comparison_data(eid)
            assert comparison.before["issues"] == issues
            # A plain request (no chunks asked for) gets a clear error, not a dropped actor.
            probe = await connect(small_server.url, name="probe")
            msg = await probe.request(
                query_subject("default", Query.GET), encode({"evolution_id": eid}), timeout=10
            )
            error = service_error(msg.headers, msg.data)
            assert error is not None
            assert error.code == ErrorCode.TOO_LARGE
            await probe.close()
            assert actor_nc.is_connected
            assert actor.running
    finally:
        await actor_nc.close()


class Chatty(Agent):
    """Replies with more than a message can hold, once; then with a small summary."""

    name = "chatty"
    calls = 0

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        Chatty.calls += 1
        if Chatty.calls == 1:
            return {"blob": "z" * (9 * MiB)}
        return {"ok": True}


async def test_one_oversized_agent_reply_is_that_requests_error_and_the_host_goes_on(
    server: EmbeddedServer, config: StoreConfig, actor: StoreActor, nc: Client
) -> None:
    async with SharedContextStore(config=config, name="chatty-agent") as agent_store:
        eid = await agent_store.create_context("./p")
        host_nc = await connect(server.url, name="host", long_running=True)
        try:
            async with AgentHost(host_nc, [Chatty(agent_store)], tenant="default") as host:
                subject = agent_subject("default", "chatty")
                request = encode(AgentRequest(evolution_id=eid))
                first = await nc.request(subject, request, timeout=30)
                error = service_error(first.headers, first.data)
                assert error is not None
                assert error.code == ErrorCode.TOO_LARGE
                second = await nc.request(subject, request, timeout=30)
                assert service_error(second.headers, second.data) is None
                assert msgspec.json.decode(second.data, type=AgentReply).summary == {"ok": True}
                assert host.running
        finally:
            await host_nc.close()


# -- fail-stop: what it is for -------------------------------------------------------------


class BrokenFold(StoreState):
    """A fold with a bug: it fails on the context called ``evo-bug`` (bad input never makes
    the real fold raise; a bug might, and then the actor must stop, not skip the write)."""

    def apply(self, write: StoredWrite) -> Any:
        if ".evo-bug." in write.subject:
            raise RuntimeError("a bug in the fold")
        return super().apply(write)


async def test_a_write_the_fold_fails_on_stops_the_actor_unacked_and_a_fixed_one_applies_it(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    conn = await connect(server.url, name="broken", long_running=True)
    try:
        broken = StoreActor(conn, config, state=BrokenFold(Limits(config.max_payload)))
        await broken.start()
        js = nc.jetstream()
        ack = await js.publish(
            write_subject("default", "evo-bug", "create"),
            b'{"type":"create","target_path":"./p"}',
        )
        with pytest.raises(BaseExceptionGroup) as stopped:
            async with asyncio.timeout(20):
                await broken.wait()
        assert stopped.group_contains(RuntimeError, match="a bug in the fold")
        assert not broken.running
        with pytest.raises(BaseExceptionGroup):  # closing it reports the failure again
            await broken.aclose()
    finally:
        await conn.close()
    async with running_actor(server, config, "fixed") as fixed:
        assert fixed.state.get("default", "evo-bug") is not None
        assert fixed.state.applied_seq == ack.seq


# -- memory held for rejections ------------------------------------------------------------


async def test_rejected_writes_leave_no_bodies_behind(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    config = config.replace(max_payload=256 * 1024)
    js = nc.jetstream()
    bad = b'{"type":"original_analysis","files_analyzed":"x","pad":"' + b"p" * 250_000 + b'"}'
    async with running_actor(server, config, "measured") as actor:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(600):
                await js.publish(write_subject("default", f"evo-{i % 7}", "original_analysis"), bad)
            last = await last_seq(nc)
            async with asyncio.timeout(60):
                await actor.queries.reach(last)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        outcome = actor.state.outcome(last)
        assert outcome is not None
        assert outcome.applied is False
    # 600 bodies of 250 KB are 150 MB; what outcome needs is a few hundred bytes each.
    assert grown < 8 * MiB, f"the actor grew by {grown / MiB:.1f} MiB"


# -- forged times --------------------------------------------------------------------------


def test_ttl_judges_by_the_streams_time_not_a_time_a_writer_sent() -> None:
    state = StoreState(Limits(64 * 1024))
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    stamp = int(now.timestamp() * 1_000_000_000)
    create = b'{"type":"create","target_path":"./p"}'
    forged = "2001-01-01T00:00:00+00:00"
    state.apply(
        StoredWrite.received(
            1, stamp, write_subject("default", "e", "create"), create, None, forged
        )
    )
    ctx = state.get("default", "e")
    assert ctx is not None
    assert ctx.created_at.year == 2001  # an import's recorded time is kept for display...
    assert state.idle(60, now + timedelta(seconds=30)) == []  # ...never for expiry
    assert [c.evolution_id for c in state.idle(60, now + timedelta(seconds=61))] == ["e"]
    future = (now + timedelta(days=365)).isoformat()
    state.apply(
        StoredWrite.received(
            2, stamp, write_subject("default", "f", "create"), create, None, future
        )
    )
    assert state.get("default", "f").created_at == now  # type: ignore[union-attr]


async def test_a_forged_recorded_time_does_not_make_ttl_delete_a_live_context(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    ttl = config.replace(ttl_seconds=30.0)
    js = nc.jetstream()
    async with running_actor(server, ttl, "ttl") as actor:
        ack = await js.publish(
            write_subject("default", "evo-live", "create"),
            b'{"type":"create","target_path":"./p"}',
            headers={HEADER_RECORDED_TIME: "2001-01-01T00:00:00+00:00"},
        )
        async with asyncio.timeout(10):
            await actor.queries.reach(ack.seq)
        assert actor.state.idle(30.0, datetime.now(UTC)) == []
        assert actor.state.get("default", "evo-live") is not None


# -- a recreated write stream --------------------------------------------------------------


async def test_writes_to_a_recreated_stream_are_applied_and_readable(
    actor: StoreActor, store: SharedContextStore, nc: Client
) -> None:
    for _ in range(5):
        await store.create_context("./old")
    created = await nc.subscribe(f"$JS.EVENT.ADVISORY.STREAM.CREATED.{WRITES_STREAM}")
    await nc.flush()
    await nc.jetstream().delete_stream(WRITES_STREAM)
    await created.next_msg(timeout=20)  # the actor noticed, and created it again
    eid = await store.create_context("./new")  # confirmed: the actor applied it
    assert (await store.get_context(eid)).target_path == "./new"
    assert actor.state.applied_seq == await last_seq(nc)
    assert {c.target_path for c in actor.state.contexts.values()} == {"./new"}


async def test_outcome_never_says_applied_for_a_write_not_applied_and_names_its_context(
    actor: StoreActor, store: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    receipt = await store.store_original_analysis(1, {}, [], [], evolution_id=eid)
    outcome = await outcome_of(nc, receipt.seq)
    assert outcome.applied is True
    assert outcome.evolution_id == eid
    msg = await nc.request(
        query_subject("default", Query.OUTCOME),
        encode(OutcomeRequest(seq=receipt.seq + 1000)),
        timeout=15,
    )
    error = service_error(msg.headers, msg.data)
    assert error is not None  # not "applied": the store has not applied such a write
    assert error.code == ErrorCode.TIMEOUT
