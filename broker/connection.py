"""Connections to NATS with settings that fit long-running actors and short-lived tools."""

from __future__ import annotations

import logging
from typing import Any

import nats
from nats.aio.client import Client

__all__ = ["connect"]

log = logging.getLogger("ctxstore.broker")

_CLIENT_RECONNECT_ATTEMPTS = 120  # x 0.5 s: a minute


async def connect(
    url: str,
    *,
    name: str,
    long_running: bool = False,
    connect_timeout: float = 2.0,
) -> Client:
    """Connect to ``url``.

    A long-running process (the store actor, an agent) waits for the server and reconnects
    forever; others give up after a few attempts when the server is missing at the start,
    and reconnect for up to a minute once connected. All notice a dead server within seconds.
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats error on %s: %r", name, exc)

    async def on_disconnect() -> None:
        log.info("%s disconnected from %s", name, url)

    async def on_reconnect() -> None:
        log.info("%s reconnected to %s", name, url)

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
    nc: Client = await nats.connect(**options)
    if not long_running:
        # Fail fast on the first connection, but once connected ride out a server restart:
        # nats-py reads this option again at each reconnection.
        nc.options["max_reconnect_attempts"] = _CLIENT_RECONNECT_ATTEMPTS
    return nc
