"""Serving the console: uvicorn on a socket this module binds, in the caller's event loop
(the same loop as the console's clients), stopped by the caller rather than by signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Final, Self

import uvicorn
from starlette.applications import Starlette

from actors.client import ConfigError

__all__ = ["ConsoleServer"]

log = logging.getLogger("ctxstore.console")

_SHUTDOWN_GRACE_S: Final = 3
"""How long stopping waits for requests still running (live streams end on their own)."""


class _Server(uvicorn.Server):
    # The command that runs the console owns SIGINT and SIGTERM (and stops this server);
    # uvicorn's own handlers would re-raise the signal after shutting down.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ConsoleServer:
    """``async with ConsoleServer(app, host, port) as server:`` listens on
    ``server.url`` until the block ends. Port 0 takes any free port."""

    def __init__(
        self,
        app: Starlette,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._on_stop = on_stop
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        assert self._socket is not None, "not started"
        host, port = self._socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    async def start(self) -> Self:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            # Listening before uvicorn starts: a browser that connects at once waits in the
            # backlog instead of being refused.
            self._socket = socket.create_server((self._host, self._port), family=family)
        except OSError as exc:
            raise ConfigError(
                f"the console cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=_SHUTDOWN_GRACE_S,
            ws="websockets-sansio",
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="console-http"
        )
        return self

    async def aclose(self) -> None:
        if self._on_stop is not None:
            self._on_stop()
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None:
            server.should_exit = True
        if task is not None:
            try:
                await task
            except (Exception, SystemExit) as exc:  # it never takes the caller down with it
                log.warning("console server stopped with %r", exc)
        if self._socket is not None:
            self._socket.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
