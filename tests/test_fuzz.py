"""Fuzz: at least 10,000 malformed inputs of every kind, on every subject the store and an
agent host listen on, then proof that both still serve and that no context changed.

Kinds: subjects and headers that are not UTF-8, tokens too long or empty, bodies that are not
JSON or not UTF-8, wrong types, unknown fields, deep nesting, sizes near and over the limits,
unknown ids and operations, requests without a reply subject, forged events. The inputs come
from a seeded generator (the seed is printed), through the raw protocol so that nothing a
client library would refuse is left out.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from rawnats import RawNats
from test_standby import leader_pid
from workload import ActorProcess, contexts_at

from actors import SharedContextStore
from actors.evolution.agents import Agent, AgentHost
from broker import WRITES_STREAM, EmbeddedServer, StoreConfig, connect
from contracts import (
    EvolutionContext,
    Query,
    agent_subject,
    query_subject,
    write_subject,
)

Record = Callable[[str, object], None]
MiB = 1024 * 1024
INPUTS = 10_000
_KINDS = [
    "create",
    "stage",
    "agent",
    "delete",
    "import",
    "original_analysis",
    "external_research",
    "improvement_plan",
    "implementation_log",
    "evaluation_results",
]
_BATCH = 250
_CONTROL_LINE = 4000  # a subject longer than the server's control line ends the connection
_OPS = [q.value for q in Query]


class Echo(Agent):
    name = "echo"

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        return {"options": len(options)}


def _served_partition(subject: bytes, partitions: int) -> bool:
    """Whether a query subject is the store's or a partition's that some actor serves."""
    tokens = subject.split(b".")
    return len(tokens) == 4 or tokens[4] in {b"p%d" % k for k in range(partitions)}


def _stable(ctx: EvolutionContext) -> dict[str, Any]:
    """What no malformed input may change. A rejected write to an existing context is
    recorded in its error_log and moves its version (see actors.core.fold), and a valid agent
    request among the fuzz (a real id) records the agent's activity: left out."""
    fields = msgspec.structs.asdict(ctx)
    for name in ("error_log", "version", "updated_at", "agents"):
        fields.pop(name)
    return fields


@dataclass(frozen=True)
class Input:
    subject: bytes
    body: bytes
    reply: bytes | None
    headers: bytes | None
    answered: bool  # a reply must come


class Inputs:
    """The malformed inputs, by kind, from one seed."""

    def __init__(self, seed: int, eids: list[str], max_payload: int, partitions: int = 1) -> None:
        self.rng = random.Random(seed)
        self.eids = eids
        self.max_payload = max_payload
        self.partitions = partitions
        self.sent: Counter[str] = Counter()

    def token(self) -> bytes:
        r = self.rng
        match r.randrange(7):
            case 0:
                return bytes(r.randrange(128, 256) for _ in range(r.randint(1, 8)))  # not UTF-8
            case 1:
                return b"x" * r.choice([65, 200, 1000, 3000])  # too long for a token
            case 2:
                return "é-ü-漢".encode()  # UTF-8, but not a token
            case 3:
                return r.choice(self.eids).encode()  # a real context
            case 4:
                return b"evo-unknown-%d" % r.randrange(10**9)
            case 5:
                return b"\xc3\x28"  # a broken two-byte sequence
            case _:
                return r.choice(_KINDS + _OPS).encode()

    def body(self) -> bytes:
        r = self.rng
        kind = r.choice(_KINDS).encode()
        near = self.max_payload + r.choice([-1, 0, 1, 10])  # around the store's limit
        bodies: list[Callable[[], bytes]] = [
            lambda: bytes(r.randrange(256) for _ in range(r.randint(0, 64))),
            lambda: b'{"type": "%s", "files_analyzed": "ten"}' % kind,
            lambda: b'{"type": "%s", "nope": 1}' % kind,
            lambda: b"[" * 5000 + b"]" * 5000,  # deep nesting
            lambda: b'{"type": "original_analysis", "files_analyzed": 1e999}',
            lambda: b'{"type": "%s", "target_path": "\xff\xfe"}' % kind,
            lambda: (
                b'{"type": "original_analysis", "files_analyzed": 1, "pad": "'
                + b"p" * (near - 60)
                + b'"}'
            ),
            lambda: b'{"type": "create", "target_path": "./p", "focus_areas": [1, 2]}',
            lambda: b'{"type": "stage", "phase": "nowhere"}',
            lambda: b'{"type": "import", "target_path": "p", "created_at": "yesterday"}',
            lambda: b'{"evolution_id": "' + b"i" * r.choice([70, 600_000]) + b'"}',
            lambda: b"{" + b'"a":' * 10 + b"}",
        ]
        return r.choice(bodies)()

    def make(self, n: int, max_payload: int) -> Input:
        """The ``n``-th input: a subject of every kind the store listens on, a body, maybe
        headers and a reply subject."""
        r = self.rng
        target = r.randrange(10)
        reply = b"_INBOX.fuzz.%d" % n if r.random() < 0.7 else None
        headers = self.headers()
        body = self.body()
        if target < 5:  # writes, on every kind of write subject
            tenant = r.choice([b"default", self.token()])
            subject = b"ctxstore.write.%s.%s.%s" % (tenant, self.token(), self.token())
            kind = "write"
        elif target < 8:  # queries
            op = r.choice([*_OPS, "bogus"]).encode()
            tenant = b"default" if r.random() < 0.7 else self.token()
            subject = b"ctxstore.query.%s.%s" % (tenant, op)
            if self.partitions > 1 and r.random() < 0.5:
                # A partition's own subject: served (p0, p1), or by nobody (p7, px, p<token>).
                subject += r.choice([b".p0", b".p1", b".p7", b".px", b".p" + self.token()])
            kind = "query"
        elif target == 8:  # the agent host
            subject = agent_subject("default", "echo").encode()
            if r.random() < 0.5:
                body = b'{"evolution_id": "%s"}' % self.token()
            kind = "agent"
        else:  # forged events, and discovery
            forged = b"ctxstore.event.default.%s.%s" % (self.token(), self.token())
            subject = r.choice(
                [forged, b"ctxstore.error.default.x.stage", b"$SRV.INFO.ctxstore", b"$SRV.STATS"]
            )
            kind = "event or discovery"
        subject = subject[: _CONTROL_LINE - len(reply or b"")]
        if len(body) + len(headers or b"") > max_payload:
            body = body[: max_payload // 2]
        self.sent[kind] += 1
        # Sent to a served subject, readable, with a reply subject: it must be answered.
        answered = (
            kind in ("query", "agent")
            and reply is not None
            and headers is None
            and "\ufffd" not in subject.decode("utf-8", "replace")
            and (kind == "agent" or subject.split(b".")[3] != b"bogus")
            and subject.split(b".")[2] == b"default"
            and (kind == "agent" or _served_partition(subject, self.partitions))
        )
        return Input(subject, body, reply, headers, answered)

    def headers(self) -> bytes | None:
        r = self.rng
        match r.randrange(5):
            case 0:
                return b"NATS/1.0 \xff\xfe\r\n\r\n"
            case 1:
                return b"NATS/1.0\r\nCtxstore-Writer: " + b"w" * 5000 + b"\r\n\r\n"
            case 2:
                return b"NATS/1.0\r\nCtxstore-Recorded-Time: 2001-01-01T00:00:00Z\r\n\r\n"
            case 3:
                return b"NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: banana\r\n\r\n"
            case _:
                return None


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("partitions", [1, 2], ids=["one-partition", "two-partitions"])
async def test_ten_thousand_malformed_inputs_stop_nothing_and_change_nothing(
    server: EmbeddedServer,
    config: StoreConfig,
    nc: Client,
    tmp_path: Path,
    record_property: Record,
    partitions: int,
) -> None:
    seed = random.randrange(1 << 32)
    print(f"\nfuzz seed: {seed}")
    config = config.replace(partitions=partitions)
    # The actor in its own process, as deployed: its memory is its own. With partitions, one
    # process runs every partition's actor (``ctxstore serve`` without ``--partition``).
    actor = ActorProcess(
        server.url,
        tmp_path,
        "fuzzed-actor",
        env={"CONTEXT_STORE_PARTITIONS": str(partitions)},
    )
    await actor.start()
    assert actor.pid is not None
    host_nc = await connect(server.url, name="fuzzed-agents", long_running=True)
    try:
        async with (
            SharedContextStore(config=config, name="fuzz-agent") as store,
            SharedContextStore(config=config, name="echo-agent") as agent_store,
            AgentHost(host_nc, [Echo(agent_store)], tenant="default") as host,
        ):
            eids = [await store.create_context(f"./p{i}", ["documentation"]) for i in range(3)]
            for eid in eids:
                await store.store_original_analysis(3, {"m": 1}, [{"i": 1}], [], evolution_id=eid)
                await store.update_phase("research", eid)
            before = {eid: _stable(await store.get_context(eid)) for eid in eids}
            memory_before = _rss(actor.pid)
            inputs = Inputs(seed, eids, config.max_payload, partitions)
            answers = 0
            async with RawNats(server.url) as raw:
                await raw.sub(b"_INBOX.fuzz.>")
                asked = 0
                for n in range(INPUTS):
                    sent = inputs.make(n, raw.max_payload)
                    asked += sent.answered
                    await raw.pub(sent.subject, sent.body, reply=sent.reply, headers=sent.headers)
                    if (n + 1) % _BATCH == 0 or n + 1 == INPUTS:
                        # Every request sent to a served subject with a reply subject gets an
                        # answer. Waiting for them per batch keeps this a test of malformed
                        # input, not of a flood (the server drops any subscriber that falls
                        # 64 MiB behind: see the README's note on limits).
                        await raw.flush()
                        async with asyncio.timeout(120):
                            while answers < asked:
                                message = await raw.next_msg()
                                answers += message.subject.startswith(b"_INBOX.fuzz.")
            last = (await nc.jetstream().stream_info(WRITES_STREAM)).state.last_seq
            await contexts_at(nc, last)  # once the actor has applied every write
            memory_after = _rss(actor.pid)

            assert actor.proc is not None
            assert actor.proc.returncode is None  # still running
            for partition in range(partitions) if partitions > 1 else [None]:
                assert await leader_pid(nc, partition) == actor.pid
            assert host.running
            assert host_nc.is_connected
            after = {eid: _stable(await store.get_context(eid)) for eid in eids}
            assert after == before
            listed = {s.evolution_id for s in await store.get_all_contexts()}
            assert listed == set(eids)
            # And it still does its work.
            receipt = await store.store_external_research(["ok"], [], [], evolution_id=eids[0])
            assert (await store.get_context(eids[0])).version == receipt.seq
            reply = await nc.request(
                agent_subject("default", "echo"),
                b'{"evolution_id": "%s"}' % eids[1].encode(),
                timeout=30,
            )
            assert b'"agent":"echo"' in reply.data
    finally:
        await host_nc.close()
        await actor.stop()
    figures = {
        "seed": seed,
        "inputs": sum(inputs.sent.values()),
        **{f"sent_{k.replace(' ', '_')}": v for k, v in inputs.sent.items()},
        "answered_requests": answers,
        "writes_applied_or_rejected": last,
        "actor_rss_before_mib": round(memory_before / MiB, 1),
        "actor_rss_after_mib": round(memory_after / MiB, 1),
    }
    print(f"fuzz: {figures}")
    for key, value in figures.items():
        record_property(key, value)
    assert figures["inputs"] >= INPUTS
    # Outcomes of the last 10,000 writes are kept (a few hundred bytes each), no bodies: the
    # bodies sent were over 100 MiB.
    assert memory_after - memory_before < 32 * MiB, figures


def test_query_names_are_the_wire_contract() -> None:
    assert query_subject("default", Query.GET) == "ctxstore.query.default.get"
    assert write_subject("default", "e", "stage") == "ctxstore.write.default.e.stage"
