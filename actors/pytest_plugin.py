"""pytest fixtures for testing against SharedContextStore, shipped with the package.

Installed, the package registers this plugin through its ``pytest11`` entry point
(``ctxstore``). Not installed (a source checkout), enable it with ``pytest -p
actors.pytest_plugin``, or from a ``conftest.py``::

    from actors.pytest_plugin import ensure_registered

    def pytest_configure(config):
        ensure_registered(config)  # a no-op when the entry point already registered it

Fixtures (function-scoped, each on its own real ``nats-server``):

- ``ctxstore_server``: a running ``EmbeddedServer`` (JetStream, loopback, a temp dir).
- ``ctxstore_config``: the ``StoreConfig`` for it.
- ``ctxstore_actor``: a running ``StoreActor`` for it.
- ``ctxstore_store``: a connected ``SharedContextStore`` with that actor serving it.
- ``ctxstore_replay``: ``await ctxstore_replay(bundle_path)`` loads a recorded export into
  the fresh store under a new id and returns a ``ReplayResult`` (``.evolution_id``,
  ``.context``, ``.recorded``, ``.changes``, ``.identical``).

The async fixtures need ``pytest-asyncio``; without it they skip with a message.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from actors.client import SharedContextStore
from actors.core.bundles import ReplayResult
from actors.store.actor import StoreActor
from broker import EmbeddedServer, StoreConfig, connect

__all__ = [
    "Replay",
    "ctxstore_actor",
    "ctxstore_client_name",
    "ctxstore_config",
    "ctxstore_replay",
    "ctxstore_server",
    "ctxstore_store",
    "ensure_registered",
]

Replay = Callable[[str | os.PathLike[str]], Awaitable[ReplayResult]]
PLUGIN_NAME = "ctxstore"


def ensure_registered(config: pytest.Config) -> None:
    """Register this plugin unless the entry point (or ``-p``) already did."""
    import actors.pytest_plugin as plugin

    manager = config.pluginmanager
    if not manager.is_registered(plugin) and not manager.has_plugin(PLUGIN_NAME):
        manager.register(plugin, PLUGIN_NAME)


def _skipping_fixture(fn: Callable[..., Any]) -> Any:
    @functools.wraps(fn)
    def skip(*_: Any, **__: Any) -> Any:
        pytest.skip("the ctxstore fixtures need pytest-asyncio")

    return pytest.fixture(skip)


try:
    import pytest_asyncio

    _async_fixture: Callable[[Callable[..., Any]], Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - only where pytest-asyncio is missing
    _async_fixture = _skipping_fixture


@_async_fixture
async def ctxstore_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """A real nats-server with JetStream on a free loopback port."""
    async with EmbeddedServer(tmp_path / "ctxstore-nats") as server:
        yield server


@pytest.fixture
def ctxstore_config(ctxstore_server: EmbeddedServer, tmp_path: Path) -> StoreConfig:
    """The store configuration for ``ctxstore_server``."""
    return StoreConfig.build(
        {}, nats_url=ctxstore_server.url, export_path=tmp_path / "ctxstore-exports"
    )


@_async_fixture
async def ctxstore_actor(
    ctxstore_server: EmbeddedServer, ctxstore_config: StoreConfig
) -> AsyncIterator[StoreActor]:
    """A running store actor for ``ctxstore_server``, on a connection of its own."""
    conn = await connect(ctxstore_server.url, name="ctxstore-test-actor", long_running=True)
    try:
        async with StoreActor(conn, ctxstore_config) as actor:
            yield actor
    finally:
        await conn.close()


@pytest.fixture
def ctxstore_client_name() -> str:
    """The name ``ctxstore_store`` writes under (its ``Ctxstore-Writer``)."""
    return "ctxstore-test"


@_async_fixture
async def ctxstore_store(
    ctxstore_actor: StoreActor, ctxstore_config: StoreConfig, ctxstore_client_name: str
) -> AsyncIterator[SharedContextStore]:
    """A connected store, with ``ctxstore_actor`` serving it."""
    async with SharedContextStore(config=ctxstore_config, name=ctxstore_client_name) as store:
        yield store


@_async_fixture
async def ctxstore_replay(ctxstore_store: SharedContextStore) -> Replay:
    """``await ctxstore_replay(path)``: load a recorded bundle into the fresh store."""

    async def replay(bundle: str | os.PathLike[str]) -> ReplayResult:
        return await ctxstore_store.replay(bundle)

    return replay
