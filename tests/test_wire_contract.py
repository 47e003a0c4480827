"""The wire contract works without our client: plain nats-py, hand-written JSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from actors import SharedContextStore, StoreActor
from broker import WRITES_STREAM, EmbeddedServer, StoreConfig, connect
from contracts import (
    HEADER_MSG_ID,
    HEADER_WRITER,
    Decoders,
    Query,
    Stage,
    Status,
    WriteApplied,
    WriteKind,
    event_filter,
    query_subject,
    write_subject,
)

ERROR_CODE = "Nats-Service-Error-Code"

ANALYSIS_JSON = (
    b'{"type": "original_analysis", "files_analyzed": 10,'
    b' "metrics": {"complexity": 3.5, "coverage": 75},'
    b' "issues": [{"type": "code_smell", "location": "file:42"}],'
    b' "improvements": [{"type": "docstring", "priority": "high"}]}'
)
RESEARCH_JSON = (
    b'{"type": "external_research", "best_practices": ["Use type hints"],'
    b' "references": [], "patterns": [{"name": "Factory", "applicability": 0.8}]}'
)


async def events_of(nc: Client, evolution_id: str) -> Subscription:
    sub = await nc.subscribe(event_filter("default", evolution_id))
    await nc.flush()  # live on the server before anything is published
    return sub


async def next_event(sub: Subscription) -> WriteApplied:
    msg = await sub.next_msg(timeout=5)
    event = Decoders.event.decode(msg.data)
    assert isinstance(event, WriteApplied), event
    return event


async def query(nc: Client, op: Query, body: bytes, tenant: str = "default") -> Msg:
    return await nc.request(query_subject(tenant, op), body, timeout=5)


async def test_hand_written_phase_write_is_applied(store: SharedContextStore, nc: Client) -> None:
    eid = await store.create_context("./p")
    events = await events_of(nc, eid)
    js = nc.jetstream()
    subject = write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS)
    assert subject == f"ctxstore.write.default.{eid}.original_analysis"
    ack = await js.publish(subject, ANALYSIS_JSON, headers={HEADER_WRITER: "plain-agent"})
    event = await next_event(events)
    assert (event.seq, event.version, event.kind) == (ack.seq, ack.seq, "original_analysis")
    assert event.evolution_id == eid
    assert event.writer == "plain-agent"
    assert event.size == len(ANALYSIS_JSON)
    ctx = await store.get_context(eid)
    sent = json.loads(ANALYSIS_JSON)
    del sent["type"]  # the tag names the phase; the phase holds the fields
    assert ctx.original_analysis == sent
    assert ctx.original_analysis["improvements"] == [{"type": "docstring", "priority": "high"}]
    assert ctx.phase_versions == {"original_analysis": ack.seq}


async def test_core_publish_without_jetstream_ack_is_applied_too(
    store: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    events = await events_of(nc, eid)
    await nc.publish(write_subject("default", eid, WriteKind.EXTERNAL_RESEARCH), RESEARCH_JSON)
    event = await next_event(events)
    assert event.kind == "external_research"
    ctx = await store.get_context(eid)
    assert ctx.external_research["patterns"] == [{"name": "Factory", "applicability": 0.8}]


async def test_whole_evolution_by_hand_written_json(actor: StoreActor, nc: Client) -> None:
    """Create, write, move stage and read, all as a non-Python client would."""
    js = nc.jetstream()
    eid = "evo-plain-1"

    def subject(kind: str) -> str:
        return f"ctxstore.write.default.{eid}.{kind}"

    await js.publish(
        subject("create"), b'{"type": "create", "target_path": "./x", "focus_areas": ["docs"]}'
    )
    await js.publish(subject("original_analysis"), ANALYSIS_JSON)
    await js.publish(subject("external_research"), RESEARCH_JSON)
    ack = await js.publish(
        subject("stage"), b'{"type": "stage", "phase": "planning", "status": "running"}'
    )

    # min_seq makes the read wait until the actor has applied our last write.
    reply = await query(
        nc, Query.GET, json.dumps({"evolution_id": eid, "min_seq": ack.seq}).encode()
    )
    assert not (reply.headers or {}).get(ERROR_CODE)
    ctx = json.loads(reply.data)
    assert ctx["evolution_id"] == eid
    assert ctx["target_path"] == "./x"
    assert ctx["focus_areas"] == ["docs"]
    assert ctx["original_analysis"]["files_analyzed"] == 10
    assert ctx["external_research"]["best_practices"] == ["Use type hints"]
    assert ctx["current_phase"] == "planning"
    assert ctx["status"] == "running"
    assert ctx["version"] == ack.seq
    assert ctx["created_at"].endswith("Z") or "+" in ctx["created_at"]

    newest = json.loads((await query(nc, Query.GET, b"")).data)
    assert newest["evolution_id"] == eid

    comparison = json.loads(
        (await query(nc, Query.COMPARE, b'{"evolution_id": "evo-plain-1"}')).data
    )
    assert comparison["before"]["files_analyzed"] == 10
    assert comparison["plan"] == {}
    assert comparison["research"]["best_practices"] == ["Use type hints"]

    listing = json.loads((await query(nc, Query.LIST, b"{}")).data)
    assert [c["evolution_id"] for c in listing["contexts"]] == [eid]
    assert listing["applied_seq"] >= ack.seq
    assert listing["contexts"][0]["phases"] == ["original_analysis", "external_research"]

    exported = json.loads((await query(nc, Query.EXPORT, b'{"evolution_id": "evo-plain-1"}')).data)
    assert exported == ctx

    outcome = json.loads((await query(nc, Query.OUTCOME, f'{{"seq": {ack.seq}}}'.encode())).data)
    assert outcome["applied"] is True
    assert outcome["seq"] == ack.seq


async def test_the_client_reads_what_plain_clients_wrote(
    store: SharedContextStore, nc: Client
) -> None:
    js = nc.jetstream()
    eid = "evo-plain-2"
    events = await events_of(nc, eid)
    await js.publish(
        write_subject("default", eid, WriteKind.CREATE), b'{"type": "create", "target_path": "./y"}'
    )
    await js.publish(
        write_subject("default", eid, WriteKind.IMPROVEMENT_PLAN),
        b'{"type": "improvement_plan", "tasks": [{"id": "task-1"}], "priorities": ["task-1"],'
        b' "dependencies": {"task-1": []}, "estimated_impact": 0.7}',
    )
    await next_event(events)
    await next_event(events)
    ctx = await store.get_context(eid)
    assert ctx.target_path == "./y"
    assert ctx.improvement_plan["tasks"] == [{"id": "task-1"}]
    assert ctx.improvement_plan["estimated_impact"] == 0.7
    assert ctx.current_phase is Stage.INITIALIZED
    assert ctx.status is Status.PENDING


@pytest.mark.parametrize(
    ("op", "body", "code"),
    [
        (Query.GET, b'{"evolution_id": "evo-none"}', "404"),
        (Query.COMPARE, b'{"evolution_id": "evo-none"}', "404"),
        (Query.EXPORT, b'{"evolution_id": "evo-none"}', "404"),
        (Query.GET, b"{not json", "400"),
        (Query.GET, b'{"evolution_id": "x", "colour": "red"}', "400"),
        (Query.GET, b'{"min_seq": -1}', "400"),
        (Query.LIST, b'{"min_seq": "soon"}', "400"),
        (Query.OUTCOME, b'{"seq": 0}', "400"),
        (Query.OUTCOME, b"{}", "400"),
    ],
)
async def test_bad_or_unanswerable_queries_get_error_replies(
    store: SharedContextStore, nc: Client, op: Query, body: bytes, code: str
) -> None:
    await store.create_context("./p")
    reply = await query(nc, op, body)
    assert reply.headers is not None
    assert reply.headers[ERROR_CODE] == code
    error = Decoders.error.decode(reply.data)
    assert error.code.status == int(code)
    assert error.message
    # ...and the actor still answers.
    assert (await store.get_context()).target_path == "./p"


async def test_tenants_do_not_see_each_other(store: SharedContextStore, nc: Client) -> None:
    await store.create_context("./p")
    reply = await query(nc, Query.GET, b"{}", tenant="other")
    assert (reply.headers or {}).get(ERROR_CODE) == "404"
    listing = json.loads((await query(nc, Query.LIST, b"{}", tenant="other")).data)
    assert listing["contexts"] == []


@pytest.fixture
async def impatient_actor(server: EmbeddedServer, config: StoreConfig) -> AsyncIterator[StoreActor]:
    conn = await connect(server.url, name="impatient-actor", long_running=True)
    async with StoreActor(conn, config, read_wait=0.3) as running:
        yield running
    await conn.close()


async def test_a_read_for_a_sequence_not_yet_written_times_out_with_504(
    impatient_actor: StoreActor, nc: Client
) -> None:
    reply = await query(nc, Query.LIST, b'{"min_seq": 1000000}')
    assert (reply.headers or {}).get(ERROR_CODE) == "504"
    assert Decoders.error.decode(reply.data).code == "timeout"
    # Other requests are not held up meanwhile.
    assert json.loads((await query(nc, Query.LIST, b"{}")).data)["contexts"] == []


# -- idempotency -------------------------------------------------------------------------


async def test_same_msg_id_twice_applies_once(store: SharedContextStore, nc: Client) -> None:
    eid = await store.create_context("./p")
    events = await events_of(nc, eid)
    js = nc.jetstream()
    subject = write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS)
    first = await js.publish(subject, ANALYSIS_JSON, headers={HEADER_MSG_ID: "write-1"})
    again = await js.publish(subject, ANALYSIS_JSON, headers={HEADER_MSG_ID: "write-1"})
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    other = await js.publish(
        write_subject("default", eid, WriteKind.EXTERNAL_RESEARCH),
        RESEARCH_JSON,
        headers={HEADER_MSG_ID: "write-2"},
    )
    assert other.seq == first.seq + 1
    assert (await next_event(events)).seq == first.seq
    assert (await next_event(events)).seq == other.seq
    ctx = await store.get_context(eid)
    assert ctx.phase_versions == {"original_analysis": first.seq, "external_research": other.seq}
    assert ctx.version == other.seq
    info = await js.stream_info(WRITES_STREAM, subjects_filter=subject)
    assert info.state.subjects == {subject: 1}


# -- service discovery -------------------------------------------------------------------


async def test_micro_discovery_lists_the_query_endpoints(
    store: SharedContextStore, nc: Client
) -> None:
    ping = json.loads((await nc.request("$SRV.PING.ctxstore", b"", timeout=5)).data)
    assert ping["name"] == "ctxstore"
    assert ping["type"] == "io.nats.micro.v1.ping_response"
    info = json.loads((await nc.request("$SRV.INFO.ctxstore", b"", timeout=5)).data)
    assert info["name"] == "ctxstore"
    endpoints = {e["name"]: e["subject"] for e in info["endpoints"]}
    assert endpoints == {
        "get": "ctxstore.query.*.get",
        "list": "ctxstore.query.*.list",
        "compare": "ctxstore.query.*.compare",
        "export": "ctxstore.query.*.export",
        "outcome": "ctxstore.query.*.outcome",
        "history": "ctxstore.query.*.history",
        "stats": "ctxstore.query.*.stats",
    }
    await store.get_all_contexts()
    stats = json.loads((await nc.request("$SRV.STATS.ctxstore", b"", timeout=5)).data)
    by_name: dict[str, Any] = {e["name"]: e for e in stats["endpoints"]}
    assert by_name["list"]["num_requests"] >= 1
    # PING without the service name reaches it too.
    any_ping = json.loads((await nc.request("$SRV.PING", b"", timeout=5)).data)
    assert any_ping["name"] == "ctxstore"
