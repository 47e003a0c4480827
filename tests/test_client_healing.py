"""A client outlives its connection: server outages, and a server that drops it.

nats-py reconnects for a while, then gives up and closes its connection for good; a client
then connects anew on its next call. Meanwhile every failure reaches the caller as one of
``contracts.errors``, never as a nats-py exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from actors import (
    ContextStoreError,
    PayloadTooLargeError,
    SharedContextStore,
    StoreActor,
    StoreTimeoutError,
    StoreUnavailableError,
)
from broker import EmbeddedServer, StoreConfig, connect
from contracts import OriginalAnalysis, Stage, WriteApplied, encode

OUTAGE_ERRORS = (StoreUnavailableError, StoreTimeoutError)


async def until_ok(call: Callable[[], Awaitable[Any]], *, within: float = 30.0) -> Any:
    """The result of ``call`` once it succeeds; it may fail with our errors meanwhile."""
    async with asyncio.timeout(within):
        while True:
            try:
                return await call()
            except OUTAGE_ERRORS:
                continue


async def test_a_write_the_server_would_drop_the_connection_for_is_refused_first(
    tmp_path: Path,
) -> None:
    # The server counts headers in its max_payload, nats-py counts only the body: a body just
    # under the limit with the write's headers goes over it, and the server closes the
    # connection, which nats-py then never reopens.
    limit = 64 * 1024
    async with EmbeddedServer(tmp_path / "nats", max_payload=limit) as server:
        config = StoreConfig.build(
            {}, nats_url=server.url, max_payload=limit, export_path=tmp_path / "exports"
        )
        conn = await connect(server.url, name="actor", long_running=True)
        try:
            async with (
                StoreActor(conn, config),
                SharedContextStore(config=config, timeout=2.0) as store,
            ):
                eid = await store.create_context("./p")
                empty = OriginalAnalysis(
                    files_analyzed=1, metrics={"blob": ""}, issues=[], improvements=[]
                )
                blob = "x" * (limit - len(encode(empty)) - 16)
                with pytest.raises(PayloadTooLargeError, match="bytes"):
                    await store.store_original_analysis(1, {"blob": blob}, [], [])
                # Refused before sending: the connection is intact, the context unchanged.
                ctx = await store.get_context(eid)
                assert ctx.original_analysis == {}
                await store.store_original_analysis(2, {"blob": "small"}, [], [])
                assert (await store.get_context(eid)).original_analysis["files_analyzed"] == 2
        finally:
            await conn.close()


async def test_a_client_heals_after_an_outage_that_outlasted_its_reconnects(
    tmp_path: Path,
) -> None:
    store_dir = tmp_path / "nats"
    server = EmbeddedServer(store_dir)
    await server.start()
    port = server.port
    assert port is not None
    config = StoreConfig.build(
        {}, nats_url=server.url, export_path=tmp_path / "exports", request_timeout=1.0
    )
    actor_conn = await connect(server.url, name="actor", long_running=True)
    actor = StoreActor(actor_conn, config)
    await actor.start()
    store = SharedContextStore(config=config, name="healing")
    try:
        eid = await store.create_context("./p")
        await store.store_original_analysis(1, {}, [], [])
        bundle = await store.export_context(eid)
        watch = await store.watch(eid).open()  # opened before the outage, read after it

        await server.stop()
        # Calls fail with our errors: timeouts while nats-py still reconnects, then
        # "unavailable" once it gave up (a new connection is tried on each call).
        await until_unavailable(store)
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.create_context("./q"),
            lambda: store.update_phase(Stage.RESEARCH, eid),
            lambda: store.store_improvement_plan([], [], {}, 0.1, evolution_id=eid),
            lambda: store.get_context(eid),
            lambda: store.get_context(),
            lambda: store.get_comparison_data(eid),
            lambda: store.get_all_contexts(),
            lambda: store.history(eid),
            lambda: store.diff(eid, 1),
            lambda: store.export_context(eid),
            lambda: store.import_context(bundle, evolution_id="evo-copy"),
            lambda: store.watch(eid).open(),
        ]
        outcomes = await asyncio.gather(*(call() for call in calls), return_exceptions=True)
        for call, outcome in zip(calls, outcomes, strict=True):
            assert isinstance(outcome, OUTAGE_ERRORS), (call, outcome)
        assert not store.is_closed

        server = EmbeddedServer(store_dir, port=port)
        await server.start()
        # The same client works again as soon as the actor is back on the new server.
        ctx = await until_ok(lambda: store.get_context(eid))
        assert ctx.original_analysis["files_analyzed"] == 1
        receipt = await store.update_phase(Stage.RESEARCH, eid)
        assert (await store.get_context(eid)).current_phase is Stage.RESEARCH
        assert [h.kind for h in await store.history(eid)] == [
            "create",
            "original_analysis",
            "stage",
        ]
        # The watch resumes on the client's new connection, after the last event it saw.
        async with asyncio.timeout(20):
            event = await anext(watch)
        assert isinstance(event, WriteApplied)
        assert (event.seq, event.kind) == (receipt.seq, "stage")
        await watch.aclose()
    finally:
        await store.aclose()
        await actor.aclose()
        await actor_conn.close()
        await server.stop()


async def until_unavailable(store: SharedContextStore, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while True:
            try:
                await store.get_all_contexts()
            except StoreUnavailableError:
                return
            except StoreTimeoutError:
                continue
            except ContextStoreError as exc:
                raise AssertionError(f"unexpected {exc!r}") from exc
