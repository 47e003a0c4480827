"""Concurrent writers (Phase 1 of the spec) and read-your-writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from actors import ConflictError, SharedContextStore, StoreActor
from broker import WRITES_STREAM, StoreConfig
from contracts import (
    HEADER_WRITER,
    Decoders,
    ExternalResearch,
    OriginalAnalysis,
    WriteKind,
    write_filter,
    write_subject,
)


def research(round_: int) -> dict[str, Any]:
    return dict(
        best_practices=[f"practice {round_}"],
        references=[{"url": f"https://example.org/{round_}", "title": "ref"}],
        patterns=[{"name": "Factory", "applicability": 0.8}],
    )


def analysis(round_: int) -> dict[str, Any]:
    return dict(
        files_analyzed=round_,
        metrics={"complexity": 3.5, "round": round_},
        issues=[{"type": "code_smell", "location": f"file:{round_}"}],
        improvements=[{"type": "docstring", "priority": "high"}],
    )


async def test_two_agents_write_research_and_analysis_at_once(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p", ["documentation"])
    r_research, r_analysis = await asyncio.gather(
        store.store_external_research(**research(1), evolution_id=eid),
        store_b.store_original_analysis(**analysis(1), evolution_id=eid),
    )
    assert r_research.seq != r_analysis.seq
    for client in (store, store_b):
        ctx = await client.get_context(eid)
        assert ctx.external_research == research(1)
        assert ctx.original_analysis == analysis(1)
        assert ctx.phase_versions == {
            "external_research": r_research.seq,
            "original_analysis": r_analysis.seq,
        }
        assert ctx.version == max(r_research.seq, r_analysis.seq)

    # The write log holds both, on their own subjects, each marked with its writer.
    js = nc.jetstream()
    stored_research = await js.get_msg(WRITES_STREAM, r_research.seq)
    stored_analysis = await js.get_msg(WRITES_STREAM, r_analysis.seq)
    assert stored_research.subject == write_subject("default", eid, WriteKind.EXTERNAL_RESEARCH)
    assert stored_analysis.subject == write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS)
    assert stored_research.data is not None
    assert stored_analysis.data is not None
    assert Decoders.write.decode(stored_research.data) == ExternalResearch(**research(1))
    assert Decoders.write.decode(stored_analysis.data) == OriginalAnalysis(**analysis(1))
    assert (stored_research.headers or {}).get(HEADER_WRITER) == "agent-a"
    assert (stored_analysis.headers or {}).get(HEADER_WRITER) == "agent-b"
    info = await js.stream_info(WRITES_STREAM, subjects_filter=write_filter("default", eid))
    assert info.state.subjects == {
        write_subject("default", eid, WriteKind.CREATE): 1,
        write_subject("default", eid, WriteKind.EXTERNAL_RESEARCH): 1,
        write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS): 1,
    }


async def test_many_rounds_of_parallel_research_on_fresh_contexts(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    rounds = 25
    ids = [await store.create_context(f"./p{i}") for i in range(rounds)]
    await asyncio.gather(
        *(
            store.store_external_research(**research(i), evolution_id=eid)
            for i, eid in enumerate(ids)
        ),
        *(
            store_b.store_original_analysis(**analysis(i), evolution_id=eid)
            for i, eid in enumerate(ids)
        ),
    )
    for i, eid in enumerate(ids):
        ctx = await store.get_context(eid)
        assert ctx.external_research == research(i), eid
        assert ctx.original_analysis == analysis(i), eid


async def test_many_rounds_on_one_context_keep_both_phases_current(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    rounds = 30
    for i in range(rounds):
        r_a, r_b = await asyncio.gather(
            store.store_external_research(**research(i), evolution_id=eid),
            store_b.store_original_analysis(**analysis(i), evolution_id=eid),
        )
        ctx = await store_b.get_context(eid)
        assert ctx.external_research == research(i)
        assert ctx.original_analysis == analysis(i)
        assert ctx.phase_versions == {
            "external_research": r_a.seq,
            "original_analysis": r_b.seq,
        }
    js = nc.jetstream()
    info = await js.stream_info(WRITES_STREAM, subjects_filter=write_filter("default", eid))
    assert info.state.subjects == {
        write_subject("default", eid, WriteKind.CREATE): 1,
        write_subject("default", eid, WriteKind.EXTERNAL_RESEARCH): rounds,
        write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS): rounds,
    }


@pytest.fixture
async def agents(actor: StoreActor, config: StoreConfig) -> AsyncIterator[list[SharedContextStore]]:
    clients = [SharedContextStore(config=config, name=f"agent-{i}") for i in range(5)]
    try:
        for c in clients:
            await c.open()
        yield clients
    finally:
        for c in clients:
            await c.aclose()


async def test_five_agents_write_five_phases_of_one_context_at_once(
    store: SharedContextStore, agents: list[SharedContextStore]
) -> None:
    eid = await store.create_context("./p")
    a, b, c, d, e = agents
    receipts = await asyncio.gather(
        a.store_original_analysis(**analysis(7), evolution_id=eid),
        b.store_external_research(**research(7), evolution_id=eid),
        c.store_improvement_plan([{"id": "t1"}], ["t1"], {}, 0.5, evolution_id=eid),
        d.store_implementation_log(["a.py"], [{"file": "a.py"}], [], evolution_id=eid),
        e.store_evaluation_results(["t1"], {}, 1.0, evolution_id=eid),
    )
    ctx = await store.get_context(eid)
    assert ctx.original_analysis == analysis(7)
    assert ctx.external_research == research(7)
    assert ctx.improvement_plan["tasks"] == [{"id": "t1"}]
    assert ctx.implementation_log["modified_files"] == ["a.py"]
    assert ctx.evaluation_results["success_rate"] == 1.0
    assert sorted(ctx.phase_versions.values()) == sorted(r.seq for r in receipts)


async def test_concurrent_creates_of_one_id_let_exactly_one_win(
    store: SharedContextStore, agents: list[SharedContextStore]
) -> None:
    results = await asyncio.gather(
        *(c.create_context(f"./by-{i}", evolution_id="evo-race") for i, c in enumerate(agents)),
        return_exceptions=True,
    )
    winners = [r for r in results if r == "evo-race"]
    losers = [r for r in results if isinstance(r, ConflictError)]
    assert len(winners) == 1
    assert len(losers) == len(agents) - 1
    ctx = await store.get_context("evo-race")
    winner_index = results.index("evo-race")
    assert ctx.target_path == f"./by-{winner_index}"


# -- read-your-writes --------------------------------------------------------------------


@pytest.fixture
async def unconfirmed(actor: StoreActor, config: StoreConfig) -> AsyncIterator[SharedContextStore]:
    """A client that does not wait for the actor after a write: only ``min_seq`` makes its
    reads see its writes."""
    async with SharedContextStore(config=config, name="fast", confirm_writes=False) as client:
        yield client


@pytest.fixture(params=[True, False], ids=["confirmed", "unconfirmed"])
async def writer(
    actor: StoreActor, config: StoreConfig, request: pytest.FixtureRequest
) -> AsyncIterator[SharedContextStore]:
    async with SharedContextStore(config=config, name="w", confirm_writes=request.param) as c:
        yield c


async def test_a_read_right_after_a_write_sees_it(writer: SharedContextStore) -> None:
    client = writer
    eid = await client.create_context("./p")
    assert (await client.get_context()).evolution_id == eid
    await client.store_original_analysis(**analysis(1))
    assert (await client.get_context()).original_analysis == analysis(1)
    await client.store_improvement_plan([{"id": "t"}], [], {}, 0.1)
    assert (await client.get_comparison_data())["plan"]["tasks"] == [{"id": "t"}]
    await client.update_phase("planning")
    assert (await client.get_all_contexts())[0]["current_phase"] == "planning"
    await client.store_implementation_log(["x.py"], [], [])
    path = await client.export_context()
    assert path.endswith(f"{eid}.json")


async def test_many_interleaved_write_read_rounds(writer: SharedContextStore) -> None:
    client = writer
    eid = await client.create_context("./p")
    for i in range(60):
        receipt = await client.store_original_analysis(**analysis(i))
        ctx = await client.get_context(eid)
        assert ctx.original_analysis["files_analyzed"] == i
        assert ctx.version >= receipt.seq


async def test_unconfirmed_writers_in_parallel_each_read_their_own_writes(
    actor: StoreActor, config: StoreConfig
) -> None:
    clients = [
        SharedContextStore(config=config, name=f"fast-{i}", confirm_writes=False) for i in range(4)
    ]
    try:

        async def agent(client: SharedContextStore) -> None:
            eid = await client.create_context(f"./{client.name}")
            for i in range(20):
                await client.store_external_research(**research(i))
                ctx = await client.get_context()
                assert ctx.evolution_id == eid
                assert ctx.external_research == research(i)

        await asyncio.gather(*(agent(c) for c in clients))
    finally:
        for c in clients:
            await c.aclose()


async def test_unconfirmed_write_to_an_unknown_context_returns_a_receipt_only(
    unconfirmed: SharedContextStore, nc: Client
) -> None:
    # Without confirmation, the write is durable but its rejection is not awaited: the
    # error only shows on the error subject.
    sub = await nc.subscribe("ctxstore.error.default.evo-nowhere.>")
    await nc.flush()
    receipt = await unconfirmed.store_original_analysis(
        **analysis(1),
        evolution_id="evo-nowhere",
    )
    msg = await sub.next_msg(timeout=5)
    event = Decoders.event.decode(msg.data)
    assert msgspec.structs.asdict(event)["seq"] == receipt.seq
    assert getattr(event, "code", None) == "not_found"
    await sub.unsubscribe()
