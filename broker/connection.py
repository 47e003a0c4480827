"""Connections to NATS with settings that fit long-running actors and short-lived tools."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from broker.auth import NatsAuth, split_servers
from broker.redact import redact

__all__ = ["BusClient", "RawHandler", "connect"]

log = logging.getLogger("ctxstore.broker")

_RECONNECT_ATTEMPTS: Final = 3
_RECONNECT_WAIT_S: Final = 0.5

RawHandler = Callable[[bytes, bytes, bytes, bytes | None], Awaitable[None]]
"""``handler(subject, reply, data, headers)``: a message as the protocol parser read it;
``headers`` is the raw header block (``NATS/1.0...``), or None."""


class BusClient(Client):
    """nats-py's client, hardened against poison messages, plus raw subscriptions.

    Poison: nats-py decodes each message's subject, reply and headers inside its read loop,
    and an exception there (a subject that is not UTF-8: any client can publish one through
    the raw protocol) ends the read loop for good while the connection still reports itself
    connected: the process goes deaf. Here an undecodable subject or reply reaches nats-py
    with its bad bytes replaced (so a JetStream delivery can still be rejected and acked),
    and anything else that fails while nats-py processes one message is reported through
    the error callback and that message dropped: the read loop goes on.

    A raw subscription's messages skip what nats-py does for every message: header parsing
    into a dict, a ``Msg`` object, a queue and a task switch. Its handler runs inside the read
    loop, so one message at a time, in order, and nothing more is read from the socket until
    it returns: it must not wait on anything that needs a reply from this connection. The
    store actor's write intake spent about a fifth of its CPU in those steps. Everything
    else (reconnection, pings, re-subscribing, other subscriptions) is nats-py's own.

    Both rely on nats-py's private ``Client._process_msg(sid, subject, reply, data, headers)``;
    ``broker.intake.check_raw_delivery`` verifies at start-up that it is still called so.
    """

    def __init__(self) -> None:
        super().__init__()
        self._raw_handlers: dict[int, RawHandler] = {}
        self.report: Callable[[Exception], Awaitable[None]] = _ignore
        self.raw_delivery_ok: bool | None = None  # broker.intake's self-check, once done

    async def flush(self, timeout: int = 10) -> None:  # noqa: ASYNC109 (nats-py's signature)
        """Return once the server has processed everything sent before the call.

        nats-py's own ``flush()`` writes its PING straight to the socket, ahead of the
        commands still in its pending buffer (the SUB of a subscription just made), so its
        PONG proves nothing about them, and a host that says it is ready may not be served
        yet. The first round trip lets nats-py's flusher write the buffer; the second PING
        goes after it. One more loopback round trip (about 0.1 ms), paid when a process
        starts serving, not per message."""
        await super().flush(timeout)
        await super().flush(timeout)

    async def subscribe_raw(self, subject: str, handler: RawHandler) -> Subscription:
        """Subscribe ``handler``; end it with ``unsubscribe_raw``."""
        sub = await self.subscribe(subject)
        self._raw_handlers[sub._id] = handler
        return sub

    async def unsubscribe_raw(self, sub: Subscription) -> None:
        self._raw_handlers.pop(sub._id, None)
        await sub.unsubscribe()

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self._raw_handlers.get(sid)
        try:
            if handler is None:
                subject, reply = _utf8(subject), _utf8(reply)
                # nats-py's parser passes None for a message without headers; its hint: bytes.
                await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
                return
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
            await handler(subject, reply, data, headers)
        except Exception as exc:  # the read loop must go on: report it as nats-py would
            await self.report(exc)


async def _ignore(exc: Exception) -> None:
    pass


def _utf8(value: bytes) -> bytes:
    try:
        value.decode()
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace").encode()
    return value


async def connect(
    url: str,
    *,
    name: str,
    long_running: bool = False,
    connect_timeout: float = 2.0,
    reconnect_attempts: int | None = None,
    auth: NatsAuth | None = None,
) -> BusClient:
    """Connect to ``url``: one server, or several separated by commas (the members of a
    cluster: any one will do, and the connection moves to another when its server goes),
    signed in with ``auth`` (``broker.auth``; a URL's own ``user:password@`` works too).

    A long-running process (the store actor, an agent host) waits for the server and
    reconnects forever. Other connections try ``reconnect_attempts`` times (default 3),
    0.5 s apart: to reach the server at the start, and to get it back once connected (one
    nats-py option governs both). Past that nats-py closes the connection for good, and its
    owner must connect anew: a ``SharedContextStore`` does so on its next call. All notice a
    dead server within seconds.
    """
    attempts = -1 if long_running else _RECONNECT_ATTEMPTS
    if reconnect_attempts is not None:
        attempts = reconnect_attempts

    shown = redact(url)  # logs never carry a password or a token

    async def on_error(exc: Exception) -> None:
        log.warning("nats error on %s: %s", name, redact(repr(exc)))

    async def on_disconnect() -> None:
        log.info("%s disconnected from %s", name, shown)

    async def on_reconnect() -> None:
        log.info("%s reconnected to %s", name, shown)

    async def on_close() -> None:
        log.info("%s closed its connection to %s", name, shown)

    options: dict[str, Any] = dict(
        servers=split_servers(url),
        name=name,
        connect_timeout=connect_timeout,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        closed_cb=on_close,
        ping_interval=5,
        max_outstanding_pings=3,
        reconnect_time_wait=_RECONNECT_WAIT_S,
        max_reconnect_attempts=attempts,
        allow_reconnect=True,
        pending_size=64 * 1024 * 1024,
    )
    if auth is not None:
        options.update(auth.connect_options())
    nc = BusClient()
    nc.report = on_error
    await nc.connect(**options)
    return nc
