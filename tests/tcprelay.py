"""A TCP relay on loopback between clients and a real nats-server, for tests that must see
or disturb the bytes on the way: every connection it accepts is paired with one to the
server, and two pumps carry the bytes. A subclass shapes a direction by overriding
``to_server`` or ``to_client``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Self

Chunk = Callable[[bytes], Awaitable[None]]


class TcpRelay:
    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        for pump in (self.to_server(reader, up_writer), self.to_client(up_reader, writer)):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def to_server(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """What a client sends, on its way to the server (as it is, by default)."""
        await forward(src, dst)

    async def to_client(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """What the server sends, on its way to the client (as it is, by default)."""
        await forward(src, dst)


async def forward(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, before: Chunk | None = None
) -> None:
    """Every chunk from ``src`` to ``dst``, each after ``before(chunk)`` if given."""
    try:
        while chunk := await src.read(65536):
            if before is not None:
                await before(chunk)
            dst.write(chunk)
            await dst.drain()
    finally:
        dst.close()
