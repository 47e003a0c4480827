"""Requests whose reply may come in chunks (``Ctxstore-Chunk: i/n``).

nats-py's ``request()`` keeps the first message of a reply and drops the rest. A reply too
large for one message comes as numbered chunks to a requester that asked for them, so such a
request listens on an inbox of its own until every chunk is in.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import HEADER_CHUNK, StoreTimeoutError, StoreUnavailableError

__all__ = ["Reply", "request_in_chunks"]


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole reply: its headers (those of its first message) and its body."""

    headers: dict[str, str] | None
    data: bytes


def _position(msg: Msg) -> tuple[int, int] | None:
    """(i, n) of a chunk, None for a reply in one message."""
    value = (msg.headers or {}).get(HEADER_CHUNK)
    if value is None:
        return None
    index, _, count = value.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        return None
    return (i, n) if 1 <= i <= n else None


async def request_in_chunks(nc: Client, subject: str, data: bytes, *, patience: float) -> Reply:
    """Send a request and gather its reply, in one message or in chunks; each chunk must
    come within ``patience`` seconds of the one before (``StoreTimeoutError``). Nobody
    listening on ``subject`` is a ``StoreUnavailableError``."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, data, reply=inbox)
        parts: dict[int, bytes] = {}
        first: Msg | None = None
        count = 1
        while len(parts) < count:
            try:
                async with asyncio.timeout(patience):
                    msg = await sub.next_msg(timeout=None)
            except TimeoutError:
                raise StoreTimeoutError(
                    f"no reply to {subject} within {patience}s ({len(parts)} of {count} parts came)"
                ) from None
            if not msg.data and (msg.headers or {}).get("Status") == "503":
                raise StoreUnavailableError(f"nobody answers on {subject}")
            where = _position(msg)
            if where is None:
                return Reply(msg.headers, msg.data)
            index, count = where
            if first is None or index == 1:
                first = msg if index == 1 else first
            parts[index] = msg.data
        return Reply(
            None if first is None else first.headers,
            b"".join(parts[i] for i in range(1, count + 1)),
        )
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
