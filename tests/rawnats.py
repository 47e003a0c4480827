"""A NATS client that speaks the raw protocol, for sending what nats-py cannot: subjects and
headers that are not UTF-8, messages without a reply subject where one is expected.

Only what the tests need: CONNECT, PUB/HPUB, SUB, PING/PONG and reading MSG/HMSG.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlparse


@dataclass(frozen=True)
class RawMsg:
    subject: bytes
    reply: bytes | None
    headers: bytes | None
    data: bytes


class RawNats:
    """``async with RawNats(url) as raw: await raw.pub(b"subject", b"data")``"""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 4222
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pongs: asyncio.Queue[None] = asyncio.Queue()
        self.messages: asyncio.Queue[RawMsg] = asyncio.Queue()
        self.errors: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self.max_payload = 0

    async def __aenter__(self) -> Self:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        info = await self._reader.readline()
        assert info.startswith(b"INFO "), info
        self.max_payload = int(json.loads(info[5:])["max_payload"])
        options = {"verbose": False, "pedantic": False, "headers": True, "protocol": 1}
        self._writer.write(b"CONNECT " + json.dumps(options).encode() + b"\r\n")
        self._task = asyncio.create_task(self._read())
        await self.flush()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()

    async def _read(self) -> None:
        assert self._reader is not None
        while line := await self._reader.readline():
            if line == b"PING\r\n":
                assert self._writer is not None
                self._writer.write(b"PONG\r\n")
            elif line == b"PONG\r\n":
                self._pongs.put_nowait(None)
            elif line.startswith(b"-ERR"):
                self.errors.append(line)
            elif line.startswith((b"MSG ", b"HMSG ")):
                kind, *args = line.split()
                sizes = 2 if kind == b"HMSG" else 1
                subject, _sid, *rest = args[: len(args) - sizes]
                reply = rest[0] if rest else None
                if kind == b"HMSG":
                    hdr_len, total = int(args[-2]), int(args[-1])
                else:
                    hdr_len, total = 0, int(args[-1])
                body = await self._reader.readexactly(total + 2)
                self.messages.put_nowait(
                    RawMsg(
                        subject=subject,
                        reply=reply,
                        headers=body[:hdr_len] if hdr_len else None,
                        data=body[hdr_len:total],
                    )
                )

    def _send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    async def pub(
        self,
        subject: bytes,
        data: bytes,
        *,
        reply: bytes | None = None,
        headers: bytes | None = None,
    ) -> None:
        """Publish anything: no check on the subject, reply or headers."""
        where = subject if reply is None else subject + b" " + reply
        if headers is None:
            self._send(b"PUB " + where + b" %d\r\n" % len(data) + data + b"\r\n")
        else:
            total = len(headers) + len(data)
            self._send(
                b"HPUB " + where + b" %d %d\r\n" % (len(headers), total) + headers + data + b"\r\n"
            )
        assert self._writer is not None
        await self._writer.drain()

    async def sub(self, subject: bytes, sid: int = 1) -> None:
        self._send(b"SUB " + subject + b" %d\r\n" % sid)
        await self.flush()

    async def flush(self) -> None:
        """Until the server has read everything sent so far."""
        self._send(b"PING\r\n")
        try:
            async with asyncio.timeout(10):
                await self._pongs.get()
        except TimeoutError:
            closed = self._task is not None and self._task.done()
            raise ConnectionError(f"no PONG (closed: {closed}, errors: {self.errors})") from None

    async def next_msg(self) -> RawMsg:
        async with asyncio.timeout(10):
            return await self.messages.get()
