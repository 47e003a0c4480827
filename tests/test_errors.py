"""Rejections and failures: invalid and oversize payloads from any client, unknown ids, no
store actor, no answer. A rejected write changes no phase data, is announced on the error
subject, is logged in the context's error_log, and the actor keeps serving."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from workload import running_actor

from actors import (
    ContextNotFoundError,
    ContextStoreError,
    InvalidWriteError,
    PayloadTooLargeError,
    RequestError,
    SharedContextStore,
    StoreTimeoutError,
    StoreUnavailableError,
)
from broker import WRITES_STREAM, EmbeddedServer, JSErrorCode, StoreConfig, provision
from contracts import (
    Decoders,
    ErrorCode,
    Query,
    WriteApplied,
    WriteKind,
    WriteRejected,
    event_filter,
    query_subject,
    write_subject,
)
from contracts.errors import CapacityError, ConflictError, error_for

VALID_ANALYSIS = (
    b'{"type": "original_analysis", "files_analyzed": 10, "metrics": {"complexity": 3.5},'
    b' "issues": [], "improvements": [{"type": "docstring"}]}'
)


async def stream_last_seq(nc: Client) -> int:
    info = await nc.jetstream().stream_info(WRITES_STREAM)
    return int(info.state.last_seq)


async def subscribe(nc: Client, subject: str) -> Subscription:
    sub = await nc.subscribe(subject)
    await nc.flush()
    return sub


async def next_rejection(sub: Subscription) -> tuple[Msg, WriteRejected]:
    msg = await sub.next_msg(timeout=5)
    event = Decoders.event.decode(msg.data)
    assert isinstance(event, WriteRejected), event
    return msg, event


async def next_applied(sub: Subscription) -> WriteApplied:
    msg = await sub.next_msg(timeout=5)
    event = Decoders.event.decode(msg.data)
    assert isinstance(event, WriteApplied), event
    return event


# kind token of the subject, body, code, what the reason must name
INVALID_WRITES = [
    pytest.param(
        "original_analysis",
        b'{"type": "original_analysis", "files_analyzed": 1',
        "invalid",
        "truncated",
        id="truncated-json",
    ),
    pytest.param(
        "original_analysis",
        b'{"type": "original_analysis", files_analyzed: 1}',
        "invalid",
        "malformed",
        id="malformed-json",
    ),
    pytest.param("original_analysis", b"", "invalid", "truncated", id="empty-body"),
    pytest.param("original_analysis", b"\xff\xfe\x00", "invalid", "malformed", id="not-utf8"),
    pytest.param("original_analysis", b"[1, 2]", "invalid", "object", id="not-an-object"),
    pytest.param(
        "original_analysis", b'{"files_analyzed": 3}', "invalid", "`type`", id="no-type-tag"
    ),
    pytest.param(
        "original_analysis",
        b'{"type": "original_analysis", "files_analyzed": "ten"}',
        "invalid",
        "$.files_analyzed",
        id="files-analyzed-ten",
    ),
    pytest.param(
        "original_analysis",
        b'{"type": "original_analysis", "files_analyzed": -1}',
        "invalid",
        "$.files_analyzed",
        id="files-analyzed-negative",
    ),
    pytest.param(
        "original_analysis",
        b'{"type": "original_analysis", "files_analyzed": 1, "metrics": [1]}',
        "invalid",
        "$.metrics",
        id="metrics-not-object",
    ),
    pytest.param(
        "evaluation_results",
        b'{"type": "evaluation_results", "success_rate": 1.5}',
        "invalid",
        "$.success_rate",
        id="success-rate-1.5",
    ),
    pytest.param(
        "improvement_plan",
        b'{"type": "improvement_plan", "estimated_impact": -0.1}',
        "invalid",
        "$.estimated_impact",
        id="estimated-impact-negative",
    ),
    pytest.param(
        "external_research",
        b'{"type": "external_research", "patterns": [{"name": "F", "applicability": 2}]}',
        "invalid",
        "applicability",
        id="applicability-2",
    ),
    pytest.param(
        "external_research",
        b'{"type": "external_research", "patterns": [{"name": "F", "applicability": "high"}]}',
        "invalid",
        "applicability",
        id="applicability-text",
    ),
    pytest.param(
        "original_analysis",
        b'{"type": "original_analysis", "files_analyzed": 1, "colour": "red"}',
        "invalid",
        "colour",
        id="unknown-field",
    ),
    pytest.param(
        "original_analysis",
        b'{"type": "external_research", "best_practices": ["x"]}',
        "invalid",
        "does not match",
        id="type-not-subject-kind",
    ),
    pytest.param(
        "bogus_kind",
        b'{"type": "original_analysis", "files_analyzed": 1}',
        "invalid",
        "unknown write kind",
        id="unknown-kind-token",
    ),
    pytest.param(
        "stage", b'{"type": "stage", "phase": "dancing"}', "invalid", "$.phase", id="bad-stage"
    ),
    pytest.param(
        "create",
        b'{"type": "create", "target_path": "./again"}',
        "conflict",
        "already exists",
        id="create-existing",
    ),
]


@pytest.mark.parametrize(("kind", "body", "code", "names"), INVALID_WRITES)
async def test_invalid_write_from_a_plain_client_is_rejected_and_changes_nothing(
    store: SharedContextStore, nc: Client, kind: str, body: bytes, code: str, names: str
) -> None:
    eid = await store.create_context("./p")
    await store.store_original_analysis(
        files_analyzed=4, metrics={"m": 1}, issues=[], improvements=[]
    )
    await store.store_improvement_plan([{"id": "t"}], ["t"], {}, 0.5)
    before = await store.get_context()
    errors = await subscribe(nc, f"ctxstore.error.default.{eid}.>")
    applied = await subscribe(nc, event_filter("default", eid))
    js = nc.jetstream()

    ack = await js.publish(f"ctxstore.write.default.{eid}.{kind}", body)

    msg, event = await next_rejection(errors)
    assert msg.subject == f"ctxstore.error.default.{eid}.{kind}"
    assert event.seq == ack.seq
    assert event.evolution_id == eid
    assert event.kind == kind
    assert event.code == code
    assert names in event.reason
    after = await store.get_context()
    for phase in (
        "original_analysis",
        "external_research",
        "improvement_plan",
        "implementation_log",
        "evaluation_results",
        "phase_versions",
        "status",
        "current_phase",
        "target_path",
    ):
        assert getattr(after, phase) == getattr(before, phase), phase
    assert len(after.error_log) == len(before.error_log) + 1
    assert after.error_log[-1].startswith(f"seq {ack.seq} {kind}: ")
    assert names in after.error_log[-1]
    assert after.version == ack.seq

    # The actor keeps serving: the next valid write from the same plain client applies.
    ok = await js.publish(
        write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS), VALID_ANALYSIS
    )
    assert (await next_applied(applied)).seq == ok.seq
    ctx = await store.get_context()
    assert ctx.original_analysis["files_analyzed"] == 10
    assert ctx.phase_versions["original_analysis"] == ok.seq


async def test_a_series_of_rejections_leaves_the_actor_serving(
    store: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    errors = await subscribe(nc, f"ctxstore.error.default.{eid}.>")
    js = nc.jetstream()
    seqs = []
    for param in INVALID_WRITES:
        kind, body = param.values[0], param.values[1]
        assert isinstance(kind, str)
        assert isinstance(body, bytes)
        seqs.append((await js.publish(f"ctxstore.write.default.{eid}.{kind}", body)).seq)
    for seq in seqs:
        _, event = await next_rejection(errors)
        assert event.seq == seq
    await store.store_external_research(["x"], [], [])
    ctx = await store.get_context()
    assert ctx.external_research["best_practices"] == ["x"]
    assert len(ctx.error_log) == len(INVALID_WRITES)
    assert ctx.original_analysis == {}


async def test_an_invalid_write_to_an_unknown_context_creates_nothing(
    store: SharedContextStore, nc: Client
) -> None:
    errors = await subscribe(nc, "ctxstore.error.default.evo-ghost.>")
    await nc.jetstream().publish(
        write_subject("default", "evo-ghost", WriteKind.ORIGINAL_ANALYSIS), VALID_ANALYSIS
    )
    _, event = await next_rejection(errors)
    assert event.code == "not_found"
    with pytest.raises(ContextNotFoundError):
        await store.get_context("evo-ghost")
    assert await store.get_all_contexts() == []


@pytest.mark.parametrize(
    "subject",
    [
        "ctxstore.write.default.evo-a.extra.original_analysis",
        f"ctxstore.write.default.{'x' * 65}.original_analysis",
    ],
)
async def test_a_write_on_a_malformed_subject_is_rejected_and_the_actor_keeps_serving(
    store: SharedContextStore, nc: Client, subject: str
) -> None:
    errors = await subscribe(nc, "ctxstore.error.>")
    ack = await nc.jetstream().publish(subject, VALID_ANALYSIS)
    msg, event = await next_rejection(errors)
    assert event.seq == ack.seq
    assert event.code == "invalid"
    assert msg.subject.startswith("ctxstore.error._.")
    eid = await store.create_context("./p")
    assert (await store.get_context()).evolution_id == eid


# -- oversize ----------------------------------------------------------------------------


async def test_oversize_payload_from_a_plain_client_is_refused_by_jetstream(
    store: SharedContextStore, nc: Client, config: StoreConfig
) -> None:
    eid = await store.create_context("./p")
    await store.store_original_analysis(files_analyzed=1, metrics={}, issues=[], improvements=[])
    before = await store.get_context()
    last = await stream_last_seq(nc)
    padding = "x" * (config.max_payload + 1024)
    body = json.dumps(
        {"type": "original_analysis", "files_analyzed": 2, "metrics": {"blob": padding}}
    ).encode()
    assert len(body) > config.max_payload
    subject = write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS)
    with pytest.raises(nats.js.errors.APIError) as refused:
        await nc.jetstream().publish(subject, body)
    assert refused.value.err_code == JSErrorCode.MESSAGE_SIZE_EXCEEDS_MAXIMUM
    assert await stream_last_seq(nc) == last

    # Without an acknowledgement (core publish) it is dropped all the same: the valid write
    # sent right after it on the same connection is the only one stored.
    applied = await subscribe(nc, event_filter("default", eid))
    await nc.publish(subject, body)
    await nc.publish(subject, VALID_ANALYSIS)
    event = await next_applied(applied)
    assert event.seq == last + 1
    assert await stream_last_seq(nc) == last + 1
    after = await store.get_context()
    assert after.original_analysis["files_analyzed"] == 10
    assert after.error_log == before.error_log


async def test_the_client_refuses_an_oversize_write_before_sending(
    store: SharedContextStore, nc: Client, config: StoreConfig
) -> None:
    await store.create_context("./p")
    last = await stream_last_seq(nc)
    blob = "x" * config.max_payload
    with pytest.raises(PayloadTooLargeError, match="exceeds"):
        await store.store_original_analysis(
            files_analyzed=1, metrics={"blob": blob}, issues=[], improvements=[]
        )
    with pytest.raises(InvalidWriteError):  # it is an invalid write, too
        await store.store_implementation_log([blob], [], [])
    assert await stream_last_seq(nc) == last
    assert (await store.get_context()).original_analysis == {}


async def test_a_write_over_the_streams_limit_is_refused_by_the_server_as_too_large(
    server: EmbeddedServer, config: StoreConfig
) -> None:
    # The stream was provisioned with a lower limit than this client checks for: the server
    # refuses the write (JetStream error 10054), and the client says so in our terms.
    strict = config.replace(**{"max_payload": 2048})
    async with running_actor(server, strict), SharedContextStore(config=config) as loose:
        eid = await loose.create_context("./p")
        with pytest.raises(PayloadTooLargeError, match="10054"):
            await loose.store_original_analysis(1, {"blob": "x" * 4000}, [], [])
        assert (await loose.get_context(eid)).original_analysis == {}


# -- unknown ids -------------------------------------------------------------------------


async def test_unknown_ids_give_not_found(store: SharedContextStore, config: StoreConfig) -> None:
    await store.create_context("./p")
    with pytest.raises(ContextNotFoundError):
        await store.get_context("evo-unknown")
    with pytest.raises(ContextNotFoundError):
        await store.get_comparison_data("evo-unknown")
    with pytest.raises(ContextNotFoundError):
        await store.export_context("evo-unknown")
    assert not (config.export_path / "evo-unknown.json").exists()
    with pytest.raises(ContextNotFoundError):
        await store.mark_failed("x", "evo-unknown")


@pytest.mark.parametrize(
    "write",
    [
        "store_original_analysis",
        "store_external_research",
        "store_improvement_plan",
        "store_implementation_log",
        "store_evaluation_results",
        "update_phase",
    ],
)
async def test_a_write_to_an_unknown_id_raises_not_found_once_confirmed(
    store: SharedContextStore, write: str
) -> None:
    args: dict[str, tuple[object, ...]] = {
        "store_original_analysis": (1, {}, [], []),
        "store_external_research": ([], [], []),
        "store_improvement_plan": ([], [], {}, 0.5),
        "store_implementation_log": ([], [], []),
        "store_evaluation_results": ([], {}, 0.5),
        "update_phase": ("research",),
    }
    with pytest.raises(ContextNotFoundError, match="evo-unknown"):
        await getattr(store, write)(*args[write], evolution_id="evo-unknown")
    assert await store.get_all_contexts() == []


# -- no store actor, no answer -----------------------------------------------------------


@pytest.fixture
async def lonely(config: StoreConfig) -> AsyncIterator[SharedContextStore]:
    """A client on a server where no store actor ever ran."""
    async with SharedContextStore(config=config, name="lonely") as client:
        yield client


async def test_reads_without_a_store_actor_raise_unavailable(lonely: SharedContextStore) -> None:
    with pytest.raises(StoreUnavailableError, match="no store actor"):
        await lonely.get_context()
    with pytest.raises(StoreUnavailableError):
        await lonely.get_context("evo-x")
    with pytest.raises(StoreUnavailableError):
        await lonely.get_all_contexts()
    with pytest.raises(StoreUnavailableError):
        await lonely.get_comparison_data("evo-x")
    with pytest.raises(StoreUnavailableError):
        await lonely.export_context("evo-x")


async def test_a_write_on_a_server_without_the_store_raises_unavailable(
    lonely: SharedContextStore,
) -> None:
    with pytest.raises(StoreUnavailableError):
        await lonely.create_context("./p")


async def test_a_write_with_streams_but_no_actor_raises_unavailable(
    lonely: SharedContextStore, nc: Client, config: StoreConfig
) -> None:
    await provision(nc.jetstream(), config)
    with pytest.raises(StoreUnavailableError):
        await lonely.create_context("./p")


async def test_no_server_at_all_raises_unavailable(tmp_path: Path) -> None:
    async with EmbeddedServer(tmp_path / "gone") as srv:
        url = srv.url
    client = SharedContextStore(nats_url=url, home=tmp_path / "home")
    with pytest.raises(StoreUnavailableError, match="cannot reach NATS"):
        await client.get_context()
    await client.aclose()


async def test_an_actor_that_never_answers_gives_a_timeout(config: StoreConfig, nc: Client) -> None:
    # Something holds the query subjects but never replies (a hung actor).
    hung = await nc.subscribe("ctxstore.query.default.*")
    await nc.flush()
    async with SharedContextStore(config=config, timeout=0.3) as client:
        with pytest.raises(StoreTimeoutError) as raised:
            await client.get_context("evo-x")
        assert isinstance(raised.value, TimeoutError)
        with pytest.raises(StoreTimeoutError):
            await client.get_all_contexts()
    assert hung.pending_msgs >= 1  # the requests did reach it
    await hung.unsubscribe()


async def test_an_error_reply_without_a_json_body_still_raises_a_store_error(
    config: StoreConfig, nc: Client
) -> None:
    async def broken(msg: Msg) -> None:
        headers = {"Nats-Service-Error-Code": "500", "Nats-Service-Error": "boom"}
        await nc.publish(msg.reply, b"not json", headers=headers)

    sub = await nc.subscribe(query_subject("default", Query.GET), cb=broken)
    await nc.flush()
    async with SharedContextStore(config=config) as client:
        with pytest.raises(RequestError) as raised:
            await client.get_context("evo-x")
    assert raised.value.code == ErrorCode.INTERNAL
    await sub.unsubscribe()


# -- the hierarchy -----------------------------------------------------------------------


def test_every_wire_error_code_maps_into_the_hierarchy() -> None:
    expected: dict[ErrorCode, type[ContextStoreError]] = {
        ErrorCode.INVALID: InvalidWriteError,
        ErrorCode.TOO_LARGE: PayloadTooLargeError,
        ErrorCode.NOT_FOUND: ContextNotFoundError,
        ErrorCode.CONFLICT: ConflictError,
        ErrorCode.CAPACITY: CapacityError,
        ErrorCode.TIMEOUT: StoreTimeoutError,
        ErrorCode.INTERNAL: RequestError,
    }
    for code in ErrorCode:
        error = error_for(code, "why")
        assert type(error) is expected[code], code
        assert isinstance(error, ContextStoreError)
        assert "why" in str(error)
        if isinstance(error, RequestError):
            assert error.code == code
    unknown = error_for("teapot", "short and stout")
    assert isinstance(unknown, RequestError)
    assert "teapot" in str(unknown)
    assert issubclass(PayloadTooLargeError, InvalidWriteError)
    assert issubclass(StoreTimeoutError, TimeoutError)
