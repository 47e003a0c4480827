"""The wire contract as documents to generate code from: a JSON Schema (draft 2020-12) of
every message, and an AsyncAPI 3.0 document of every subject, message, reply, header and
error code.

Both are generated from the contracts' structs (``msgspec.json.schema_components``) and the
catalogue of subjects (``contracts.catalogue``) when called; importing this module does
nothing else. Copies are checked in under ``contracts/schemas/`` (shipped with the package)
and a test fails when they differ from what the code generates; ``REGENERATE`` rewrites them.

Messages the store sends (replies, events, bundles) always carry every field, so their
schemas list every field as required; messages it receives (writes, requests) list only the
fields without a default, and reject unknown ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal

import msgspec

from contracts.agents import AGENT_NAMES, AgentReply, AgentRequest
from contracts.bundle import Bundle
from contracts.catalogue import DUPLICATE_WINDOW_S, EVENTS, QUERIES, WRITES, query_doc
from contracts.codec import (
    HEADER_CHUNK,
    HEADER_ENCODING,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    HEADER_MSG_ID,
    HEADER_RECORDED_TIME,
    HEADER_WRITE_ABORT,
    HEADER_WRITE_BYTES,
    HEADER_WRITE_DIGEST,
    HEADER_WRITE_ID,
    HEADER_WRITER,
    WRITER_MAX,
)
from contracts.context import Comparison, EvolutionContext
from contracts.errors import HEADER_SERVICE_ERROR, HEADER_SERVICE_ERROR_CODE, ErrorBody, ErrorCode
from contracts.events import PRUNED_KIND, Event
from contracts.framing import ENCODINGS
from contracts.jetstream import PubAck, PubError
from contracts.queries import (
    MIN_SEQ_WAIT_S,
    ContextList,
    HistoryPage,
    OutcomeReply,
)
from contracts.stats import StatsReply
from contracts.subjects import ROOT, Channel, Query
from contracts.vocabulary import WriteKind
from contracts.writes import Write

__all__ = [
    "ASYNCAPI_FILE",
    "FORMATS",
    "JSON_SCHEMA_FILE",
    "REGENERATE",
    "SCHEMA_DIR",
    "WIRE_VERSION",
    "Format",
    "asyncapi",
    "documents",
    "endpoint_metadata",
    "json_schema",
    "render",
    "service_metadata",
]

WIRE_VERSION: Final = "0.3.0"
SCHEMA_DIR: Final = "contracts/schemas"  # in the repository and in the installed package
JSON_SCHEMA_FILE: Final = "ctxstore.schema.json"
ASYNCAPI_FILE: Final = "asyncapi.json"
REGENERATE: Final = f"ctxstore schema --write {SCHEMA_DIR}"

Format = Literal["jsonschema", "asyncapi"]
FORMATS: Final[tuple[Format, ...]] = ("jsonschema", "asyncapi")

_QUEUE_GROUP: Final = "q"  # nats.micro's default, which the store's endpoints keep

# Roots of the documents: unions first, so that their schemas come back first.
_UNIONS: Final = {"Write": Write, "Event": Event}
_RECEIVED: Final[tuple[type[msgspec.Struct], ...]] = (
    *dict.fromkeys(q.request for q in QUERIES),
    AgentRequest,
)
_SENT: Final = (
    EvolutionContext,
    ContextList,
    Comparison,
    OutcomeReply,
    HistoryPage,
    StatsReply,
    ErrorBody,
    Bundle,
    AgentReply,
)
_SERVER: Final = (PubAck, PubError)  # JetStream's own replies, described as they come

_WRITE_HEADERS: Final[dict[str, Any]] = {
    "title": "WriteHeaders",
    "description": "NATS headers of a write. All are optional.",
    "type": "object",
    "properties": {
        HEADER_MSG_ID: {
            "type": "string",
            "description": (
                "Idempotency key. JetStream stores one write per id within "
                f"{DUPLICATE_WINDOW_S:g} s, across the whole write stream (every tenant, "
                "context and kind): a second publish with the same id is dropped and "
                "acknowledged with duplicate: true and the first one's seq. Use a fresh "
                "unique id (a UUID) per write, and the same id only to retry that write. "
                "JetStream checks a guard (Nats-Expected-Last-Subject-Sequence) first: a "
                "guarded write retried after it was stored is refused with err_code 10071, "
                "not acknowledged as a duplicate."
            ),
        },
        HEADER_WRITER: {
            "type": "string",
            "description": (
                "The writer's name, shown in events and history (not checked; cut to "
                f"{WRITER_MAX} characters there)."
            ),
        },
        HEADER_RECORDED_TIME: {
            "type": "string",
            "format": "date-time",
            "description": (
                "On a write re-published by an import or replay: when it was first written "
                "(RFC 3339 with a zone). The store takes it as the write's time."
            ),
        },
        HEADER_EXPECTED_LAST_SUBJECT_SEQ: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": (
                "Guard, checked by JetStream: store the write only if the last write on this "
                "subject (or, with the next header, on any subject matching its filter) has "
                "this sequence; 0: only if there is none. On a create, 0 refuses an evolution "
                "id already used. A refused write gets err_code 10071 and is not stored."
            ),
        },
        HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: {
            "type": "string",
            "description": (
                "The subject filter the guard applies to. A context's version is the sequence "
                "of its last write on any of its subjects, so a write guarded by a version "
                f"needs this header set to {ROOT}.{Channel.WRITE}.<tenant>.<evolution_id>.> "
                "(without it, the guard compares with the last write of the same kind only)."
            ),
        },
        HEADER_ENCODING: {
            "type": "string",
            "enum": sorted(ENCODINGS),
            "description": (
                "The body (for a write in chunks: the joined chunk bodies, on the first chunk) "
                "is the write's JSON compressed: zstd (one frame) or zlib (RFC 1950)."
            ),
        },
        HEADER_WRITE_ID: {
            "type": "string",
            "pattern": "^[!-~]{1,128}$",
            "description": (
                "A write in chunks: its id, the same on each of its chunks, unique per write. "
                "A write too large for one message is published as n messages on its own "
                "write subject, in order; the store applies it, whole, at the sequence of the "
                "last (its seq and the context's version)."
            ),
        },
        HEADER_CHUNK: {
            "type": "string",
            "pattern": "^[1-9][0-9]*/[1-9][0-9]*$",
            "description": "A write in chunks: this chunk is i of n (1-based), on every chunk.",
        },
        HEADER_WRITE_BYTES: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": (
                "A write in chunks, on its first chunk: the size of its JSON body, decoded. "
                "Over the store's max_write, the write is refused (too_large) at its last chunk."
            ),
        },
        HEADER_WRITE_DIGEST: {
            "type": "string",
            "pattern": "^sha256=[0-9a-f]{64}$",
            "description": (
                "A write in chunks, on its last chunk: the SHA-256 of its joined chunk bodies."
            ),
        },
        HEADER_WRITE_ABORT: {
            "type": "string",
            "description": (
                "With Ctxstore-Write-Id and an empty body: drop that unfinished write in "
                "chunks, for the reason given (recorded as a rejected write, code incomplete). "
                "The store actor sends one for a write with no chunk for chunk_timeout seconds, "
                "and for the oldest when unfinished writes hold too much memory."
            ),
        },
    },
}

_ERROR_HEADERS: Final[dict[str, Any]] = {
    "title": "ErrorHeaders",
    "description": (
        "NATS micro error headers: present on every error reply, absent on a successful one."
    ),
    "type": "object",
    "properties": {
        HEADER_SERVICE_ERROR_CODE: {
            "type": "string",
            "pattern": "^[0-9]{3}$",
            "description": "The status: "
            + ", ".join(f"{c.status} {c.value}" for c in ErrorCode)
            + " (503: an agent that is stopping).",
        },
        HEADER_SERVICE_ERROR: {"type": "string", "description": "The message."},
    },
    "required": [HEADER_SERVICE_ERROR_CODE, HEADER_SERVICE_ERROR],
}


# -- components ------------------------------------------------------------------------


def _components(ref_template: str) -> dict[str, Any]:
    """Every message's schema, named, with references made by ``ref_template``."""
    types: list[Any] = [*_UNIONS.values(), *_RECEIVED, *_SENT, *_SERVER]
    roots, found = msgspec.json.schema_components(types, ref_template=ref_template)
    named: dict[str, Any] = dict(found)
    for name, schema in zip(_UNIONS, roots, strict=False):
        named[name] = {"title": name, **schema}
    received = _reachable(named, ["Write", *(t.__name__ for t in _RECEIVED)])
    sent = _reachable(named, ["Event", *(t.__name__ for t in _SENT)])
    for name in sent:
        schema = named[name]
        if "properties" not in schema:
            continue
        if name in received:
            raise ValueError(f"{name} is both sent and received: its fields cannot be both")
        schema["required"] = list(schema["properties"])
    named["WriteHeaders"] = _WRITE_HEADERS
    named["ErrorHeaders"] = _ERROR_HEADERS
    return dict(sorted(named.items()))


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _reachable(named: dict[str, Any], roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_refs(named[name]))
    return seen


# -- JSON Schema -----------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """One JSON Schema document; each message is a definition under ``$defs``. Validate a
    message against ``{"$ref": "<this document>#/$defs/<Name>"}``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "SharedContextStore wire messages",
        "description": (
            f"Wire version {WIRE_VERSION}. Every message body of the store, UTF-8 JSON: writes "
            "(Write and its kinds), query requests (*Request), replies (EvolutionContext, "
            "ContextList, Comparison, OutcomeReply, HistoryPage, StatsReply, ErrorBody), events "
            "(Event), JetStream's replies to a write (PubAck, PubError), agent work "
            "(AgentRequest, AgentReply), the export file (Bundle) and the headers "
            f"(WriteHeaders, ErrorHeaders). Subjects and operations: {ASYNCAPI_FILE}."
        ),
        "$defs": _components("#/$defs/{name}"),
    }


# -- AsyncAPI --------------------------------------------------------------------------


def _ref(path: str) -> dict[str, str]:
    return {"$ref": path}


def _asyncapi_schemas() -> dict[str, Any]:
    """The components for AsyncAPI's schema format (JSON Schema draft 07 based), where a
    ``discriminator`` is the name of the property, not OpenAPI's object."""

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: value["propertyName"]
                if key == "discriminator" and isinstance(value, dict)
                else convert(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [convert(item) for item in node]
        return node

    converted: dict[str, Any] = convert(_components("#/components/schemas/{name}"))
    return converted


def _message(
    name: str,
    summary: str,
    payload: str,
    *,
    headers: str | None = None,
    examples: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "title": payload, "summary": summary}
    message["contentType"] = "application/json"
    if headers is not None:
        message["headers"] = _ref(f"#/components/schemas/{headers}")
    message["payload"] = _ref(f"#/components/schemas/{payload}")
    if examples:
        message["examples"] = examples
    return message


def _messages() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for w in WRITES:
        headers = {HEADER_MSG_ID: "6f1c2e9a-3d4b-4f7e-9a51-0c2b8d7e4f13", HEADER_WRITER: "agent-a"}
        if w.kind is WriteKind.CREATE:
            headers[HEADER_EXPECTED_LAST_SUBJECT_SEQ] = "0"
        example = {"name": w.kind.value, "headers": headers}
        example["payload"] = msgspec.to_builtins(w.example)
        messages[w.body.__name__] = _message(
            w.kind.value, w.summary, w.body.__name__, headers="WriteHeaders", examples=[example]
        )
    messages["PubAck"] = _message("pub_ack", "JetStream stored the write.", "PubAck")
    messages["PubError"] = _message("pub_error", "JetStream refused the write.", "PubError")
    for e in EVENTS:
        messages[e.body.__name__] = _message(e.tag, e.summary, e.body.__name__)
    for q in QUERIES:
        example = {"name": q.op.value, "payload": msgspec.to_builtins(q.example)}
        messages[q.request.__name__] = _message(
            f"{q.op.value}_request", q.summary, q.request.__name__, examples=[example]
        )
        if q.reply.__name__ not in messages:
            messages[q.reply.__name__] = _message(
                f"{q.op.value}_reply", f"Reply to {q.op.value}.", q.reply.__name__
            )
    messages["ErrorReply"] = _message(
        "error_reply",
        "The request failed: error headers and an ErrorBody.",
        "ErrorBody",
        headers="ErrorHeaders",
    )
    messages["AgentRequest"] = _message(
        "agent_request",
        "Work for an agent: ids and options only; the agent reads its input from the store.",
        "AgentRequest",
    )
    messages["AgentReply"] = _message("agent_reply", "The agent's work is done.", "AgentReply")
    return dict(sorted(messages.items()))


def _message_ref(name: str) -> dict[str, str]:
    return _ref(f"#/components/messages/{name}")


def _token(name: str) -> dict[str, str]:
    return _ref(f"#/components/parameters/{name}")


def _channels() -> dict[str, Any]:
    write, event, error = Channel.WRITE, Channel.EVENT, Channel.ERROR
    by_context = "{tenant}.{evolution_id}.{kind}"
    channels: dict[str, Any] = {
        "write": {
            "address": f"{ROOT}.{write}.{by_context}",
            "title": "Writes",
            "description": (
                "Publish a write here, best as a JetStream publish (a request: JetStream "
                "answers on write_reply). The body's type must equal the subject's kind. The "
                "stream CTXSTORE_WRITES keeps every write, applied or rejected."
            ),
            "parameters": {
                "tenant": _token("tenant"),
                "evolution_id": _token("evolution_id"),
                "kind": {
                    "enum": [k.value for k in WriteKind],
                    "description": "The write's kind; equal to the body's type.",
                },
            },
            "messages": {w.kind.value: _message_ref(w.body.__name__) for w in WRITES},
        },
        "write_reply": {
            "address": None,
            "title": "JetStream's answer to a write",
            "description": (
                "The publisher's reply subject. JetStream answers, not the store: PubAck "
                "(stored) or PubError (refused, nothing stored). The store's verdict comes as "
                "an event, or from the outcome query."
            ),
            "messages": {"PubAck": _message_ref("PubAck"), "PubError": _message_ref("PubError")},
        },
        "event": {
            "address": f"{ROOT}.{event}.{by_context}",
            "title": "Applied writes and pruned contexts",
            "description": (
                "One event per applied write, in stream order, and one per context pruned. "
                "Kept in the stream CTXSTORE_EVENTS for 7 days: a JetStream consumer replays "
                "them (deliver all, or from a sequence or time)."
            ),
            "parameters": {
                "tenant": _token("tenant"),
                "evolution_id": _token("evolution_id"),
                "kind": {
                    "enum": [*(k.value for k in WriteKind), PRUNED_KIND],
                    "description": "The applied write's kind, or pruned.",
                },
            },
            "messages": {
                "applied": _message_ref("WriteApplied"),
                "pruned": _message_ref("ContextPruned"),
            },
        },
        "error": {
            "address": f"{ROOT}.{error}.{by_context}",
            "title": "Rejected writes",
            "description": (
                "One event per rejected write. Stored in CTXSTORE_EVENTS like the applied "
                "ones, and the write itself stays in CTXSTORE_WRITES: both can be replayed. "
                "tenant and evolution_id are _ when the write's subject could not be read; "
                "kind is invalid when it was not a word."
            ),
            "parameters": {
                "tenant": _token("tenant"),
                "evolution_id": _token("evolution_id"),
                "kind": {"description": "The rejected write's kind, or invalid."},
            },
            "messages": {"rejected": _message_ref("WriteRejected")},
        },
    }
    for q in QUERIES:
        channels[f"query_{q.op.value}"] = {
            "address": f"{ROOT}.{Channel.QUERY}.{{tenant}}.{q.op.value}",
            "title": f"Query: {q.op.value}",
            "description": f"{q.summary} A NATS micro endpoint: send a request.",
            "parameters": {"tenant": _token("tenant")},
            "messages": {"request": _message_ref(q.request.__name__)},
        }
        channels[f"query_{q.op.value}_partition"] = {
            "address": f"{ROOT}.{Channel.QUERY}.{{tenant}}.{q.op.value}.p{{partition}}",
            "title": f"Query: {q.op.value}, of one partition",
            "description": (
                f"The same query, answered by the actors of one partition of a partitioned "
                f"store (CONTEXT_STORE_PARTITIONS > 1) from the contexts they hold. "
                f"{_PARTITION_QUERIES}"
            ),
            "parameters": {"tenant": _token("tenant"), "partition": _token("partition")},
            "messages": {"request": _message_ref(q.request.__name__)},
        }
        channels[f"query_{q.op.value}_reply"] = {
            "address": None,
            "title": f"Reply to {q.op.value}",
            "description": "The requester's reply subject.",
            "messages": {
                "reply": _message_ref(q.reply.__name__),
                "error": _message_ref("ErrorReply"),
            },
        }
    channels["agent"] = {
        "address": f"{ROOT}.{Channel.AGENT}.{{tenant}}.{{agent}}",
        "title": "Agent work",
        "description": (
            "Served by the evolution agents (ctxstore agent NAME, or the engine's own), not by "
            "the store actor."
        ),
        "parameters": {
            "tenant": _token("tenant"),
            "agent": {"enum": list(AGENT_NAMES), "description": "The agent's role."},
        },
        "messages": {"request": _message_ref("AgentRequest")},
    }
    channels["agent_reply"] = {
        "address": None,
        "title": "Reply of an agent",
        "description": "The requester's reply subject.",
        "messages": {"reply": _message_ref("AgentReply"), "error": _message_ref("ErrorReply")},
    }
    return channels


def _channel_messages(channel: str, names: Iterable[str]) -> list[dict[str, str]]:
    return [_ref(f"#/channels/{channel}/messages/{name}") for name in names]


def _operations() -> dict[str, Any]:
    queue = {"nats": {"queue": _QUEUE_GROUP, "bindingVersion": "0.1.0"}}
    operations: dict[str, Any] = {
        "write": {
            "action": "receive",
            "channel": _ref("#/channels/write"),
            "title": "Take a write",
            "summary": "Writes reach the store through the JetStream stream CTXSTORE_WRITES.",
            "description": (
                "The store applies the stream's writes one at a time, in stream order, and "
                "publishes an event for each: applied (on event) or rejected (on error)."
            ),
            "messages": _channel_messages("write", (w.kind.value for w in WRITES)),
            "reply": {
                "channel": _ref("#/channels/write_reply"),
                "messages": _channel_messages("write_reply", ("PubAck", "PubError")),
            },
        },
        "applied": {
            "action": "send",
            "channel": _ref("#/channels/event"),
            "title": "Announce an applied write or a pruned context",
            "messages": _channel_messages("event", ("applied", "pruned")),
        },
        "rejected": {
            "action": "send",
            "channel": _ref("#/channels/error"),
            "title": "Announce a rejected write",
            "messages": _channel_messages("error", ("rejected",)),
        },
    }
    for q in QUERIES:
        op = q.op.value
        operations[op] = {
            "action": "receive",
            "channel": _ref(f"#/channels/query_{op}"),
            "title": q.summary,
            "description": (
                f"{q.description} Errors: an ErrorReply. {_MIN_SEQ} Listed in $SRV.INFO."
            ),
            "bindings": queue,
            "messages": _channel_messages(f"query_{op}", ("request",)),
            "reply": {
                "channel": _ref(f"#/channels/query_{op}_reply"),
                "messages": _channel_messages(f"query_{op}_reply", ("reply", "error")),
            },
        }
        operations[f"{op}_partition"] = {
            "action": "receive",
            "channel": _ref(f"#/channels/query_{op}_partition"),
            "title": f"{q.summary} (one partition)",
            "description": f"{_PARTITION_QUERIES} Listed in $SRV.INFO as {op}-p<partition>.",
            "bindings": queue,
            "messages": _channel_messages(f"query_{op}_partition", ("request",)),
            "reply": {
                "channel": _ref(f"#/channels/query_{op}_reply"),
                "messages": _channel_messages(f"query_{op}_reply", ("reply", "error")),
            },
        }
    operations["agent"] = {
        "action": "receive",
        "channel": _ref("#/channels/agent"),
        "title": "Do an agent's phase of an evolution",
        "description": "Served by the agents, not by the store actor.",
        "bindings": queue,
        "messages": _channel_messages("agent", ("request",)),
        "reply": {
            "channel": _ref("#/channels/agent_reply"),
            "messages": _channel_messages("agent_reply", ("reply", "error")),
        },
    }
    return operations


_PARTITION_QUERIES: Final = (
    "A context's partition is FNV-1a (32 bits) of its tenant and evolution id joined, modulo "
    "the number of partitions (nats-server's {{partition(P,1,2)}}); a query about another "
    "partition's context is passed on to it. Without partitions nobody serves these "
    "subjects: use the store's subject, which every actor answers in either case."
)
_MIN_SEQ: Final = (
    f"With min_seq the store answers once it has applied that sequence, waiting up to "
    f"{MIN_SEQ_WAIT_S:g} s (then a timeout error): use a request timeout longer than that."
)

_CODES: Final = ", ".join(f"{c.value} ({c.status})" for c in ErrorCode)

_DESCRIPTION: Final = f"""\
A shared-context store for multi-agent pipelines on NATS JetStream, described from the store's
side: it receives writes and query requests, and sends events and replies. Every body is UTF-8
JSON; the JSON Schema of every message is {JSON_SCHEMA_FILE}.

- **Ids**: the writer picks the evolution id (1-64 letters, digits, '_' or '-'); the store
  never assigns one. The Python client uses evo-<UTC yyyymmddHHMMSS>-<12 hex digits>.
- **Writes** go to JetStream on ctxstore.write.<tenant>.<evolution_id>.<kind>. JetStream's
  acknowledgement means stored, not applied: the store then applies the writes in stream
  order and announces each on ctxstore.event (applied) or ctxstore.error (rejected).
- **Idempotency**: Nats-Msg-Id de-duplicates over the whole write stream for
  {DUPLICATE_WINDOW_S:g} s.
- **A phase write replaces the whole phase**: omitted fields take their defaults.
- **Guarded writes**: Nats-Expected-Last-Subject-Sequence with
  Nats-Expected-Last-Subject-Sequence-Subject: ctxstore.write.<tenant>.<evolution_id>.>.
- **Queries** are NATS micro endpoints (service ctxstore; $SRV.INFO lists each endpoint with
  metadata naming its request and reply schemas). {_MIN_SEQ}
- **Partitions** (CONTEXT_STORE_PARTITIONS > 1): writes and the store's query subjects are
  the same; each partition's actors also answer ctxstore.query.<tenant>.<op>.p<partition>,
  a hop shorter for a client that computes the partition.
- **Errors**: an error reply has the headers Nats-Service-Error-Code (status) and
  Nats-Service-Error and an ErrorBody {{code, message}}; codes: {_CODES}.
- **Rejected writes are kept**: the write stays in CTXSTORE_WRITES (history, outcome) and its
  event in CTXSTORE_EVENTS; both can be replayed.
"""


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the store."""
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "SharedContextStore",
            "version": WIRE_VERSION,
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "schemas": _asyncapi_schemas(),
            "messages": _messages(),
            "parameters": {
                "tenant": {
                    "description": "The tenant: 1-64 letters, digits, '_' or '-'.",
                    "default": "default",
                    "examples": ["default"],
                },
                "evolution_id": {
                    "description": (
                        "The context's id, picked by whoever creates it: 1-64 letters, "
                        "digits, '_' or '-'."
                    ),
                    "examples": ["evo-20260105093000-1a2b3c4d5e6f"],
                },
                "partition": {
                    "description": (
                        "A partition of a partitioned store: 0 to CONTEXT_STORE_PARTITIONS - 1."
                    ),
                    "examples": ["0"],
                },
            },
        },
    }


# -- files and metadata ----------------------------------------------------------------


def render(document: dict[str, Any]) -> str:
    """A document as the checked-in files hold it: JSON, two-space indents, a final newline."""
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n"


def documents() -> dict[str, str]:
    """File name -> text, for every document."""
    return {JSON_SCHEMA_FILE: render(json_schema()), ASYNCAPI_FILE: render(asyncapi())}


def endpoint_metadata(op: Query, partition: int | None = None) -> dict[str, str]:
    """What ``$SRV.INFO`` says of a query endpoint: its request, reply and error schemas (as
    references into the JSON Schema document) and its AsyncAPI operation; and, on a
    partition's endpoint, the partition."""
    doc = query_doc(op)
    found = {
        "summary": doc.summary,
        "request_schema": f"{JSON_SCHEMA_FILE}#/$defs/{doc.request.__name__}",
        "reply_schema": f"{JSON_SCHEMA_FILE}#/$defs/{doc.reply.__name__}",
        "error_schema": f"{JSON_SCHEMA_FILE}#/$defs/{ErrorBody.__name__}",
        "asyncapi_operation": f"{ASYNCAPI_FILE}#/operations/{op.value}",
    }
    if partition is not None:
        found["partition"] = str(partition)
        found["asyncapi_operation"] += "_partition"
    return found


def service_metadata() -> dict[str, str]:
    """What ``$SRV.INFO`` says of the service: where the documents are."""
    return {
        "wire_version": WIRE_VERSION,
        "json_schema": f"{SCHEMA_DIR}/{JSON_SCHEMA_FILE}",
        "asyncapi": f"{SCHEMA_DIR}/{ASYNCAPI_FILE}",
        "schema_command": "ctxstore schema --format jsonschema|asyncapi",
    }
