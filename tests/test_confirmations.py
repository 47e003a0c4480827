"""Confirmed writes learn their outcome from the actor's events: one round trip per write,
not two; a missed event still ends in the actor's own answer."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from actors import SharedContextStore, StoreActor
from actors.client.confirmations import Confirmations
from broker import StoreConfig
from contracts import (
    CreateContext,
    Decoders,
    Query,
    WriteApplied,
    WriteKind,
    WriteRejected,
    encode,
    query_subject,
    write_subject,
)
from contracts.errors import ContextNotFoundError


async def outcome_requests(nc: Client, config: StoreConfig) -> list[Msg]:
    seen: list[Msg] = []

    async def record(msg: Msg) -> None:
        seen.append(msg)

    await nc.subscribe(query_subject(config.tenant, Query.OUTCOME), cb=record)
    await nc.flush()
    return seen


async def test_confirmed_writes_need_no_outcome_request(
    store: SharedContextStore, nc: Client, config: StoreConfig
) -> None:
    asked = await outcome_requests(nc, config)
    eid = await store.create_context("./p")
    await store.update_phase("research")
    await store.store_original_analysis(
        files_analyzed=2, metrics={}, issues=[], improvements=[], evolution_id=eid
    )
    # A rejection is confirmed the same way, and raises.
    with pytest.raises(ContextNotFoundError):
        await store.store_original_analysis(
            files_analyzed=2, metrics={}, issues=[], improvements=[], evolution_id="nobody"
        )
    await nc.flush()
    assert asked == []
    ctx = await store.get_context(eid)
    assert ctx.original_analysis["files_analyzed"] == 2


async def test_outcomes_come_as_events(actor: StoreActor, nc: Client, config: StoreConfig) -> None:
    confirmations = Confirmations(nc, config.tenant)
    js = nc.jetstream()
    await confirmations.listen("evo-1")
    created = await js.publish(
        write_subject(config.tenant, "evo-1", WriteKind.CREATE),
        b'{"type":"create","target_path":"./p"}',
    )
    applied = await confirmations.outcome(created.seq, grace=5.0)
    assert isinstance(applied, WriteApplied)
    assert (applied.seq, applied.evolution_id) == (created.seq, "evo-1")
    bad = await js.publish(
        write_subject(config.tenant, "evo-1", WriteKind.ORIGINAL_ANALYSIS), b'{"type": 1}'
    )
    rejected = await confirmations.outcome(bad.seq, grace=5.0)
    assert isinstance(rejected, WriteRejected)
    assert rejected.code == "invalid"
    await confirmations.aclose()


async def test_an_evolution_not_listened_to_gets_no_outcome(
    actor: StoreActor, nc: Client, config: StoreConfig
) -> None:
    confirmations = Confirmations(nc, config.tenant, evolutions=1)
    await confirmations.listen("evo-a")
    await confirmations.listen("evo-b")  # evo-a's listener goes: one evolution is kept
    ack = await nc.jetstream().publish(
        write_subject(config.tenant, "evo-a", WriteKind.CREATE),
        encode(CreateContext(target_path="./p")),
    )
    assert await confirmations.outcome(ack.seq, grace=0.3) is None
    await confirmations.aclose()


async def test_a_write_whose_event_is_gone_is_confirmed_by_the_actor(
    store: SharedContextStore, nc: Client, config: StoreConfig
) -> None:
    # A retry the server answers as a duplicate has no event of its own (the first write's
    # was announced long ago): the client asks the actor what became of it.
    eid = await store.create_context("./p")
    first = await store.store_original_analysis(
        files_analyzed=3, metrics={}, issues=[], improvements=[], idempotency_key="a-1"
    )
    with pytest.raises(ContextNotFoundError):
        await store.update_phase("research", "nobody", idempotency_key="s-1")
    asked = await outcome_requests(nc, config)
    again = await store.store_original_analysis(
        files_analyzed=3, metrics={}, issues=[], improvements=[], idempotency_key="a-1"
    )
    assert (again.seq, again.duplicate) == (first.seq, True)
    with pytest.raises(ContextNotFoundError):  # the actor's answer: rejected, and why
        await store.update_phase("research", "nobody", idempotency_key="s-1")
    await nc.flush()
    seqs = [Decoders.outcome_request.decode(m.data).seq for m in asked]
    assert len(seqs) == 2  # one question per retried write, none for the first ones
    assert seqs[0] == first.seq
    assert (await store.get_context(eid)).original_analysis["files_analyzed"] == 3
