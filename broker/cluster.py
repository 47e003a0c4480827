"""A cluster of embedded ``nats-server`` processes on one machine: for tests, benchmarks and
trying a replicated store out. Each member has its own ``server_name``, client port, cluster
port and store directory, and routes to all members.

``async with LocalCluster(root, size=3) as cluster: cluster.urls`` starts them, waits until
JetStream can place a replicated stream, and stops them all at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

import nats.errors
from nats.js.api import StorageType, StreamConfig

from broker.connection import connect
from broker.server import ClusterSettings, EmbeddedServer
from contracts.errors import BrokerError

__all__ = ["LocalCluster", "free_port"]

_PROBE = "CTXSTORE_CLUSTER_PROBE"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (a member's ports must be known before it starts)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    def __init__(self, root: Path, *, size: int = 3, name: str = "ctxstore", **server: Any) -> None:
        self.root = Path(root)
        cluster_ports = [free_port() for _ in range(size)]
        routes = tuple(f"nats-route://127.0.0.1:{p}" for p in cluster_ports)
        self.nodes = [
            EmbeddedServer(
                self.root / f"n{i}",
                port=free_port(),
                server_name=f"n{i}",
                cluster=ClusterSettings(name, cluster_ports[i], routes),
                **server,
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> str:
        """Every member's URL, comma-separated (as ``NATS_URL`` takes them)."""
        return ",".join(node.url for node in self.nodes if node.port is not None)

    def node(self, server_name: str) -> EmbeddedServer:
        for node in self.nodes:
            if node.server_name == server_name:
                return node
        raise KeyError(server_name)

    async def start(self, patience: float = 30.0) -> None:
        await asyncio.gather(*(node.start() for node in self.nodes))
        await self.wait_ready(patience)

    async def wait_ready(self, patience: float = 30.0, replicas: int | None = None) -> None:
        """Until JetStream places (and removes) a stream with ``replicas`` copies (default:
        every member): the meta leader is elected and enough members are up."""
        replicas = replicas or len(self.nodes)
        nc = await connect(self.urls, name="ctxstore-cluster-probe", reconnect_attempts=-1)
        js = nc.jetstream(timeout=2.0)
        config = StreamConfig(
            name=_PROBE, subjects=[], storage=StorageType.MEMORY, num_replicas=replicas
        )
        try:
            async with asyncio.timeout(patience):
                while True:
                    try:
                        await js.add_stream(config)
                        await js.delete_stream(_PROBE)
                        return
                    except (nats.errors.Error, TimeoutError):
                        await asyncio.sleep(0.1)
        except TimeoutError:
            raise BrokerError(f"the cluster's JetStream was not ready in {patience}s") from None
        finally:
            await nc.close()

    async def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                await node.stop()

    async def __aenter__(self) -> LocalCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
