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
import pytest

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


async def _user(server: EmbeddedServer, auth: AuthDirectory, tenant: str, role: str):  # type: ignore[no-untyped-def]
    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        violations.append(str(exc))

    nc = await nats.connect(
        server.url,
        nkeys_seed=str(auth.seed(tenant, role)),
        error_cb=on_error,
        allow_reconnect=False,
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
    serves = role if role in AGENTS else "research"
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


def _denied(violations: list[str], op: str, subject: str) -> bool:
    word = "publish" if op == "pub" else "subscription"
    return any(word in v.lower() and f'"{subject}"' in v for v in violations)


async def test_every_role_against_every_subject_and_operation(
    deployment: tuple[EmbeddedServer, AuthDirectory],
) -> None:
    server, auth = deployment
    cells = wrong = 0
    reader = await nats.connect(server.url, nkeys_seed=str(auth.seed("a", "actor")))
    try:
        for role in Role:
            operations = _operations("a", role)
            for op, subject, allowed in operations:
                # A connection per cell: the server reports one refusal per connection.
                nc, violations = await _user(server, auth, "a", role)
                if op == "pub":
                    await nc.publish(subject, b"{}")
                else:
                    await nc.subscribe(subject)
                await nc.flush()  # a refusal of the above arrives before the PONG
                for _ in range(5):  # and nats-py hands it to error_cb in a task of its own
                    await asyncio.sleep(0)
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


@pytest.mark.parametrize("role", [str(r) for r in Role])
async def test_a_tenants_users_never_see_another_tenants_data(
    deployment: tuple[EmbeddedServer, AuthDirectory], role: str
) -> None:
    server, auth = deployment
    nc, _ = await _user(server, auth, "a", role)
    seen: list[str] = []
    try:
        for subject in (">", "ctxstore.>", "ctxstore.event.b.>", "ctxstore.write.b.>", "_INBOX.>"):
            await nc.subscribe(subject, cb=lambda m: seen.append(m.subject + m.data.decode()))
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
