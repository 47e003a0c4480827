"""Pulling from a JetStream consumer onto a raw subscription (``BusClient.subscribe_raw``).

``Puller`` sends one pull request at a time and hands each message to a handler inside the
connection's read loop. What the server sends it is read straight from the protocol's
fields: the status of a pull request's end (``NATS/1.0 404 No Messages``...), header values,
and the stream position carried by the ack subject. nats-py builds a ``Msg``, a header dict
and a metadata object per message for the same facts; at tens of thousands of messages a
second that is most of the store actor's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Final, Self

import msgspec
from nats.aio.subscription import Subscription

from broker.connection import BusClient, RawHandler

__all__ = [
    "ACK",
    "HEARTBEAT",
    "NO_RESPONDERS",
    "DeliveryError",
    "Puller",
    "header",
    "js_position",
    "pull_request",
    "pull_subject",
    "status",
]

ACK: Final = b"+ACK"
HEARTBEAT: Final = b"100"  # a status that does not end a pull request
NO_RESPONDERS: Final = b"503"  # no consumer took the request: it does not exist (any more)
_STATUS_AT: Final = len(b"NATS/1.0 ")
_ACK_TOKENS_V1: Final = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
_ACK_TOKENS_V2: Final = 11  # with <domain>.<account hash> after ACK (and a trailing token)


class DeliveryError(ValueError):
    """A message that is not a JetStream delivery (its reply is no ack subject)."""


def pull_subject(stream: str, consumer: str) -> str:
    """Where pull requests for ``consumer`` go."""
    return f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"


def pull_request(batch: int, *, expires: float, max_bytes: int) -> bytes:
    """A pull request: up to ``batch`` messages and ``max_bytes`` bytes within ``expires`` s."""
    return msgspec.json.encode(
        {"batch": batch, "expires": int(expires * 1_000_000_000), "max_bytes": max_bytes}
    )


def status(headers: bytes | None) -> bytes | None:
    """The status code of a server notice (``b"404"``, ``b"408"``, ``b"100"``...), or None
    for a message."""
    if headers is None or headers[_STATUS_AT - 1 : _STATUS_AT] != b" ":
        return None
    return headers[_STATUS_AT : _STATUS_AT + 3]


def header(headers: bytes | None, name: bytes) -> str | None:
    """The value of header ``name`` (exact case; the last one if repeated), or None."""
    if not headers:
        return None
    key = b"\r\n" + name + b":"
    at = headers.rfind(key)
    if at < 0:
        return None
    start = at + len(key)
    end = headers.find(b"\r\n", start)
    value = headers[start:end] if end >= 0 else headers[start:]
    return value.strip().decode("utf-8", "replace")


def js_position(reply: bytes) -> tuple[int, int, int]:
    """(stream sequence, stored time in ns since the epoch, messages pending) from an ack
    subject."""
    tokens = reply.split(b".")
    try:
        if len(tokens) == _ACK_TOKENS_V1 and tokens[1] == b"ACK":
            return int(tokens[5]), int(tokens[7]), int(tokens[8])
        if len(tokens) >= _ACK_TOKENS_V2 and tokens[0] == b"$JS" and tokens[1] == b"ACK":
            return int(tokens[7]), int(tokens[9]), int(tokens[10])
    except ValueError:
        pass
    raise DeliveryError(f"not a JetStream delivery: reply {reply[:120]!r}")


def consumer_seq(reply: bytes) -> int:
    """The consumer's own sequence of a delivery (from its ack subject), 0 if unreadable.
    Each delivery of a consumer has the next one: a jump means deliveries went elsewhere (a
    pull whose answer was lost) or the consumer was made anew (lost with its server)."""
    tokens = reply.split(b".")
    try:
        if len(tokens) == _ACK_TOKENS_V1 and tokens[1] == b"ACK":
            return int(tokens[6])
        if len(tokens) >= _ACK_TOKENS_V2 and tokens[0] == b"$JS" and tokens[1] == b"ACK":
            return int(tokens[8])
    except ValueError:
        pass
    return 0


class Puller:
    """``async with Puller(nc, stream, consumer, handle, ...) as puller``: pull requests on
    a consumer, one at a time, each message handed to ``handle(subject, reply, data,
    headers)`` in order, inside the read loop (so it must not wait for a reply on ``nc``).

    ``pull()`` sends a request and returns when it is over: None once the whole batch came
    (or ``stop()`` was called), else the status code that ended it (``b"404"``, ``b"408"``,
    ``b"409"``, ``NO_RESPONDERS``...). A handler that raises stops the puller: nothing after
    that message is handled, and ``pull()`` raises what it raised."""

    def __init__(
        self,
        nc: BusClient,
        stream: str,
        consumer: str,
        handle: RawHandler,
        *,
        batch: int,
        max_bytes: int,
        expires: float,
    ) -> None:
        self._nc = nc
        self._subject = pull_subject(stream, consumer)
        self._request = pull_request(batch, expires=expires, max_bytes=max_bytes)
        self._handle = handle
        self._batch = batch
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._ended = asyncio.Event()
        self._received = 0
        self._code: bytes | None = None
        self._failure: Exception | None = None
        self.stopped = False

    async def __aenter__(self) -> Self:
        self._sub = await self._nc.subscribe_raw(self._inbox, self._on_message)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._nc.unsubscribe_raw(self._sub)

    def stop(self) -> None:
        """Handle nothing more; the current ``pull()`` returns."""
        self.stopped = True
        self._ended.set()

    async def pull(self) -> bytes | None:
        """One pull request, until it is over. Bound it with a timeout: a request lost to a
        reconnect never ends."""
        if not self.stopped:
            self._ended.clear()
            self._received = 0
            self._code = None
            await self._nc.publish(self._subject, self._request, reply=self._inbox)
            await self._ended.wait()
        if self._failure is not None:
            raise self._failure
        return self._code

    async def _on_message(
        self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        if self.stopped:
            return
        code = status(headers)
        if code is not None:
            if code != HEARTBEAT:
                self._code = code
                self._ended.set()
            return
        self._received += 1
        try:
            await self._handle(subject, reply, data, headers)
        except Exception as exc:
            self._failure = exc
            self.stop()
            return
        if self._received >= self._batch:
            self._ended.set()
