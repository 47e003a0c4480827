"""Ready means served: when a host says it is started, its subscriptions are on the server.

nats-py's ``flush()`` writes its PING straight to the socket, ahead of commands still in
its pending buffer (such as the SUB of an endpoint just added), so its PONG proves nothing
about them: a request from another connection could still find no responders (seen once in
CI under load, from ``tests/test_poison.py``). The relay below sits between a connection and
a real nats-server and records what the client sent, in order: whatever a host subscribed
before it reported ready must precede the last PING it waited on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client
from tcprelay import TcpRelay, forward

from actors import SharedContextStore
from actors.evolution.agents.base import Agent, AgentHost
from broker import EmbeddedServer, StoreConfig, connect
from contracts import agent_subject

_PING = b"PING\r\n"


class _Relay(TcpRelay):
    """Keeps every byte a client sent to the server."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.sent = bytearray()

    async def to_server(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        async def keep(chunk: bytes) -> None:
            self.sent += chunk

        await forward(src, dst, keep)


class _Echo(Agent):
    name = "echo"

    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        return {"ok": True}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_an_agent_host_is_ready_only_once_the_server_has_its_endpoints(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    relay = _Relay(_port(server.url))
    async with (
        relay,
        SharedContextStore(config=config, name="echo-store") as store,
    ):
        host_nc = await connect(relay.url, name="host", long_running=True)
        try:
            async with AgentHost(host_nc, [_Echo(store)], tenant="default"):
                sent = bytes(relay.sent)
                sub = sent.find(b"SUB " + agent_subject("default", "echo").encode())
                assert sub >= 0, "the endpoint's SUB was never sent"
                assert sent.rfind(_PING) > sub, (
                    "the host reported ready on a PONG that came before its endpoint's SUB"
                )
                # Served: an invalid request gets the host's error reply, not "no responders".
                reply = await nc.request(agent_subject("default", "echo"), b"{}", timeout=10)
                assert reply.headers is not None
                assert reply.headers.get("Nats-Service-Error-Code") == "400"
        finally:
            await host_nc.close()
