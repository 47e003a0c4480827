"""``ctxstore serve``: the server (embedded unless a URL is given) and the store actor.

On the local store directory it is the one server of that directory (``broker.home``): a
second ``serve`` says who serves it and exits 1. ``--exit-when-unused`` (internal) is the
server a URL-less client starts: it logs to ``server.log`` and stops once no client has used
it for ``$CTXSTORE_SERVER_GRACE`` seconds (default 1.5), so back-to-back commands share one
server.

With ``CONTEXT_STORE_PARTITIONS`` > 1 it runs one actor per partition, or, with ``--nats-url``
and ``--partition K``, partition K's only: one such process per partition (and more as
standbys), on as many cores or nodes, is how partitions add throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Final

from actors.cli.common import stop_signals, store_config
from actors.store import LocalStack, StoreActor
from actors.store.local import DirectoryInUseError
from actors.store.metrics import MetricsServer, StoreMetrics
from broker import BrokerError, ConfigError, StoreConfig, connect
from broker.home import LOG, USERS_LOCK, FileLock
from broker.redact import redact

__all__ = ["cmd_serve"]

log = logging.getLogger("ctxstore.serve")

# No user for this long: stop (a next command within it reuses this server).
GRACE_VARIABLE: Final = "CTXSTORE_SERVER_GRACE"
_DEFAULT_GRACE_S: Final = 1.5
_IDLE_POLL_S: Final = 0.2
_LOST_RACE_S: Final = 0.5  # how long a started server waits for server.lock
_LOG_ROTATE_BYTES: Final = 1024 * 1024


async def _until_first(**waits: Awaitable[Any]) -> tuple[str, Any]:
    """The name and result of the first of ``waits`` to finish (its failure raises); the
    others are cancelled."""
    tasks = {asyncio.ensure_future(w): name for name, w in waits.items()}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(iter(done))
    return tasks[first], first.result()


async def _stack_failure(stack: LocalStack) -> None:
    """Until the stack stops on its own; then raise why, as one error of ours."""
    try:
        await stack.wait()
    except BaseExceptionGroup as group:
        failure = group.exceptions[0]
        if isinstance(failure, BrokerError):
            raise failure from None
        raise BrokerError(f"the local store stopped: {failure!r}") from failure
    raise BrokerError("the local store stopped")


async def _until_signal_or_stopped(actors: list[StoreActor], signalled_: asyncio.Event) -> None:
    """Until SIGINT/SIGTERM, or until an actor stops on its own: then raise why, so the
    process exits non-zero and its supervisor restarts it (the restart replays)."""
    signalled = asyncio.create_task(signalled_.wait())
    stopped = [asyncio.create_task(actor.wait()) for actor in actors]
    try:
        await asyncio.wait({signalled, *stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
        for task in stopped:
            task.cancel()
    for task in stopped:
        if task.done() and not task.cancelled():
            task.result()  # raises the failure
            raise RuntimeError("the store actor stopped")


def _grace() -> float:
    raw = os.environ.get(GRACE_VARIABLE, "")
    try:
        grace = float(raw) if raw else _DEFAULT_GRACE_S
    except ValueError:
        grace = -1.0
    if not grace >= 0:  # NaN too
        raise ConfigError(f"{GRACE_VARIABLE}: expected seconds (a number >= 0), got {raw!r}")
    return grace


async def _until_unused(home: Path, grace: float) -> FileLock:
    """Once no client has held ``users.lock`` for ``grace`` seconds: the lock, held
    exclusively, so that a newcomer waits until this server is gone and starts a new one."""
    users = FileLock(home / USERS_LOCK)
    loop = asyncio.get_running_loop()
    idle_since: float | None = None
    while True:
        if users.try_acquire():
            now = loop.time()
            idle_since = now if idle_since is None else idle_since
            if now - idle_since >= grace:
                return users
            users.release()
        else:
            idle_since = None
        await asyncio.sleep(_IDLE_POLL_S)


def _has_users(home: Path) -> bool:
    users = FileLock(home / USERS_LOCK)
    if users.try_acquire():
        users.release()
        return False
    return True


def _rotate_log(home: Path) -> None:
    """Keep ``server.log`` small: past a size, move it to ``server.log.1`` and write to a new
    one (this process's stdout and stderr are that file)."""
    path = home / LOG
    try:
        if path.stat().st_size < _LOG_ROTATE_BYTES:
            return
        os.replace(path, path.with_name(LOG + ".1"))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


async def _serve_its_users(home: Path, config: StoreConfig) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    grace = _grace()
    stack = LocalStack(home, config, owns_process=True)
    try:
        # The client that started this one may be probing the lock at this very moment.
        async with asyncio.timeout(_LOST_RACE_S):
            while not stack.try_take_directory():  # noqa: ASYNC110 (flock: nothing to await)
                await asyncio.sleep(0.01)
    except TimeoutError:
        log.info("%s: not starting another", DirectoryInUseError(home))
        return 0
    if not _has_users(home):
        # Started for a client that has gone, or one that another server served while this
        # one waited for the directory: nobody would use it.
        log.info("no client waits for a server: not starting")
        stack.release_directory()
        return 0
    await stack.start()
    _rotate_log(home)
    users: FileLock | None = None
    try:
        with stop_signals() as signalled:
            log.info("serving %s on %s until no client uses it", home, redact(stack.url))
            why, result = await _until_first(
                signal=signalled.wait(),
                failure=_stack_failure(stack),
                unused=_until_unused(home, grace),
            )
        if why == "unused":
            users = result
            log.info("no client left: stopping")
        else:
            log.info("stopping on a signal")
    finally:
        await stack.aclose()  # releases server.lock
        if users is not None:
            users.release()  # only now: a newcomer then finds no server and starts one
    return 0


@contextlib.asynccontextmanager
async def _metrics_endpoint(args: argparse.Namespace, metrics: StoreMetrics) -> AsyncIterator[None]:
    """``/metrics`` over HTTP while the block runs, with ``--metrics-port``. Started before
    the store: a port already taken fails the command before anything else starts."""
    if args.metrics_port is None:
        yield
        return
    endpoint = MetricsServer(metrics.registry, host=args.metrics_host, port=args.metrics_port)
    endpoint.start()
    print(f"Prometheus metrics on {endpoint.url}", flush=True)
    try:
        yield
    finally:
        await endpoint.aclose()


async def cmd_serve(args: argparse.Namespace) -> int:
    config = store_config(args, backend=args.backend)
    metrics = StoreMetrics()
    if config.nats_url:
        shown = redact(config.nats_url)
        if args.auth is not None:
            raise ConfigError(
                "--auth runs the embedded server; with --nats-url, start one 'ctxstore serve' "
                "per tenant signed in as its actor (--nkey DIR/<tenant>/actor.nk)"
            )
        async with _metrics_endpoint(args, metrics):
            return await _serve_url(config, shown, metrics, _partitions(config, args.partition))
    if args.partition is not None:
        raise ConfigError(
            "--partition serves one partition of a store on a server you run: give --nats-url"
        )
    home = args.store_dir or args.home
    if args.exit_when_unused:
        return await _serve_its_users(home, config)
    async with (
        _metrics_endpoint(args, metrics),
        LocalStack(
            home,
            config,
            port=args.port,
            owns_process=True,
            metrics=metrics,
            auth_dir=args.auth,
        ) as stack,
    ):
        with stop_signals() as signalled:
            shown = redact(stack.url)
            print(f"ctxstore serving on {shown} (store dir {home})")
            print(f"agents connect with: NATS_URL={shown}", flush=True)
            await _until_first(signal=signalled.wait(), failure=_stack_failure(stack))
    return 0


def _partitions(config: StoreConfig, partition: int | None) -> list[int]:
    if partition is None:
        return list(range(config.partitions))
    if not 0 <= partition < config.partitions:
        raise ConfigError(
            f"--partition {partition}: the store has {config.partitions} partition(s) "
            "(CONTEXT_STORE_PARTITIONS), numbered from 0"
        )
    return [partition]


async def _serve_url(
    config: StoreConfig, shown: str, metrics: StoreMetrics, partitions: list[int]
) -> int:
    """The store actors (of ``partitions``) alone, on the server at ``config.nats_url``."""
    assert config.nats_url is not None
    async with contextlib.AsyncExitStack() as stack:
        actors = []
        for i, partition in enumerate(partitions):
            name = "ctxstore-actor" if config.partitions == 1 else f"ctxstore-actor-{partition}"
            nc = await connect(config.nats_url, name=name, long_running=True, auth=config.auth)
            stack.push_async_callback(nc.close)
            actor = StoreActor(
                nc,
                config,
                owns_process=len(partitions) == 1,
                metrics=metrics if i == 0 else None,
                partition=partition,
            )
            actors.append(await stack.enter_async_context(actor))
        with stop_signals() as signalled:
            which = "" if config.partitions == 1 else f", partitions {partitions}"
            print(f"store actor serving {shown} (seq {actors[0].state.applied_seq}{which})")
            print(f"agents connect with: NATS_URL={shown}", flush=True)
            await _until_signal_or_stopped(actors, signalled)
    return 0
