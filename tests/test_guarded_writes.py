"""Idempotent and guarded writes.

A retry after a lost acknowledgement reuses the write's ``Nats-Msg-Id``, so it is stored and
applied once. A write may state the context version it expects (``expected_version=``); the
server itself refuses it when the context moved on, and the client raises ``ConflictError``
saying the current version.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from tcprelay import TcpRelay, forward

from actors import ConflictError, InvalidWriteError, SharedContextStore, StoreTimeoutError
from broker import DUPLICATE_WINDOW_S, WRITES_STREAM, EmbeddedServer, StoreConfig
from contracts import HEADER_MSG_ID, write_filter


def plan(n: int) -> dict[str, Any]:
    return dict(
        tasks=[{"id": f"t{n}"}], priorities=[f"t{n}"], dependencies={}, estimated_impact=0.5
    )


def analysis(n: int) -> dict[str, Any]:
    return dict(files_analyzed=n, metrics={"n": n}, issues=[], improvements=[])


async def stored_count(nc: Client, eid: str) -> int:
    info = await nc.jetstream().stream_info(WRITES_STREAM, subjects_filter=write_filter(None, eid))
    return sum((info.state.subjects or {}).values())


# -- a retry after a lost acknowledgement ----------------------------------------------------


class StallingProxy(TcpRelay):
    """A TCP proxy between a client and the server that can hold back everything the server
    sends: the client's publishes reach the server, their acknowledgements do not (yet)."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def to_client(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        async def held(_: bytes) -> None:
            await self.flowing.wait()

        await forward(src, dst, held)


async def test_a_retry_after_a_lost_ack_reuses_the_msg_id_and_applies_once(
    server: EmbeddedServer, config: StoreConfig, store: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p", ["documentation"])
    # Every attempt the client makes, as the server sees it.
    attempts: asyncio.Queue[Msg] = asyncio.Queue()

    async def seen(msg: Msg) -> None:
        await attempts.put(msg)

    await nc.subscribe(write_filter("default", eid), cb=seen)
    await nc.flush()
    assert server.port is not None
    async with StallingProxy(server.port) as proxy:
        slow_ack = config.replace(**{"nats_url": proxy.url, "request_timeout": 0.5})
        async with SharedContextStore(config=slow_ack, name="agent-retry") as agent:
            await agent.get_context(eid)  # connected through the proxy
            proxy.flowing.clear()  # from now on, acknowledgements are held back
            write = asyncio.create_task(
                agent.store_original_analysis(**analysis(1), evolution_id=eid)
            )
            async with asyncio.timeout(10):
                first = await attempts.get()
                second = await attempts.get()  # the first ack never came: a retry
            proxy.flowing.set()
            async with asyncio.timeout(10):
                receipt = await write
    assert first.headers is not None
    assert second.headers is not None
    assert second.headers[HEADER_MSG_ID] == first.headers[HEADER_MSG_ID]
    assert first.data == second.data
    assert receipt.duplicate  # the server had stored the first attempt
    ctx = await store.get_context(eid)
    assert ctx.original_analysis == analysis(1)
    assert ctx.phase_versions == {"original_analysis": receipt.seq}
    assert await stored_count(nc, eid) == 2  # the create and one analysis, not two
    history = await store.history(eid)
    assert [h.kind for h in history] == ["create", "original_analysis"]


@pytest.mark.parametrize("guard", ["expected_version", "create"])
async def test_a_guarded_retry_after_a_lost_ack_is_a_duplicate_not_a_conflict(
    server: EmbeddedServer, config: StoreConfig, store: SharedContextStore, nc: Client, guard: str
) -> None:
    # The server checks an expected sequence before duplicates: the retry of a guarded write
    # it had stored is refused as "wrong last sequence", naming the write's own sequence.
    eid = await store.create_context("./p")
    version = (await store.get_context(eid)).version
    attempts: asyncio.Queue[Msg] = asyncio.Queue()

    async def seen(msg: Msg) -> None:
        await attempts.put(msg)

    await nc.subscribe(write_filter("default", None), cb=seen)
    await nc.flush()
    assert server.port is not None
    async with StallingProxy(server.port) as proxy:
        slow_ack = config.replace(**{"nats_url": proxy.url, "request_timeout": 0.5})
        async with SharedContextStore(config=slow_ack, name="agent-retry") as agent:
            await agent.get_context(eid)  # connected through the proxy
            proxy.flowing.clear()
            if guard == "create":
                write: asyncio.Future[Any] = asyncio.ensure_future(
                    agent.create_context("./q", evolution_id="evo-guarded")
                )
            else:
                write = asyncio.ensure_future(
                    agent.store_improvement_plan(
                        **plan(1), evolution_id=eid, expected_version=version
                    )
                )
            async with asyncio.timeout(10):
                first = await attempts.get()
                await attempts.get()  # a retry: the first acknowledgement never came
            proxy.flowing.set()
            async with asyncio.timeout(10):
                result = await write
    assert first.headers is not None
    if guard == "create":
        assert result == "evo-guarded"
        assert await stored_count(nc, "evo-guarded") == 1
        assert (await store.get_context("evo-guarded")).target_path == "./q"
    else:
        assert result.duplicate
        assert await stored_count(nc, eid) == 2
        assert (await store.get_context(eid)).version == result.seq


async def test_a_write_that_timed_out_is_retried_safely_with_its_idempotency_key(
    server: EmbeddedServer, config: StoreConfig, store: SharedContextStore, nc: Client
) -> None:
    # The client gave up (StoreTimeoutError) although the server had stored the write: the
    # caller's own retry, with the same key, must not apply it a second time.
    eid = await store.create_context("./p")
    assert server.port is not None
    async with StallingProxy(server.port) as proxy:
        slow_ack = config.replace(**{"nats_url": proxy.url, "request_timeout": 0.3})
        async with SharedContextStore(config=slow_ack, name="agent-retry") as agent:
            await agent.get_context(eid)  # connected through the proxy
            proxy.flowing.clear()
            with pytest.raises(StoreTimeoutError):
                await agent.store_original_analysis(
                    **analysis(1), evolution_id=eid, idempotency_key="analysis-run-1"
                )
            proxy.flowing.set()
            receipt = await agent.store_original_analysis(
                **analysis(1), evolution_id=eid, idempotency_key="analysis-run-1"
            )
    assert receipt.duplicate
    ctx = await store.get_context(eid)
    assert ctx.phase_versions == {"original_analysis": receipt.seq}
    assert await stored_count(nc, eid) == 2
    assert [h.kind for h in await store.history(eid)] == ["create", "original_analysis"]


async def test_an_idempotency_key_names_one_write_of_one_context(
    store: SharedContextStore, nc: Client
) -> None:
    first = await store.create_context("./one")
    second = await store.create_context("./two")
    a = await store.store_original_analysis(**analysis(1), evolution_id=first, idempotency_key="k")
    again = await store.store_original_analysis(
        **analysis(1), evolution_id=first, idempotency_key="k"
    )
    assert (again.seq, again.duplicate, a.duplicate) == (a.seq, True, False)
    # The same key on another context, or on another kind of write, is another write.
    b = await store.store_original_analysis(**analysis(2), evolution_id=second, idempotency_key="k")
    c = await store.update_phase("research", first, idempotency_key="k")
    assert not b.duplicate
    assert not c.duplicate
    assert len({a.seq, b.seq, c.seq}) == 3
    assert (await store.get_context(second)).original_analysis == analysis(2)
    assert await stored_count(nc, first) == 3


async def test_a_create_retried_with_its_key_is_not_a_conflict(store: SharedContextStore) -> None:
    eid = await store.create_context("./p", evolution_id="evo-once", idempotency_key="create-1")
    # A retry of a create that was applied: the same id and key return the same context.
    assert (
        await store.create_context("./p", evolution_id="evo-once", idempotency_key="create-1")
        == eid
    )
    with pytest.raises(ConflictError):  # without the key it is a second create
        await store.create_context("./p", evolution_id="evo-once")
    # A key without an id cannot make a retry safe: each call would pick a new id.
    with pytest.raises(InvalidWriteError, match="evolution_id"):
        await store.create_context("./p", idempotency_key="create-2")


async def test_the_duplicate_window_is_the_documented_two_minutes(
    store: SharedContextStore, nc: Client
) -> None:
    info = await nc.jetstream().stream_info(WRITES_STREAM)
    assert info.config.duplicate_window == DUPLICATE_WINDOW_S == 120


@pytest.mark.parametrize("bad", ["", "has space", "line\nbreak", "x" * 200, 7])
async def test_an_invalid_idempotency_key_is_refused_before_sending(
    store: SharedContextStore, nc: Client, bad: Any
) -> None:
    eid = await store.create_context("./p")
    with pytest.raises(InvalidWriteError, match="idempotency_key"):
        await store.store_original_analysis(**analysis(1), idempotency_key=bad)
    assert await stored_count(nc, eid) == 1


# -- expected versions ---------------------------------------------------------------------


async def test_a_write_at_the_expected_version_lands(store: SharedContextStore) -> None:
    eid = await store.create_context("./p")
    ctx = await store.get_context(eid)
    receipt = await store.store_improvement_plan(**plan(1), expected_version=ctx.version)
    after = await store.get_context(eid)
    assert after.improvement_plan == plan(1)
    assert after.version == receipt.seq
    # The next guarded write names the version the last one produced.
    assert await store.update_phase("planning", expected_version=after.version)
    assert (await store.get_context(eid)).current_phase == "planning"


async def test_a_stale_expected_version_is_refused_with_the_current_version(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    seen_by_a = await store.get_context(eid)
    seen_by_b = await store_b.get_context(eid)
    assert seen_by_a.version == seen_by_b.version
    won = await store.store_improvement_plan(**plan(1), expected_version=seen_by_a.version)

    with pytest.raises(ConflictError) as caught:
        await store_b.store_improvement_plan(
            **plan(2), evolution_id=eid, expected_version=seen_by_b.version
        )
    assert caught.value.current_version == won.seq
    assert f"version {won.seq}" in str(caught.value)
    assert f"expected {seen_by_b.version}" in str(caught.value)

    # The server refused it: nothing was stored, nothing changed.
    assert await stored_count(nc, eid) == 2
    ctx = await store_b.get_context(eid)
    assert ctx.improvement_plan == plan(1)
    assert ctx.version == won.seq
    # Retrying at the version the error named succeeds.
    again = await store_b.store_improvement_plan(
        **plan(2), evolution_id=eid, expected_version=caught.value.current_version
    )
    assert (await store_b.get_context(eid)).improvement_plan == plan(2)
    assert again.seq > won.seq


async def test_any_write_to_the_context_moves_its_version_for_every_phase(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    eid = await store.create_context("./p")
    version = (await store.get_context(eid)).version
    # A write to another phase (another subject of the same context) moves the version too.
    moved = await store.store_external_research(
        best_practices=["x"], references=[], patterns=[], evolution_id=eid
    )
    with pytest.raises(ConflictError) as caught:
        await store_b.update_phase("research", evolution_id=eid, expected_version=version)
    assert caught.value.current_version == moved.seq


async def test_other_contexts_do_not_move_a_contexts_version(
    store: SharedContextStore,
) -> None:
    first = await store.create_context("./one")
    version = (await store.get_context(first)).version
    second = await store.create_context("./two")
    await store.store_original_analysis(**analysis(1), evolution_id=second)
    receipt = await store.store_original_analysis(
        **analysis(2), evolution_id=first, expected_version=version
    )
    assert (await store.get_context(first)).version == receipt.seq


async def test_of_concurrent_guarded_writers_exactly_one_wins(
    actor: object, config: StoreConfig
) -> None:
    clients = [SharedContextStore(config=config, name=f"agent-{i}") for i in range(6)]
    async with contextlib.AsyncExitStack() as stack:
        for c in clients:
            await stack.enter_async_context(c)
        eid = await clients[0].create_context("./p")
        version = (await clients[0].get_context(eid)).version
        results = await asyncio.gather(
            *(
                c.store_improvement_plan(**plan(i), evolution_id=eid, expected_version=version)
                for i, c in enumerate(clients)
            ),
            return_exceptions=True,
        )
        winners = [(i, r) for i, r in enumerate(results) if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, ConflictError)]
        assert len(winners) == 1
        assert len(losers) == len(clients) - 1
        index, receipt = winners[0]
        assert all(e.current_version == receipt.seq for e in losers)
        ctx = await clients[0].get_context(eid)
        assert ctx.improvement_plan == plan(index)
        assert ctx.version == receipt.seq


async def test_expected_version_zero_means_no_write_yet(store: SharedContextStore) -> None:
    eid = await store.create_context("./p")
    with pytest.raises(ConflictError) as caught:
        await store.store_original_analysis(**analysis(1), evolution_id=eid, expected_version=0)
    assert caught.value.current_version == (await store.get_context(eid)).version


@pytest.mark.parametrize("bad", [-1, "3", 2.0, True])
async def test_an_invalid_expected_version_is_refused_before_sending(
    store: SharedContextStore, nc: Client, bad: Any
) -> None:
    eid = await store.create_context("./p")
    with pytest.raises(InvalidWriteError, match="expected_version"):
        await store.store_original_analysis(**analysis(1), expected_version=bad)
    assert await stored_count(nc, eid) == 1
