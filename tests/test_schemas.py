"""The wire contract's documents: the checked-in files are what the code generates (drift
fails here), real messages of a running store validate against the JSON Schema, the schema
and the decoders agree, and the AsyncAPI document has AsyncAPI 3's structure."""

from __future__ import annotations

import asyncio
import difflib
import importlib.resources
import inspect
import json
import re
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from nats.aio.client import Client
from nats.aio.msg import Msg
from workload import running_actor

from actors import SharedContextStore, StoreActor
from actors.cli import main
from actors.evolution.agents.base import Agent, AgentHost
from broker import EVENTS_STREAM, WRITES_STREAM, EmbeddedServer, StoreConfig, connect
from contracts import (
    HEADER_EXPECTED_LAST_SUBJECT_SEQ,
    HEADER_MSG_ID,
    Decoders,
    ErrorCode,
    Query,
    WriteKind,
    agent_subject,
    error_filter,
    event_filter,
    query_subject,
    write_subject,
)
from contracts.catalogue import DUPLICATE_WINDOW_S, QUERIES, WRITES
from contracts.queries import MIN_SEQ_WAIT_S
from contracts.schema import (
    ASYNCAPI_FILE,
    JSON_SCHEMA_FILE,
    REGENERATE,
    asyncapi,
    documents,
    json_schema,
    render,
)

SCHEMA = json_schema()
ASYNCAPI = asyncapi()
README = Path(__file__).resolve().parent.parent / "README.md"

_formats = FormatChecker()


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    # RFC 3339 with a zone: what every time the store sends is.
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def validate(name: str, instance: Any) -> None:
    """Validate ``instance`` against the JSON Schema's definition ``name``."""
    schema = {"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]}
    Draft202012Validator(schema, format_checker=_formats).validate(instance)


def is_valid(name: str, instance: Any) -> bool:
    try:
        validate(name, instance)
    except ValidationError:
        return False
    return True


# -- drift -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [JSON_SCHEMA_FILE, ASYNCAPI_FILE])
def test_the_checked_in_documents_are_what_the_code_generates(name: str) -> None:
    shipped = importlib.resources.files("contracts").joinpath("schemas", name).read_text("utf-8")
    generated = documents()[name]
    if shipped != generated:
        diff = difflib.unified_diff(
            shipped.splitlines(), generated.splitlines(), "checked in", "generated", lineterm=""
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"contracts/schemas/{name} is out of date: run `{REGENERATE}`\n{shown}")


def test_ctxstore_schema_prints_and_writes_the_documents(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == render(SCHEMA)
    assert main(["schema", "--format", "asyncapi"]) == 0
    assert json.loads(capsys.readouterr().out) == ASYNCAPI
    assert main(["schema", "--write", str(tmp_path / "out")]) == 0
    for name, text in documents().items():
        assert (tmp_path / "out" / name).read_text("utf-8") == text
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["schema", "--write", str(blocked)]) == 1
    assert "cannot write the documents" in capsys.readouterr().err


def test_the_documents_state_the_limits_the_store_runs_with() -> None:
    read_wait = inspect.signature(StoreActor).parameters["read_wait"].default
    assert read_wait == MIN_SEQ_WAIT_S
    assert f"waiting up to {MIN_SEQ_WAIT_S:g} s" in ASYNCAPI["info"]["description"]
    msg_id = SCHEMA["$defs"]["WriteHeaders"]["properties"][HEADER_MSG_ID]["description"]
    assert f"within {DUPLICATE_WINDOW_S:g} s" in msg_id


# -- the JSON Schema -----------------------------------------------------------------------


def pointers(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "$ref" and isinstance(v, str)]
        return found + [p for v in node.values() for p in pointers(v)]
    if isinstance(node, list):
        return [p for v in node for p in pointers(v)]
    return []


def resolve(document: Mapping[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = document
    for token in pointer[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_json_schema_is_a_valid_2020_12_schema_whose_references_resolve() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    for pointer in pointers(SCHEMA):
        resolve(SCHEMA, pointer)
    defs = SCHEMA["$defs"]
    for doc in WRITES:
        assert doc.body.__name__ in defs
        validate("Write", msgspec.to_builtins(doc.example))
    for query in QUERIES:
        assert {query.request.__name__, query.reply.__name__} <= set(defs)
        validate(query.request.__name__, msgspec.to_builtins(query.example))
    assert set(defs["ErrorCode"]["enum"]) == {c.value for c in ErrorCode}


def test_sent_messages_list_every_field_as_required_received_ones_only_those_without_default() -> (
    None
):
    defs = SCHEMA["$defs"]
    for name in ("EvolutionContext", "HistoryEntry", "WriteApplied", "ContextSummary"):
        assert defs[name]["required"] == list(defs[name]["properties"]), name
    assert defs["OriginalAnalysis"]["required"] == ["type", "files_analyzed"]
    assert defs["OriginalAnalysis"]["additionalProperties"] is False
    assert defs["HistoryRequest"]["required"] == ["evolution_id"]


WRITE_SAMPLES: list[tuple[dict[str, Any], bool]] = [
    ({"type": "create", "target_path": "./p"}, True),
    ({"type": "create", "target_path": ""}, False),
    ({"type": "create"}, False),
    ({"type": "create", "target_path": "./p", "colour": "red"}, False),
    ({"type": "original_analysis", "files_analyzed": 3}, True),
    ({"type": "original_analysis", "files_analyzed": -1}, False),
    ({"type": "original_analysis", "files_analyzed": "3"}, False),
    ({"type": "external_research", "patterns": [{"applicability": 0.5}]}, True),
    ({"type": "external_research", "patterns": [{"applicability": None}]}, True),
    ({"type": "external_research", "patterns": [{"applicability": 1.5}]}, False),
    ({"type": "external_research", "patterns": [{"applicability": True}]}, False),
    ({"type": "improvement_plan", "estimated_impact": 0.7}, True),
    ({"type": "improvement_plan", "estimated_impact": 1.1}, False),
    ({"type": "evaluation_results", "goals_achieved": {"t": True}}, True),
    ({"type": "evaluation_results", "goals_achieved": "all"}, False),
    ({"type": "stage", "phase": "planning", "status": "failed", "error": "x"}, True),
    ({"type": "stage", "phase": "dreaming"}, False),
    ({"type": "agent", "agent": "planner", "activity": "started"}, True),
    ({"type": "agent", "agent": "planner", "activity": "paused"}, False),
    ({"type": "import", "target_path": "./p", "created_at": "2026-01-05T09:30:00Z"}, True),
    ({"type": "import", "target_path": "./p", "created_at": "2026-01-05T09:30:00"}, False),
    ({"type": "delete"}, True),
    ({"type": "teleport"}, False),
]


@pytest.mark.parametrize(("body", "valid"), WRITE_SAMPLES)
def test_the_schema_and_the_store_judge_writes_alike(body: dict[str, Any], valid: bool) -> None:
    try:
        Decoders.write.decode(json.dumps(body).encode())
        decoded = True
    except msgspec.ValidationError:
        decoded = False
    assert (decoded, is_valid("Write", body)) == (valid, valid)


REQUEST_SAMPLES: list[tuple[str, dict[str, Any], bool]] = [
    ("GetRequest", {}, True),
    ("GetRequest", {"evolution_id": None, "min_seq": 3}, True),
    ("GetRequest", {"min_seq": -1}, False),
    ("ListRequest", {"evolution_id": "e"}, False),
    ("OutcomeRequest", {"seq": 0}, False),
    ("OutcomeRequest", {"seq": 4, "min_seq": 4}, True),
    ("HistoryRequest", {"evolution_id": "evo-1", "from_seq": 5, "limit": 1000}, True),
    ("HistoryRequest", {"evolution_id": "evo-1", "limit": 1001}, False),
    ("HistoryRequest", {"evolution_id": "a.b"}, False),
    ("HistoryRequest", {}, False),
]


@pytest.mark.parametrize(("name", "body", "valid"), REQUEST_SAMPLES)
def test_the_schema_and_the_store_judge_requests_alike(
    name: str, body: dict[str, Any], valid: bool
) -> None:
    request = next(q.request for q in QUERIES if q.request.__name__ == name)
    try:
        msgspec.json.decode(json.dumps(body).encode(), type=request)
        decoded = True
    except msgspec.ValidationError:
        decoded = False
    assert (decoded, is_valid(name, body)) == (valid, valid)


# -- real messages of a running store ---------------------------------------------------------


class Checker(Agent):
    name = "research"

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        return {"checked": evolution_id}


async def collect(nc: Client, subject: str) -> list[Msg]:
    """Every message on ``subject`` from now on, as it comes."""
    messages: list[Msg] = []

    async def keep(msg: Msg) -> None:
        messages.append(msg)

    await nc.subscribe(subject, cb=keep)
    return messages


async def request(nc: Client, subject: str, body: dict[str, Any], **headers: str) -> Msg:
    return await nc.request(subject, json.dumps(body).encode(), timeout=10, headers=headers)


def check_reply(reply: Msg, metadata: Mapping[str, str]) -> dict[str, Any]:
    """Validate a query's reply against the schema its endpoint's metadata names."""
    headers = dict(reply.headers or {})
    body: dict[str, Any] = json.loads(reply.data)
    if "Nats-Service-Error-Code" in headers:
        validate("ErrorHeaders", headers)
        validate(metadata["error_schema"].rsplit("/", 1)[1], body)
    else:
        validate(metadata["reply_schema"].rsplit("/", 1)[1], body)
    return body


@pytest.fixture
async def capped(server: EmbeddedServer, config: StoreConfig) -> AsyncIterator[StoreActor]:
    """A store of at most two contexts, so that it prunes and refuses."""
    async with running_actor(server, config.replace(max_contexts=2)) as actor:
        yield actor


async def test_real_messages_of_a_running_store_validate(
    capped: StoreActor, config: StoreConfig, nc: Client, tmp_path: Path
) -> None:
    js = nc.jetstream()
    events = await collect(nc, event_filter("default"))
    rejections = await collect(nc, error_filter("default"))
    await nc.flush()

    # Writes as a plain client publishes them, and JetStream's answers.
    eid = "evo-schema-1"
    create = write_subject("default", eid, WriteKind.CREATE)
    first = {HEADER_MSG_ID: "schema-create-1", HEADER_EXPECTED_LAST_SUBJECT_SEQ: "0"}
    body = {"type": "create", "target_path": "./p", "focus_areas": ["documentation"]}
    validate("Write", body)
    validate("WriteHeaders", first)
    stored = await request(nc, create, body, **first)
    duplicate = await request(nc, create, body, **{HEADER_MSG_ID: first[HEADER_MSG_ID]})
    # JetStream checks the guard before the duplicate window: a guarded write retried after
    # it was stored is refused (10071), not acknowledged as a duplicate (README says so).
    guarded_retry = await request(nc, create, body, **first)
    too_large = await nc.request(
        write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS), b"x" * 70_000, timeout=10
    )
    for ack in (stored, duplicate):
        validate("PubAck", json.loads(ack.data))
    assert json.loads(duplicate.data)["duplicate"] is True
    assert json.loads(duplicate.data)["seq"] == json.loads(stored.data)["seq"]
    for refused, err_code in ((guarded_retry, 10071), (too_large, 10054)):
        validate("PubError", json.loads(refused.data))
        assert json.loads(refused.data)["error"]["err_code"] == err_code

    async with SharedContextStore(config=config, name="schema-agent") as store:
        store.use(eid)
        await store.update_phase("research")
        await store.store_original_analysis(3, {"complexity": 2.5}, [], [], evolution_id=eid)
        await store.store_external_research(["Use type hints"], [], [{"applicability": 0.4}])
        await store.store_improvement_plan([{"id": "t1"}], ["t1"], {"t1": []}, 0.5)
        await store.store_implementation_log(["a.py"], [{"file": "a.py"}], [{"id": "cp-1"}])
        await store.store_evaluation_results(["t1"], {"delta": 1}, 0.9)
        await store.record_activity("planner", "finished", "ok", evolution_id=eid)
        bad = await js.publish(
            write_subject("default", eid, WriteKind.STAGE), b'{"type": "stage", "phase": "x"}'
        )
        # Agents: a request and its reply, and an error reply.
        async with AgentHost(nc, [Checker(store)], tenant="default"):
            agent = agent_subject("default", "research")
            validate("AgentRequest", {"evolution_id": eid})
            worked = await request(nc, agent, {"evolution_id": eid})
            validate("AgentReply", json.loads(worked.data))
            refused_work = await request(nc, agent, {"evolution": eid})
            validate("ErrorHeaders", dict(refused_work.headers or {}))
            validate("ErrorBody", json.loads(refused_work.data))
        # A second context fills the store; a third is refused; finishing one prunes it.
        other = await store.create_context("./q")
        with pytest.raises(Exception, match="maximum of 2 contexts"):
            await store.create_context("./r", evolution_id="evo-schema-refused")
        await store.update_phase("completed", evolution_id=other)
        third = await store.create_context("./s")
        bundle = Path(await store.export_context(eid, tmp_path / "bundle.json"))
        last = store.last_seq
    validate("Bundle", json.loads(await asyncio.to_thread(bundle.read_text, "utf-8")))

    # Every stored write that the store applied is a valid Write with valid headers.
    for seq in range(1, last + 1):
        written = await js.get_msg(WRITES_STREAM, seq)
        if seq in (bad.seq,) or (written.subject or "").endswith("evo-schema-refused.create"):
            continue
        validate("Write", json.loads(written.data or b""))
        validate("WriteHeaders", dict(written.headers or {}))

    # Every query, by the schemas its endpoint's metadata names.
    info = json.loads((await nc.request("$SRV.INFO.ctxstore", b"", timeout=10)).data)
    metadata = {e["name"]: e["metadata"] for e in info["endpoints"]}
    assert set(metadata) == {op.value for op in Query}
    asks: list[tuple[Query, dict[str, Any]]] = [
        (Query.GET, {"evolution_id": eid, "min_seq": last}),
        (Query.GET, {"evolution_id": "evo-none"}),
        (Query.GET, {"colour": "red"}),
        (Query.LIST, {"min_seq": last}),
        (Query.COMPARE, {"evolution_id": eid}),
        (Query.EXPORT, {"evolution_id": eid}),
        (Query.OUTCOME, {"seq": bad.seq, "min_seq": bad.seq}),
        (Query.OUTCOME, {"seq": last, "min_seq": last}),
        (Query.HISTORY, {"evolution_id": eid, "limit": 3}),
        (Query.HISTORY, {"evolution_id": "evo-schema-refused"}),
        (Query.HISTORY, {"evolution_id": "evo-none"}),
        (Query.STATS, {"min_seq": last}),
    ]
    replies: dict[str, list[dict[str, Any]]] = {}
    for op, body in asks:
        request_schema = metadata[op.value]["request_schema"].rsplit("/", 1)[1]
        assert is_valid(request_schema, body) == (body != {"colour": "red"})
        reply = await request(nc, query_subject("default", op), body)
        replies.setdefault(op.value, []).append(check_reply(reply, metadata[op.value]))
    assert replies["get"][1]["code"] == "not_found"
    assert replies["get"][2]["code"] == "invalid"
    assert replies["outcome"][0]["applied"] is False
    assert replies["history"][0]["next_seq"] is not None
    assert replies["history"][1]["entries"][0]["code"] == "capacity"
    assert replies["export"][0] == replies["get"][0]  # a context, not a bundle
    assert replies["stats"][0]["applied_seq"] >= last

    # Every event: applied, rejected (invalid and capacity) and pruned.
    await nc.flush()
    kinds = set()
    for msg in events + rejections:
        event = json.loads(msg.data)
        validate("Event", event)
        kinds.add(event["type"])
        assert msg.subject.split(".")[3] == event["evolution_id"]
    assert kinds == {"applied", "rejected", "pruned"}, kinds
    assert {json.loads(m.data)["code"] for m in rejections} == {"invalid", "capacity"}
    pruned = [json.loads(m.data) for m in events if m.subject.endswith(".pruned")]
    assert [(p["evolution_id"], p["created_by"]) for p in pruned] == [(other, third)]


@pytest.fixture
async def impatient(server: EmbeddedServer, config: StoreConfig) -> AsyncIterator[StoreActor]:
    conn = await connect(server.url, name="impatient-actor", long_running=True)
    async with StoreActor(conn, config, read_wait=0.2) as actor:
        yield actor
    await conn.close()


async def test_a_timeout_error_reply_validates(impatient: StoreActor, nc: Client) -> None:
    far = 10**6
    for op, body in (
        (Query.LIST, {"min_seq": far}),
        (Query.HISTORY, {"evolution_id": "e", "min_seq": far}),
    ):
        reply = await request(nc, query_subject("default", op), body)
        headers = dict(reply.headers or {})
        error = json.loads(reply.data)
        validate("ErrorHeaders", headers)
        validate("ErrorBody", error)
        assert (headers["Nats-Service-Error-Code"], error["code"]) == ("504", "timeout")


async def test_the_write_streams_duplicate_window_is_the_documented_one(
    actor: StoreActor, nc: Client
) -> None:
    info = await nc.jetstream().stream_info(WRITES_STREAM)
    assert info.config.duplicate_window == DUPLICATE_WINDOW_S
    events = await nc.jetstream().stream_info(EVENTS_STREAM)
    assert events.config.max_age == 7 * 24 * 3600  # as the documents say


async def test_srv_info_points_to_the_documents(actor: StoreActor, nc: Client) -> None:
    info = json.loads((await nc.request("$SRV.INFO.ctxstore", b"", timeout=10)).data)
    assert info["version"] == ASYNCAPI["info"]["version"]
    package = importlib.resources.files("contracts")
    for key in ("json_schema", "asyncapi"):
        path = info["metadata"][key]
        assert path.startswith("contracts/schemas/")
        assert package.joinpath(*path.split("/")[1:]).is_file()
    docs = {JSON_SCHEMA_FILE: SCHEMA, ASYNCAPI_FILE: ASYNCAPI}
    for endpoint in info["endpoints"]:
        meta = endpoint["metadata"]
        for key in ("request_schema", "reply_schema", "error_schema", "asyncapi_operation"):
            file, _, pointer = meta[key].partition("#")
            assert resolve(docs[file], f"#{pointer}"), meta[key]
        operation = resolve(ASYNCAPI, "#" + meta["asyncapi_operation"].partition("#")[2])
        channel = resolve(ASYNCAPI, operation["channel"]["$ref"])
        assert channel["address"].replace("{tenant}", "*") == endpoint["subject"]


# -- the AsyncAPI document --------------------------------------------------------------------

_KEY = re.compile(r"^[a-zA-Z0-9\.\-_]+$")
_ROOT_KEYS = {"asyncapi", "id", "info", "servers", "defaultContentType", "channels"}
_ROOT_KEYS |= {"operations", "components"}
_CHANNEL_KEYS = {"address", "messages", "title", "summary", "description", "servers"}
_CHANNEL_KEYS |= {"parameters", "tags", "externalDocs", "bindings"}
_PARAMETER_KEYS = {"enum", "default", "description", "examples", "location"}
_OPERATION_KEYS = {"action", "channel", "title", "summary", "description", "security", "tags"}
_OPERATION_KEYS |= {"externalDocs", "bindings", "traits", "messages", "reply"}
_MESSAGE_KEYS = {"headers", "payload", "correlationId", "contentType", "name", "title"}
_MESSAGE_KEYS |= {"summary", "description", "tags", "externalDocs", "bindings", "examples"}
_MESSAGE_KEYS |= {"traits"}


def _known(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = {k for k in obj if k not in allowed and not k.startswith("x-")}
    assert not extra, f"{where}: fields AsyncAPI 3.0 does not define: {extra}"


def _schema_validator(ref: str) -> Draft7Validator:
    """A validator for a schema of the document's components (AsyncAPI's schema format is
    JSON Schema draft 07 with a few additions)."""
    return Draft7Validator({"$ref": ref, "components": ASYNCAPI["components"]})


def test_the_asyncapi_document_has_asyncapi_3_structure() -> None:
    doc = ASYNCAPI
    _known(doc, _ROOT_KEYS, "root")
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    for pointer in pointers(doc):
        resolve(doc, pointer)
    components = doc["components"]
    for kind, entries in components.items():
        assert all(_KEY.match(k) for k in entries), kind
    for name, schema in components["schemas"].items():
        Draft7Validator.check_schema(schema)
        assert not isinstance(schema.get("discriminator", ""), dict), name
    for name, channel in doc["channels"].items():
        _check_channel(name, channel)
    for name, operation in doc["operations"].items():
        _check_operation(name, operation)
    for name, message in components["messages"].items():
        _check_message(doc, name, message)


def _check_channel(name: str, channel: dict[str, Any]) -> None:
    _known(channel, _CHANNEL_KEYS, f"channel {name}")
    address = channel["address"]
    assert address is None or isinstance(address, str)
    placeholders = set(re.findall(r"\{(\w+)\}", address or ""))
    assert placeholders == set(channel.get("parameters", {})), name
    for param in channel.get("parameters", {}).values():
        if "$ref" not in param:
            _known(param, _PARAMETER_KEYS, f"parameter of {name}")
    assert channel["messages"], name
    assert all(set(m) == {"$ref"} for m in channel["messages"].values())


def _check_operation(name: str, operation: dict[str, Any]) -> None:
    _known(operation, _OPERATION_KEYS, f"operation {name}")
    assert operation["action"] in ("send", "receive")
    channel = operation["channel"]["$ref"]
    assert channel.startswith("#/channels/")
    # An operation's messages are messages of its channel (AsyncAPI 3.0, Operation).
    for message in operation.get("messages", []):
        assert message["$ref"].startswith(f"{channel}/messages/"), (name, message)
    reply = operation.get("reply")
    if reply is not None:
        assert set(reply) <= {"address", "channel", "messages"}
        for message in reply["messages"]:
            assert message["$ref"].startswith(f"{reply['channel']['$ref']}/messages/")
    if "bindings" in operation:
        assert set(operation["bindings"]["nats"]) == {"queue", "bindingVersion"}


def _check_message(doc: dict[str, Any], name: str, message: dict[str, Any]) -> None:
    _known(message, _MESSAGE_KEYS, f"message {name}")
    assert message["contentType"] == "application/json"
    payload = _schema_validator(message["payload"]["$ref"])
    headers = message.get("headers")
    if headers is not None:
        assert resolve(doc, headers["$ref"])["type"] == "object"
    for example in message.get("examples", []):
        assert set(example) <= {"headers", "payload", "name", "summary"}
        assert {"headers", "payload"} & set(example)
        payload.validate(example["payload"])
        if "headers" in example:
            assert headers is not None
            _schema_validator(headers["$ref"]).validate(example["headers"])


def test_the_asyncapi_document_covers_every_subject_query_write_and_error_code() -> None:
    doc = ASYNCAPI
    assert {op.value for op in Query} < set(doc["operations"])
    assert set(doc["channels"]["write"]["messages"]) == {k.value for k in WriteKind}
    addresses = {c["address"] for c in doc["channels"].values() if c["address"]}
    assert {a.split(".")[1] for a in addresses} == {"write", "event", "error", "query", "agent"}
    codes = set(doc["components"]["schemas"]["ErrorCode"]["enum"])
    assert codes == {c.value for c in ErrorCode}
    for code in ErrorCode:
        assert (
            f"``{code.value}`` ({code.status})"
            in doc["components"]["schemas"]["ErrorCode"]["description"]
        )


# -- the README's examples ------------------------------------------------------------------

_EXAMPLE = re.compile(r"<!-- schema: (\w+) -->\n```json\n(.*?)\n```", re.DOTALL)


def test_every_json_example_in_the_readme_validates() -> None:
    examples = _EXAMPLE.findall(README.read_text("utf-8"))
    assert len(examples) >= 30
    names = set()
    for name, text in examples:
        try:
            validate(name, json.loads(text))
        except (ValidationError, json.JSONDecodeError) as exc:
            pytest.fail(f"README example of {name} does not validate: {exc}\n{text}")
        names.add(name)
    for q in QUERIES:  # one exchange per query at least
        assert {q.request.__name__, q.reply.__name__} <= names, q.op
