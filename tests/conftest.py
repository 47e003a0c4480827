"""Fixtures: the package's own pytest plugin (``actors.pytest_plugin``: a real nats-server with
JetStream per test, on a free loopback port, a store actor, a client), under short names,
with a small payload limit so that size limits are quick to reach."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from actors import SharedContextStore, StoreActor
from actors.pytest_plugin import ensure_registered
from broker import EmbeddedServer, StoreConfig, connect

# Small projects the evolution tests evolve; their own tests run only inside those tests.
collect_ignore = ["fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    # The package's pytest plugin (ctxstore_* fixtures): its pytest11 entry point registers
    # it when the package is installed; from a checkout, register it here (never twice).
    ensure_registered(config)


@pytest.fixture
def ctxstore_config(ctxstore_server: EmbeddedServer, tmp_path: Path) -> StoreConfig:
    """The plugin's configuration, with a 64 KiB payload limit."""
    return StoreConfig.build(
        {}, nats_url=ctxstore_server.url, max_payload=64 * 1024, export_path=tmp_path / "exports"
    )


@pytest.fixture
def ctxstore_client_name() -> str:
    return "agent-a"


@pytest.fixture
def server(ctxstore_server: EmbeddedServer) -> EmbeddedServer:
    return ctxstore_server


@pytest.fixture
def config(ctxstore_config: StoreConfig) -> StoreConfig:
    return ctxstore_config


@pytest.fixture
def actor(ctxstore_actor: StoreActor) -> StoreActor:
    return ctxstore_actor


@pytest.fixture
def store(ctxstore_store: SharedContextStore) -> SharedContextStore:
    """The first agent."""
    return ctxstore_store


@pytest.fixture
async def nc(server: EmbeddedServer) -> AsyncIterator[Client]:
    conn = await connect(server.url, name="test-raw")
    yield conn
    await conn.close()


@pytest.fixture
async def store_b(actor: StoreActor, config: StoreConfig) -> AsyncIterator[SharedContextStore]:
    """A second agent with its own connection, on the same store."""
    async with SharedContextStore(config=config, name="agent-b") as client:
        yield client
