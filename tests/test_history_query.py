"""The history query on the wire (``ctxstore.query.<tenant>.history``): the same entries as the
client's ``history()``, in pages that never exceed the server's max_payload."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from actors import SharedContextStore, StoreActor
from broker import EVENTS_STREAM, EmbeddedServer, StoreConfig, connect
from contracts import (
    HEADER_WRITER,
    WRITER_MAX,
    Decoders,
    HistoryPage,
    Query,
    Stage,
    Status,
    WriteKind,
    query_subject,
    service_error,
    write_subject,
)

ERROR_CODE = "Nats-Service-Error-Code"


async def ask(nc: Client, body: dict[str, Any] | bytes, tenant: str = "default") -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await nc.request(query_subject(tenant, Query.HISTORY), data, timeout=10)


async def page(nc: Client, body: dict[str, Any]) -> HistoryPage:
    reply = await ask(nc, body)
    error = service_error(reply.headers, reply.data)
    assert error is None, error
    return Decoders.history_page.decode(reply.data)


async def all_pages(nc: Client, body: dict[str, Any]) -> tuple[list[HistoryPage], list[int]]:
    """Every page from ``body``'s from_seq on, following next_seq; and each reply's size."""
    pages: list[HistoryPage] = []
    sizes: list[int] = []
    request = dict(body)
    while True:
        reply = await ask(nc, request)
        assert service_error(reply.headers, reply.data) is None, reply.data[:300]
        sizes.append(len(reply.data))
        got = Decoders.history_page.decode(reply.data)
        pages.append(got)
        if got.next_seq is None:
            return pages, sizes
        assert got.entries, "a page that is not the last has entries"
        assert got.next_seq > got.entries[-1].seq
        request["from_seq"] = got.next_seq


async def evolution(store: SharedContextStore, other: SharedContextStore, nc: Client) -> str:
    """A context written by two agents and a plain connection, with a rejected write."""
    eid = await store.create_context("./proj", ["documentation"])
    await store.update_phase(Stage.RESEARCH)
    await other.store_external_research(["Use type hints"], [], [], evolution_id=eid)
    await store.store_original_analysis(3, {"complexity": 2.5}, [], [])
    await nc.jetstream().publish(
        write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS),
        b'{"type": "original_analysis", "files_analyzed": -1}',
        headers={HEADER_WRITER: "plain"},
    )
    await store.update_phase(Stage.PLANNING, status=Status.FAILED, error="planner timed out")
    return eid


async def test_wire_history_is_the_clients_history(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await evolution(store, store_b, nc)
    expected = await store.history(eid)
    got = await page(nc, {"evolution_id": eid, "min_seq": store.last_seq})
    assert got.entries == expected
    assert got.evolution_id == eid
    assert got.next_seq is None
    assert got.applied_seq >= store.last_seq
    assert [e.applied for e in got.entries].count(False) == 1
    rejected = next(e for e in got.entries if not e.applied)
    assert (rejected.code, rejected.writer) == ("invalid", "plain")
    assert got.entries[1].stage == "research"


async def test_pages_follow_next_seq_to_the_whole_history(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await evolution(store, store_b, nc)
    await store_b.create_context("./other")  # another context's writes are not listed
    expected = await store.history(eid)
    pages, _ = await all_pages(nc, {"evolution_id": eid, "limit": 2})
    assert [len(p.entries) for p in pages] == [2, 2, 2]
    assert [e for p in pages for e in p.entries] == expected
    # A page can start anywhere; versions and outcomes still come from the whole history.
    middle = await page(nc, {"evolution_id": eid, "from_seq": expected[3].seq, "limit": 2})
    assert middle.entries == expected[3:5]
    assert middle.next_seq == expected[5].seq
    beyond = await page(nc, {"evolution_id": eid, "from_seq": store_b.last_seq + 1})
    assert (beyond.entries, beyond.next_seq) == ([], None)


async def test_history_waits_for_min_seq_and_lists_only_what_the_store_judged(
    store: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    ack = await nc.jetstream().publish(
        write_subject("default", eid, WriteKind.STAGE), b'{"type": "stage", "phase": "research"}'
    )
    got = await page(nc, {"evolution_id": eid, "min_seq": ack.seq})
    assert [e.seq for e in got.entries][-1] == ack.seq
    assert got.entries[-1].stage == "research"
    assert got.applied_seq >= ack.seq


async def test_a_deleted_context_keeps_its_history(store: SharedContextStore, nc: Client) -> None:
    eid = await store.create_context("./p")
    ack = await nc.jetstream().publish(
        write_subject("default", eid, WriteKind.DELETE), b'{"type": "delete", "reason": "done"}'
    )
    got = await page(nc, {"evolution_id": eid, "min_seq": ack.seq})
    assert [e.kind for e in got.entries] == ["create", "delete"]
    assert got.entries[-1].version == 0  # no context after it
    assert (await store.history(eid)) == got.entries


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"evolution_id": "evo-never"}, "404", "not_found"),
        ({}, "400", "invalid"),
        ({"evolution_id": "a.b"}, "400", "invalid"),
        ({"evolution_id": "x" * 65}, "400", "invalid"),
        ({"evolution_id": "e", "limit": 0}, "400", "invalid"),
        ({"evolution_id": "e", "limit": 1001}, "400", "invalid"),
        ({"evolution_id": "e", "from_seq": -1}, "400", "invalid"),
        ({"evolution_id": "e", "colour": "red"}, "400", "invalid"),
        (b"{not json", "400", "invalid"),
    ],
)
async def test_bad_history_requests_get_error_replies(
    store: SharedContextStore, nc: Client, body: dict[str, Any] | bytes, status: str, code: str
) -> None:
    eid = await store.create_context("./p")
    reply = await ask(nc, body)
    assert reply.headers is not None
    assert reply.headers[ERROR_CODE] == status
    error = Decoders.error.decode(reply.data)
    assert (error.code, bool(error.message)) == (code, True)
    assert (await page(nc, {"evolution_id": eid})).entries  # and it still answers


async def test_a_failed_read_is_that_requests_error_and_the_actor_goes_on(
    store: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    # Without the events stream the capacity rejections cannot be read: the read fails.
    await nc.jetstream().delete_stream(EVENTS_STREAM)
    reply = await ask(nc, {"evolution_id": eid})
    assert (reply.headers or {}).get(ERROR_CODE) == "500"
    assert "history read failed" in Decoders.error.decode(reply.data).message
    await store.update_phase(Stage.RESEARCH)
    assert (await store.get_context(eid)).current_phase is Stage.RESEARCH


async def test_history_reads_run_beside_writes_and_each_other(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await evolution(store, store_b, nc)
    expected = await store.history(eid)

    async def writes() -> None:
        other = await store_b.create_context("./busy")
        for _ in range(10):
            await store_b.update_phase(Stage.RESEARCH, evolution_id=other)

    reads = [page(nc, {"evolution_id": eid}) for _ in range(12)]
    results = await asyncio.gather(*reads, writes())
    assert all(got is not None and got.entries == expected for got in results[:-1])


# -- the reply's size --------------------------------------------------------------------

SMALL = 16 * 1024


@pytest.fixture
async def small_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(tmp_path / "nats", max_payload=SMALL) as srv:
        yield srv


@pytest.fixture
async def small_store(
    small_server: EmbeddedServer, tmp_path: Path
) -> AsyncIterator[tuple[SharedContextStore, Client]]:
    config = StoreConfig.build({}, nats_url=small_server.url, max_payload=SMALL)
    actor_nc = await connect(small_server.url, name="small-actor", long_running=True)
    nc = await connect(small_server.url, name="small-raw")
    async with StoreActor(actor_nc, config), SharedContextStore(config=config) as store:
        yield store, nc
    await nc.close()
    await actor_nc.close()


async def test_a_long_history_comes_in_pages_within_max_payload(
    small_store: tuple[SharedContextStore, Client],
) -> None:
    store, nc = small_store
    assert nc.max_payload == SMALL
    eid = await store.create_context("./p")
    js = nc.jetstream()
    # Writes of an unknown kind: rejected, and each entry holds the kind twice (as its kind and
    # in the reason), about 3 KB; with the writer's name, 40 KB of history.
    for i in range(12):
        kind = f"k{i:02d}" + "x" * 1500
        subject = f"ctxstore.write.default.{eid}.{kind}"  # as any client can publish it
        await js.publish(subject, b"{}", headers={HEADER_WRITER: "w" * 1000})
    last = await js.publish(
        write_subject("default", eid, WriteKind.STAGE), b'{"type": "stage", "phase": "research"}'
    )
    expected = await store.history(eid)
    assert len(expected) == 14
    pages, sizes = await all_pages(nc, {"evolution_id": eid, "limit": 1000, "min_seq": last.seq})
    assert len(pages) >= 3
    assert max(sizes) <= SMALL
    assert [e for p in pages for e in p.entries] == expected
    assert sum(not e.applied for e in expected) == 12
    assert expected[1].writer == f"{'w' * WRITER_MAX}... (1000 characters)"
