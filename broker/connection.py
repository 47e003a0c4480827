"""Connections to NATS with settings that fit long-running actors and short-lived tools."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from broker.redact import redact

__all__ = ["BusClient", "RawHandler", "connect"]

log = logging.getLogger("ctxstore.broker")

_CLIENT_RECONNECT_ATTEMPTS = 120  # x 0.5 s: a minute

RawHandler = Callable[[bytes, bytes, bytes, bytes | None], Awaitable[None]]
"""``handler(subject, reply, data, headers)``: a message as the protocol parser read it;
``headers`` is the raw header block (``NATS/1.0...``), or None."""


class BusClient(Client):
    """nats-py's client, plus raw subscriptions for hot paths.

    A raw subscription's messages skip what nats-py does for every message: header parsing
    into a dict, a ``Msg`` object, a queue and a task switch. Its handler runs inside the read
    loop, so one message at a time, in order, and nothing more is read from the socket until
    it returns: it must not wait on anything that needs a reply from this connection. The
    store actor's write intake spent about a fifth of its CPU in those steps. Everything
    else (reconnection, pings, re-subscribing, other subscriptions) is nats-py's own.
    """

    def __init__(self) -> None:
        super().__init__()
        self._raw_handlers: dict[int, RawHandler] = {}

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
        if handler is None:
            # nats-py's parser passes None when a message has no headers; its hint says bytes.
            await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        try:
            await handler(subject, reply, data, headers)
        except Exception as exc:  # the read loop must go on: report it as nats-py would
            await self._error_cb(exc)


async def connect(
    url: str,
    *,
    name: str,
    long_running: bool = False,
    connect_timeout: float = 2.0,
) -> BusClient:
    """Connect to ``url``.

    A long-running process (the store actor, an agent) waits for the server and reconnects
    forever; others give up after a few attempts when the server is missing at the start,
    and reconnect for up to a minute once connected. All notice a dead server within seconds.
    """

    shown = redact(url)  # logs never carry a password or a token

    async def on_error(exc: Exception) -> None:
        log.warning("nats error on %s: %s", name, redact(repr(exc)))

    async def on_disconnect() -> None:
        log.info("%s disconnected from %s", name, shown)

    async def on_reconnect() -> None:
        log.info("%s reconnected to %s", name, shown)

    options: dict[str, Any] = dict(
        servers=[url],
        name=name,
        connect_timeout=connect_timeout,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        ping_interval=5,
        max_outstanding_pings=3,
        reconnect_time_wait=0.5,
        max_reconnect_attempts=-1 if long_running else 3,
        allow_reconnect=True,
        pending_size=64 * 1024 * 1024,
    )
    nc = BusClient()
    await nc.connect(**options)
    if not long_running:
        # Fail fast on the first connection, but once connected ride out a server restart:
        # nats-py reads this option again at each reconnection.
        nc.options["max_reconnect_attempts"] = _CLIENT_RECONNECT_ATTEMPTS
    return nc
