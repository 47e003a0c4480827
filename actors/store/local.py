"""The local store: one directory that every ``ctxstore`` command and URL-less client shares.

``ctxstore serve`` runs the embedded server on it and records the URL in ``server.json``;
other commands and clients connect to that server while it runs, or start the embedded server
and a store actor on the same directory for as long as they need them. So contexts persist
across commands with no server started by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import TracebackType

from nats.aio.client import Client

from actors.client.local import RECORD
from actors.store.actor import StoreActor
from broker import EmbeddedServer, StoreConfig, connect

__all__ = ["LocalStack", "forget_server", "record_server"]


def record_server(home: Path, url: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{RECORD}.{os.getpid()}"
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
    tmp.replace(home / RECORD)


def forget_server(home: Path) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        record = json.loads((home / RECORD).read_text(encoding="utf-8"))
        if int(record["pid"]) == os.getpid():
            (home / RECORD).unlink()


class LocalStack:
    """An embedded server on ``home`` plus a store actor, owned by this process."""

    def __init__(self, home: Path, config: StoreConfig, *, port: int = 0) -> None:
        self.home = home
        self.config = config
        self.server = EmbeddedServer(
            home / "nats",
            port=port,
            sync_always=config.sync == "always",
            max_payload=max(config.max_payload * 2, 1024 * 1024),
        )
        self._nc: Client | None = None
        self.actor: StoreActor | None = None

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> None:
        try:
            await self.server.start()
            self._nc = await connect(self.server.url, name="ctxstore-actor", long_running=True)
            self.actor = StoreActor(self._nc, self.config)
            await self.actor.start()
            record_server(self.home, self.server.url)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        forget_server(self.home)
        if self.actor is not None:
            await self.actor.aclose()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        await self.server.stop()

    async def __aenter__(self) -> LocalStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
