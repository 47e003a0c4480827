"""Fixtures: a real nats-server with JetStream per test, on a free loopback port."""

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
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(tmp_path / "nats") as srv:
        yield srv


@pytest.fixture
def config(server: EmbeddedServer, tmp_path: Path) -> StoreConfig:
    return StoreConfig.build(
        {}, nats_url=server.url, max_payload=64 * 1024, export_path=tmp_path / "exports"
    )


@pytest.fixture
async def nc(server: EmbeddedServer) -> AsyncIterator[Client]:
    conn = await connect(server.url, name="test-raw")
    yield conn
    await conn.close()


@pytest.fixture
async def actor(server: EmbeddedServer, config: StoreConfig) -> AsyncIterator[StoreActor]:
    conn = await connect(server.url, name="test-actor", long_running=True)
    async with StoreActor(conn, config) as running:
        yield running
    await conn.close()


@pytest.fixture
async def store(actor: StoreActor, config: StoreConfig) -> AsyncIterator[SharedContextStore]:
    async with SharedContextStore(config=config, name="agent-a") as client:
        yield client


@pytest.fixture
async def store_b(actor: StoreActor, config: StoreConfig) -> AsyncIterator[SharedContextStore]:
    """A second agent with its own connection, on the same store."""
    async with SharedContextStore(config=config, name="agent-b") as client:
        yield client
