"""The peers a user would pick instead of this store, measured beside it in the same run.

- **Redis** (``redis-server`` from Debian's packages, started here on a free loopback port
  with a temporary directory and stopped after; the redis-py asyncio client, with hiredis
  when installed). Reads: the context as **one JSON value** (``SET``/``GET``), exactly the
  bytes our store replies, decoded by the same typed msgspec decoder our client uses: one
  round trip and the same decode, the fastest Redis layout for reading a whole context.
  Writes: one ``HSET`` of the phase's JSON into the context's hash per phase write, the
  cheapest Redis write of a phase (no read-modify-write of a JSON value). Each is Redis at its
  best for that operation. A Redis write is neither ordered across writers, nor audited
  (no history is kept), nor checked (no phase order, no size or shape limits).
- **LangGraph's SQLite checkpointer** (``langgraph-checkpoint-sqlite``'s
  ``AsyncSqliteSaver`` on a temporary file; WAL, Python's default ``synchronous=FULL``: each
  ``aput`` is one committed, fsynced transaction). Reads: ``aget_tuple`` of the thread's
  newest checkpoint, whose channel values are the context's fields (the same context as
  Python objects, as a graph's state holds it; LangGraph returns dicts, our client builds
  typed structs, which costs it more). Writes: one ``aput`` per phase write of a checkpoint
  holding the state so far (each write's body under its kind), as a graph's checkpoint after
  each node holds the whole state. Checkpoints are kept (a history) and ordered per thread.

Peers are optional (``pip install '.[bench]'`` and ``apt-get install redis-server``). When one
cannot be had here, :func:`redis_missing` / :func:`langgraph_missing` say why and the benches
record that it was skipped; nothing is ever faked.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from contracts import Decoders, EvolutionContext

__all__ = [
    "LangGraphPeer",
    "Peers",
    "RedisPeer",
    "langgraph_missing",
    "langgraph_saver",
    "open_peers",
    "peer_versions",
    "redis_missing",
    "redis_server",
]

REDIS_BINARY = "redis-server"


def redis_missing(binary: str = REDIS_BINARY) -> str | None:
    """Why the Redis peer cannot run here, or None when it can."""
    if shutil.which(binary) is None:
        return f"{binary} not found (apt-get install redis-server)"
    if not _importable("redis"):
        return "redis-py not installed (pip install '.[bench]')"
    return None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package absent, or blocked in sys.modules
        return False


def langgraph_missing() -> str | None:
    """Why the LangGraph peer cannot run here, or None when it can."""
    if not _importable("langgraph.checkpoint.sqlite.aio"):
        return "langgraph-checkpoint-sqlite not installed (pip install '.[bench]')"
    return None


def peer_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("redis", "hiredis", "langgraph-checkpoint-sqlite", "langgraph-checkpoint"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    binary = shutil.which(REDIS_BINARY)
    if binary is not None:
        import subprocess

        got = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        out["redis-server"] = got.stdout.strip()
    else:
        out["redis-server"] = None
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisPeer:
    """A redis-py asyncio client of the server :func:`redis_server` started."""

    def __init__(self, port: int, clients: int) -> None:
        import redis.asyncio as redis

        self.port = port
        self._redis = redis
        self.client = redis.Redis(host="127.0.0.1", port=port)
        self.writers = [redis.Redis(host="127.0.0.1", port=port) for _ in range(clients)]
        self._decode = Decoders.context.decode

    async def ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                await self.client.ping()
                return
            except self._redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)  # the server is still binding its port

    async def put_context(self, key: str, reply: bytes) -> None:
        await self.client.set(key, reply)

    async def get_context(self, key: str) -> EvolutionContext:
        data = await self.client.get(key)
        if data is None:
            raise KeyError(f"redis has no {key!r}")
        return self._decode(data)

    async def hset_pipelined(
        self, writer: int, items: Sequence[tuple[str, str, bytes]], window: int = 256
    ) -> None:
        """(key, field, value) HSETs in pipelined windows, like the store's ``publish_async``
        windows: each window sent at once, its replies awaited."""
        client = self.writers[writer]
        for start in range(0, len(items), window):
            pipe = client.pipeline(transaction=False)
            for key, fld, value in items[start : start + window]:
                pipe.hset(key, fld, value)
            await pipe.execute()

    async def hset_awaited(self, writer: int, items: Sequence[tuple[str, str, bytes]]) -> None:
        client = self.writers[writer]
        for key, fld, value in items:
            await client.hset(key, fld, value)

    async def used_memory(self) -> int:
        info = await self.client.info("memory")
        return int(info["used_memory"])

    async def aclose(self) -> None:
        for c in (self.client, *self.writers):
            with contextlib.suppress(Exception):
                await c.aclose()


@contextlib.asynccontextmanager
async def redis_server(
    tmp: Path, *, fsync: str = "everysec", clients: int = 4, binary: str = REDIS_BINARY
) -> AsyncIterator[RedisPeer]:
    """``redis-server`` on a free loopback port, its files in ``tmp``, stopped on exit.

    ``fsync``: ``appendfsync`` of its append-only file: ``everysec`` (written to the OS at
    once, fsynced each second: like JetStream's default, which writes each message and
    fsyncs periodically) or ``always`` (fsynced before replying: like ``sync_interval:
    always``). RDB snapshots are off."""
    folder = tmp / f"redis-{fsync}"
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    # The config file keeps the empty ``save ""`` argument intact (no shell quoting).
    conf = folder / "redis.conf"
    conf.write_text(
        "\n".join(
            (
                f"port {port}",
                "bind 127.0.0.1",
                "protected-mode yes",
                f'dir "{folder}"',
                'save ""',
                "appendonly yes",
                f"appendfsync {fsync}",
                "daemonize no",
                f'logfile "{folder / "redis.log"}"',
            )
        )
        + "\n"
    )
    proc = await asyncio.create_subprocess_exec(
        binary, str(conf), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
    )
    peer = RedisPeer(port, clients)
    try:
        try:
            await peer.ready()
        except Exception as exc:
            log = (folder / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server did not start: {log}") from exc
        yield peer
    finally:
        await peer.aclose()
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


class LangGraphPeer:
    """An ``AsyncSqliteSaver`` on one SQLite file."""

    def __init__(self, saver: Any) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        self.saver = saver
        self._empty = empty_checkpoint

    async def put(self, thread: str, state: dict[str, Any], step: int, parent: str | None) -> str:
        """One checkpoint of ``state`` (its keys as the graph's channels); returns its id."""
        checkpoint = self._empty()
        checkpoint["channel_values"] = state
        checkpoint["channel_versions"] = dict.fromkeys(state, step)
        config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        if parent is not None:
            config["configurable"]["checkpoint_id"] = parent
        got = await self.saver.aput(
            config, checkpoint, {"source": "loop", "step": step}, dict.fromkeys(state, step)
        )
        checkpoint_id: str = got["configurable"]["checkpoint_id"]
        return checkpoint_id

    async def get(self, thread: str) -> dict[str, Any]:
        """The thread's newest checkpoint's state, as the saver decodes it."""
        got = await self.saver.aget_tuple({"configurable": {"thread_id": thread}})
        if got is None:
            raise LookupError(thread)
        state: dict[str, Any] = got.checkpoint["channel_values"]
        return state

    async def put_evolution(self, thread: str, writes: Sequence[tuple[str, bytes]]) -> None:
        """One checkpoint per write: the state so far, each write's body under its kind."""
        state: dict[str, Any] = {}
        parent = None
        for step, (kind, body) in enumerate(writes):
            state = {**state, kind: msgspec.json.decode(body)}
            parent = await self.put(thread, state, step, parent)


@contextlib.asynccontextmanager
async def langgraph_saver(path: Path) -> AsyncIterator[LangGraphPeer]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield LangGraphPeer(saver)


class Peers:
    """The peers that could be started here, and why the others were skipped."""

    def __init__(
        self, redis: RedisPeer | None, langgraph: LangGraphPeer | None, skipped: dict[str, str]
    ) -> None:
        self.redis = redis
        self.langgraph = langgraph
        self.skipped = skipped

    async def hold(self, name: str, reply: bytes, expected: EvolutionContext) -> dict[str, Any]:
        """Store the context ``reply`` (our store's reply bytes) under ``name`` in each peer;
        returns the read variants for the latency bench. Each peer's read is checked once
        to give back the very context our client got (``expected``)."""
        variants: dict[str, Any] = {}
        if (redis := self.redis) is not None:
            key = f"ctx:{name}"
            await redis.put_context(key, reply)
            if await redis.get_context(key) != expected:
                raise AssertionError("Redis gave back another context")
            variants["redis"] = lambda: redis.get_context(key)
        if (graph := self.langgraph) is not None:
            state = msgspec.json.decode(reply)
            await graph.put(name, state, 0, None)
            if await graph.get(name) != state:
                raise AssertionError("LangGraph gave back another state")
            variants["langgraph"] = lambda: graph.get(name)
        return variants


@contextlib.asynccontextmanager
async def open_peers(
    tmp: Path, *, redis_fsync: str = "everysec", clients: int = 4, langgraph: bool = True
) -> AsyncIterator[Peers]:
    """Every peer that can run here (started now, stopped on exit)."""
    async with contextlib.AsyncExitStack() as stack:
        skipped: dict[str, str] = {}
        redis: RedisPeer | None = None
        graph: LangGraphPeer | None = None
        if (why := redis_missing()) is None:
            redis = await stack.enter_async_context(
                redis_server(tmp, fsync=redis_fsync, clients=clients)
            )
        else:
            skipped["redis"] = why
        if langgraph:
            if (why := langgraph_missing()) is None:
                path = tmp / f"langgraph-{time.monotonic_ns()}.sqlite"
                graph = await stack.enter_async_context(langgraph_saver(path))
            else:
                skipped["langgraph"] = why
        yield Peers(redis, graph, skipped)
