"""Authenticated deployments (``ctxstore auth init``): every role against every subject and
operation, the tenant boundary, and the writer the history records."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from actors import SharedContextStore, StoreActor
from broker import EmbeddedServer, StoreConfig, connect
from broker.accounts import AuthDirectory, init_auth
from contracts import Role, WriteKind

TENANTS = ["a", "b"]
# Phase ownership, as the issue states it (not read from the code under test).
OWNS = {
    "research": {"external_research", "agent"},
    "analysis": {"original_analysis", "agent"},
    "planner": {"improvement_plan", "agent"},
    "refactor": {"implementation_log", "agent"},
    "evaluator": {"evaluation_results", "agent"},
    "admin": {str(k) for k in WriteKind},
    "viewer": set(),
    "actor": {str(k) for k in WriteKind},
}
AGENTS = {"research", "analysis", "planner", "refactor", "evaluator"}


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedServer, AuthDirectory]]:
    auth = init_auth(tmp_path / "auth", TENANTS)
    async with (
        EmbeddedServer(tmp_path / "nats", include=auth.accounts) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        for tenant in TENANTS:
            config = StoreConfig.build(
                {}, nats_url=server.url, tenant=tenant, auth=auth.auth(tenant, "actor")
            )
            nc = await connect(server.url, name=f"actor-{tenant}", auth=config.auth)
            stack.push_async_callback(nc.close)
            await stack.enter_async_context(StoreActor(nc, config))
        yield server, auth


async def _user(  # type: ignore[no-untyped-def]
    server: EmbeddedServer, auth: AuthDirectory, tenant: str, role: str, *, no_echo: bool = False
):
    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        violations.append(str(exc))

    nc = await nats.connect(
        server.url,
        nkeys_seed=str(auth.seed(tenant, role)),
        error_cb=on_error,
        allow_reconnect=False,
        no_echo=no_echo,
    )
    return nc, violations


def _operations(tenant: str, role: str) -> list[tuple[str, str, bool]]:
    """(operation, subject, allowed) for every cell of ``role``'s row."""
    actor = role == "actor"
    t, eid = tenant, f"evo-{role}"
    token = role if role != "actor" else "admin"
    ops: list[tuple[str, str, bool]] = [
        ("pub", f"ctxstore.write.{t}.{eid}.{kind}.{token}", actor or str(kind) in OWNS[role])
        for kind in WriteKind
    ]
    other = "planner" if role != "planner" else "research"
    ops += [
        ("pub", f"ctxstore.write.{t}.{eid}.agent.{other}", actor),  # another role's name
        ("pub", f"ctxstore.write.{t}.{eid}.stage", actor),  # no role at all
        ("pub", f"ctxstore.event.{t}.{eid}.stage", actor),  # a forged event
        ("pub", f"ctxstore.error.{t}.{eid}.stage", actor),
        ("pub", "$O.ctxstore_snapshots.C.planted", actor),  # a planted snapshot chunk
        ("pub", "$KV.ctxstore_leases.actor", actor),
        ("pub", "$JS.API.STREAM.DELETE.CTXSTORE_WRITES", actor),
        ("pub", "$JS.API.STREAM.PURGE.CTXSTORE_WRITES", actor),
        ("pub", "$JS.API.STREAM.UPDATE.CTXSTORE_WRITES", actor),
        ("pub", "$JS.API.STREAM.DELETE.CTXSTORE_EVENTS", actor),
        ("pub", "$JS.API.STREAM.CREATE.EVIL", actor),
        ("pub", "$JS.API.CONSUMER.DELETE.CTXSTORE_WRITES.ctxstore-actor", actor),
        ("pub", "$JS.API.CONSUMER.CREATE.CTXSTORE_WRITES.ctxstore-actor", actor),
        ("pub", "$JS.API.CONSUMER.DURABLE.CREATE.CTXSTORE_WRITES.x", actor),
        ("pub", "$JS.API.DIRECT.GET.OBJ_ctxstore_snapshots", actor),  # reading a snapshot
        ("pub", "$JS.API.STREAM.MSG.GET.OBJ_ctxstore_snapshots", actor),
        ("pub", "$JS.API.DIRECT.GET.KV_ctxstore_leases", actor),
        ("pub", f"ctxstore.query.{t}.get", True),
        ("pub", "$JS.API.STREAM.INFO.CTXSTORE_WRITES", True),
        ("sub", f"ctxstore.event.{t}.>", True),
        ("sub", f"ctxstore.error.{t}.>", True),
        ("sub", f"ctxstore.write.{t}.>", actor),
        ("sub", "$O.ctxstore_snapshots.>", actor),
        ("sub", "$KV.ctxstore_leases.>", actor),
        (
            "sub",
            f"ctxstore.agent.{t}.{role if role in AGENTS else 'research'}",
            actor or role in AGENTS,
        ),
        ("sub", ">", actor),
    ]
    return ops


async def _barrier(nc: Client) -> None:
    """Until the server has answered all this connection sent before: a refusal comes back
    as an -ERR, which nats-py passes to error_cb as it reads it. ``flush()`` is no such
    barrier: nats-py writes its PING straight to the socket, ahead of what its flusher has
    still to write (a publish just made), so the PONG can come before the refusal. A request
    goes out behind them, and its reply comes after the refusal."""
    await nc.request("$JS.API.INFO", b"", timeout=10)


def _denied(violations: list[str], op: str, subject: str) -> bool:
    """Whether the server refused ``op`` on ``subject``: it says so in an -ERR on that
    connection, which nats-py hands to error_cb lowercased ('permissions violation for
    publish to "$js.api..."'): so the subject is compared lowercased too."""
    word = "publish" if op == "pub" else "subscription"
    wanted = f'"{subject.lower()}"'
    return any("permissions violation" in v and word in v and wanted in v for v in violations)


class _Account:
    """What a refused operation must leave as it was in a tenant's JetStream account."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def picture(self) -> dict[str, object]:
        js = self.js
        streams = {s.config.name or "": s for s in await js.streams_info()}
        writes = streams["CTXSTORE_WRITES"]
        consumer = await js.consumer_info("CTXSTORE_WRITES", "ctxstore-actor")
        lease = await js.get_last_msg("KV_ctxstore_leases", "$KV.ctxstore_leases.actor")
        planted = None
        if "OBJ_ctxstore_snapshots" in streams:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                planted = await js.get_last_msg(
                    "OBJ_ctxstore_snapshots", "$O.ctxstore_snapshots.C.planted"
                )
        return {
            "streams": sorted(streams),
            "writes created": writes.created,
            "writes first seq": writes.state.first_seq,
            "events created": streams["CTXSTORE_EVENTS"].created,
            "actor consumer created": consumer.created,
            "lease": lease.data,
            "planted chunk": planted,
        }


async def test_every_role_against_every_subject_and_operation(
    deployment: tuple[EmbeddedServer, AuthDirectory],
) -> None:
    server, auth = deployment
    cells = wrong = 0
    reader = await nats.connect(server.url, nkeys_seed=str(auth.seed("a", "actor")))
    account = _Account(reader.jetstream())
    # The actor's row last: it may do what the others may not, deleting streams included.
    roles = sorted(Role, key=lambda r: r is Role.ACTOR)
    try:
        admin = StoreConfig.build(
            {}, nats_url=server.url, tenant="a", role="admin", auth=auth.auth("a", "admin")
        )
        async with SharedContextStore(config=admin) as store:  # a purge would remove it
            await store.create_context("./before")
        before = await account.picture()
        for role in roles:
            if role is Role.ACTOR:  # everything the other roles tried left nothing behind
                assert await account.picture() == before
            operations = _operations("a", role)
            for op, subject, allowed in operations:
                # A connection per cell: the server reports one refusal per connection.
                nc, violations = await _user(server, auth, "a", role)
                if op == "pub":
                    await nc.publish(subject, b"{}")
                else:
                    await nc.subscribe(subject)
                await _barrier(nc)
                await nc.close()
                cells += 1
                if _denied(violations, op, subject) == allowed:
                    wrong += 1
                    print(f"{role} {op} {subject}: {'refused' if allowed else 'allowed'}")
            # What was refused left nothing: no write of this role's row was stored but the
            # allowed ones.
            js = reader.jetstream()
            for op, subject, allowed in operations:
                if op == "pub" and subject.startswith("ctxstore.write.") and role != "actor":
                    stored = True
                    try:
                        await js.get_last_msg("CTXSTORE_WRITES", subject, direct=True)
                    except nats.errors.Error:
                        stored = False
                    if stored != allowed:
                        wrong += 1
                        print(f"{role} {subject}: stored={stored}")
    finally:
        await reader.close()
    print(f"\nrole matrix: {len(Role)} roles, {cells} cells, {wrong} wrong")
    assert wrong == 0


async def test_a_refusal_is_seen_whatever_the_case_of_the_subject(
    deployment: tuple[EmbeddedServer, AuthDirectory],
) -> None:
    """The matrix's own check: a viewer's publish on the JetStream API is seen refused, and
    its request gets no answer (the server drops it)."""
    server, auth = deployment
    nc, violations = await _user(server, auth, "a", "viewer")
    try:
        subject = "$JS.API.STREAM.DELETE.CTXSTORE_WRITES"
        with pytest.raises(nats.errors.TimeoutError):
            await nc.request(subject, b"", timeout=0.5)
        assert _denied(violations, "pub", subject)
        assert not _denied(violations, "pub", "$JS.API.STREAM.PURGE.CTXSTORE_WRITES")
    finally:
        await nc.close()


@pytest.mark.parametrize("role", [str(r) for r in Role])
async def test_a_tenants_users_never_see_another_tenants_data(
    deployment: tuple[EmbeddedServer, AuthDirectory], role: str
) -> None:
    server, auth = deployment
    # no_echo: a user that may subscribe to everything would see its own requests below.
    nc, _ = await _user(server, auth, "a", role, no_echo=True)
    seen: list[str] = []
    own = asyncio.Event()  # the user does see its own tenant's events

    async def on_msg(msg: Msg) -> None:
        seen.append(msg.subject + msg.data.decode("utf-8", "replace"))

    async def on_own(msg: Msg) -> None:
        own.set()

    try:
        for subject in (">", "ctxstore.>", "ctxstore.event.b.>", "ctxstore.write.b.>", "_INBOX.>"):
            await nc.subscribe(subject, cb=on_msg)
        await nc.subscribe("ctxstore.event.a.>", cb=on_own)
        await _barrier(nc)
        a_config = StoreConfig.build(
            {}, nats_url=server.url, tenant="a", role="admin", auth=auth.auth("a", "admin")
        )
        async with SharedContextStore(config=a_config) as a_store:
            await a_store.create_context("./own-a")
        async with asyncio.timeout(10):
            await own.wait()
        b_config = StoreConfig.build(
            {}, nats_url=server.url, tenant="b", role="admin", auth=auth.auth("b", "admin")
        )
        async with SharedContextStore(config=b_config) as b_store:
            eid = await b_store.create_context("./secret-b")
            await b_store.store_external_research(["MARKER-B"], [], [], evolution_id=eid)
            assert (await b_store.get_context(eid)).external_research["best_practices"] == [
                "MARKER-B"
            ]
        await nc.flush()
        # Every way to ask for it: tenant b's query subjects, JetStream's API of the account.
        for subject in ("ctxstore.query.b.get", "ctxstore.query.b.list"):
            with contextlib.suppress(nats.errors.Error):
                reply = await nc.request(subject, json.dumps({"evolution_id": eid}).encode(), 0.5)
                seen.append(reply.data.decode())
        with contextlib.suppress(nats.errors.Error):
            msg = await nc.jetstream().get_last_msg(
                "CTXSTORE_WRITES", f"ctxstore.write.b.{eid}.create", direct=True
            )
            seen.append(msg.data.decode())
        await nc.flush()
        assert not [s for s in seen if "MARKER-B" in s or "secret-b" in s or ".b." in s]
    finally:
        await nc.close()


async def test_the_history_names_the_authenticated_role_not_the_name_a_client_chose(
    deployment: tuple[EmbeddedServer, AuthDirectory],
) -> None:
    server, auth = deployment

    def config(role: str) -> StoreConfig:
        return StoreConfig.build(
            {}, nats_url=server.url, tenant="a", role=role, auth=auth.auth("a", role)
        )

    async with (
        SharedContextStore(config=config("admin"), name="engine") as admin,
        SharedContextStore(config=config("research"), name="the-admin-really") as research,
    ):
        eid = await admin.create_context("./p")
        await research.store_external_research(["x"], [], [], evolution_id=eid)
        history = await admin.history(eid)
    assert [(h.kind, h.writer) for h in history] == [
        ("create", "admin"),
        ("external_research", "research"),
    ]


async def test_a_client_can_reach_an_authenticated_server_only_signed_in(
    deployment: tuple[EmbeddedServer, AuthDirectory],
) -> None:
    server, _ = deployment
    with pytest.raises(Exception):  # noqa: B017,PT011 (nats-py's own refusal)
        await nats.connect(server.url, allow_reconnect=False, connect_timeout=1)
