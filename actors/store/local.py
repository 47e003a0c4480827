"""The local store: one directory, served by one process at a time.

``LocalStack`` runs the embedded server on the directory and a store actor on it, holding the
directory's ``server.lock`` while it runs and recording its URL in ``server.json`` (the rules
are in ``broker.home``). ``ctxstore serve`` runs one; so does the server a URL-less client
starts (``ctxstore serve --exit-when-unused``), and tests and benchmarks run one in-process.

It supervises the ``nats-server`` child: when it dies, it is started again on the same port
and store directory (clients reconnect to the URL they had) with a new store actor, which
rebuilds its state from the stream; the old one's may describe writes a memory-backed
stream no longer has. After too many deaths in a short time it gives up and fails, so the
process exits non-zero and whatever supervises it (or the next client) takes over: a server
that keeps dying (a full disk, a corrupt store) is not restarted forever.

A partitioned store (``CONTEXT_STORE_PARTITIONS`` > 1) runs one actor per partition here,
each on its own connection: correct, not faster (one process runs one thread of Python at a
time); run ``ctxstore serve --nats-url URL --partition K`` processes to spread the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from pathlib import Path
from typing import Final

from actors.core.sealing import jetstream_key
from actors.runtime import Actor
from actors.store.actor import StoreActor
from actors.store.metrics import StoreMetrics
from broker import BrokerError, BusClient, EmbeddedServer, StoreConfig, connect, redact
from broker.accounts import AuthDirectory
from broker.home import (
    SERVER_LOCK,
    FileLock,
    forget_server,
    lock_holder,
    read_record,
    record_server,
)

__all__ = ["DirectoryInUseError", "LocalStack"]

log = logging.getLogger("ctxstore.local")

_MAX_RESTARTS: Final = 5  # within _RESTART_WINDOW_S, then give up
_RESTART_WINDOW_S: Final = 60.0
_FIRST_BACKOFF_S: Final = 0.1
_MAX_BACKOFF_S: Final = 2.0
_LOG_LINES: Final = 10  # of the nats-server's log, in a report of its death


class DirectoryInUseError(BrokerError):
    """Another process serves this local store directory."""

    def __init__(self, home: Path) -> None:
        pid, record = lock_holder(home), read_record(home)
        who = f"pid {pid}" if pid is not None else "another process"
        if record is not None and record.pid == pid:
            where = f"is already served by {who} at {redact(record.url)}"
        else:
            where = f"is being served by {who} (starting or stopping)"
        super().__init__(f"the local store in {home} {where}")
        self.pid = pid


class LocalStack(Actor):
    """An embedded server on ``home`` plus a store actor, owned by this process.

    ``start()`` takes the directory (``server.lock``) unless ``try_take_directory()`` did,
    and raises ``DirectoryInUseError`` if another process holds it."""

    actor_name = "ctxstore-local"

    def __init__(
        self,
        home: Path,
        config: StoreConfig,
        *,
        port: int = 0,
        owns_process: bool = False,
        metrics: StoreMetrics | None = None,
        auth_dir: Path | None = None,
    ) -> None:
        """``metrics``: given to each store actor it starts (one after each restart of the
        server), so that its figures go on across restarts. ``auth_dir``: what ``ctxstore
        auth init`` wrote: the server takes its accounts and users, and one store actor per
        tenant runs, signed in as that tenant's actor."""
        super().__init__()
        self.home = Path(home)
        self.config = config
        self.auth = None if auth_dir is None else AuthDirectory(Path(auth_dir))
        key = config.key
        self.server = EmbeddedServer(
            self.home / "nats",
            port=port,
            sync_always=config.sync == "always",
            max_payload=max(config.max_payload * 2, 1024 * 1024),
            include=None if self.auth is None else self.auth.accounts,
            cipher_key=None if key is None else jetstream_key(key),
        )
        self.actor: StoreActor | None = None
        # The other tenants' actors, and the other partitions'.
        self.tenant_actors: list[tuple[BusClient, StoreActor]] = []
        self.restarts = 0  # of the nats-server, by supervision
        self._nc: BusClient | None = None
        self._lock = FileLock(self.home / SERVER_LOCK)
        self._owns_process = owns_process
        self.metrics = metrics or StoreMetrics()

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> None:
        """Start, or raise why not (``DirectoryInUseError``, a ``BrokerError``...) as such
        rather than in the group the actor's task group wraps it in."""
        try:
            await super().start()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def aclose(self) -> None:
        """Stop. A failure that stopped it already is ``wait()``'s to raise, not this: so
        ``async with`` does not replace the error being handled with the same one."""
        try:
            await super().aclose()
        except* Exception:
            pass

    def try_take_directory(self) -> bool:
        """Hold ``server.lock`` if no other process does. ``start()`` serves under it;
        without a start, ``release_directory()`` lets it go."""
        if not self._lock.held:
            if not self._lock.try_acquire():
                return False
            self._lock.write_pid()
            forget_server(self.home, anyone=True)  # what a killed holder left
        return True

    def release_directory(self) -> None:
        """Let go of ``server.lock`` if this stack holds it and does not serve."""
        if not self.running:
            self._lock.release()

    async def on_start(self) -> None:
        if not self.try_take_directory():
            raise DirectoryInUseError(self.home)
        await self.server.start()
        await self._start_actor()
        record_server(self.home, self.server.url, self.config.server_environment())
        self.spawn(self._supervise(), name="ctxstore-local-supervisor")

    async def on_stop(self) -> None:
        if self._lock.held:
            forget_server(self.home)
        await self._stop_actor(server_alive=True)
        await self.server.stop()
        self._lock.release()

    async def _start_actor(self) -> None:
        if self.auth is None:
            runs = [(self.config, "ctxstore-actor")]
        else:
            runs = [
                (
                    self.config.replace(tenant=tenant, auth=self.auth.auth(tenant, "actor")),
                    f"ctxstore-actor-{tenant}",
                )
                for tenant in self.auth.tenants()
            ]
        for config, name in runs:
            for partition in range(config.partitions):
                first = self.actor is None
                nc = await connect(
                    self.server.url,
                    name=name if partition == 0 else f"{name}-p{partition}",
                    long_running=True,
                    auth=config.auth,
                )
                actor = StoreActor(
                    nc,
                    config,
                    owns_process=self._owns_process,
                    # The first actor's figures go on across restarts (and are served).
                    metrics=self.metrics if first and self.auth is None else None,
                    partition=partition,
                )
                if first:
                    self._nc, self.actor = nc, actor
                else:
                    self.tenant_actors.append((nc, actor))
                await actor.start()

    async def _stop_actor(self, *, server_alive: bool) -> None:
        others, self.tenant_actors = self.tenant_actors, []
        for other_nc, other in others:
            if not server_alive:
                with contextlib.suppress(Exception):
                    await other_nc.close()
            try:
                await other.aclose()
            except Exception as exc:  # as for the first tenant's actor below
                if server_alive:
                    raise
                log.warning("a tenant's store actor stopped with its server: %r", exc)
            with contextlib.suppress(Exception):
                await other_nc.close()
        actor, self.actor = self.actor, None
        nc, self._nc = self._nc, None
        if nc is not None and not server_alive:
            # Nothing to say goodbye to: close first, so the actor's stop does not wait on
            # a connection that is reconnecting.
            with contextlib.suppress(Exception):
                await nc.close()
        if actor is not None:
            try:
                await actor.aclose()
            except Exception as exc:  # it may fail as its server went away: it is replaced
                if server_alive:
                    raise
                log.warning("the store actor stopped with its server: %r", exc)
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await nc.drain()
            with contextlib.suppress(Exception):
                await nc.close()

    async def _until_server_exits(self) -> int:
        """The nats-server's exit code once it exits; raises if the actor stops first."""
        assert self.actor is not None
        exited = asyncio.ensure_future(self.server.exited())
        stopped = asyncio.ensure_future(self.actor.wait())
        try:
            await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exited, stopped):
                task.cancel()
            await asyncio.gather(exited, stopped, return_exceptions=True)
        if exited.done() and not exited.cancelled():
            return exited.result()
        failure = None if stopped.cancelled() else stopped.exception()
        raise BrokerError(f"the store actor stopped: {failure!r}") from failure

    def _tail(self) -> str:
        return "\n".join(self.server.log_tail.splitlines()[-_LOG_LINES:])

    async def _supervise(self) -> None:
        deaths: deque[float] = deque()
        loop = asyncio.get_running_loop()
        while True:
            code = await self._until_server_exits()
            log.warning("nats-server exited with code %s; its last lines:\n%s", code, self._tail())
            await self._stop_actor(server_alive=False)
            while True:
                now = loop.time()
                deaths.append(now)
                while now - deaths[0] > _RESTART_WINDOW_S:
                    deaths.popleft()
                if len(deaths) > _MAX_RESTARTS:
                    raise BrokerError(
                        f"nats-server died {len(deaths)} times within {_RESTART_WINDOW_S:.0f}s; "
                        f"not restarting it again. Its last lines:\n{self._tail()}"
                    )
                backoff = min(_FIRST_BACKOFF_S * 2 ** (len(deaths) - 1), _MAX_BACKOFF_S)
                await asyncio.sleep(backoff)
                try:
                    await self.server.restart()
                    await self._start_actor()
                except Exception as exc:  # counted as another death; retried or given up
                    log.warning("restarting nats-server failed: %r", exc)
                    await self._stop_actor(server_alive=False)
                    await self.server.stop()
                    continue
                break
            self.restarts += 1
            log.warning("nats-server restarted on %s (restart %d)", redact(self.url), self.restarts)
