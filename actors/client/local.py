"""The local store: the directory every URL-less client and ``ctxstore`` command shares.

A client with no NATS URL uses the one server of that directory (the rules are in
``broker.home``): it registers as a user (``users.lock``, shared, held until it closes),
then connects to the server recorded there, or starts one first: ``ctxstore serve
--exit-when-unused`` in a process of its own, which stops once no user is left. The first
client's configuration (the ``CONTEXT_STORE_*`` settings of the server and the store actor)
is the server's; a later client with other settings gets a warning and the running server's,
as it would from a remote store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Final

from broker import StoreConfig
from broker.home import (
    LOG,
    SERVER_LOCK,
    START_LOCK,
    USERS_LOCK,
    FileLock,
    ServerRecord,
    is_locked,
    log_tail,
    running_server,
)
from broker.redact import redact
from contracts.errors import StoreUnavailableError

__all__ = ["START_TIMEOUT_S", "attach_local_server", "default_home"]

log = logging.getLogger("ctxstore.client")

# A server's start includes its store actor's recovery, long for a big store with no snapshot.
START_TIMEOUT_S: Final = 60.0
_POLL_S: Final = 0.02
_STARTS: Final = 3  # servers started by one client that lost a race to another, at most
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])
# A source checkout (not an installed package) must be put on the started server's path.
_FROM_SOURCE: Final = _PACKAGE_ROOT not in {
    str(Path(sysconfig.get_path(k)).resolve()) for k in ("purelib", "platlib")
}


def default_home() -> Path:
    """``$CTXSTORE_HOME``, else ``$XDG_DATA_HOME/ctxstore``, else ``~/.local/share/ctxstore``."""
    explicit = os.environ.get("CTXSTORE_HOME")
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "ctxstore"


async def attach_local_server(home: Path, config: StoreConfig) -> tuple[str, FileLock]:
    """The URL of ``home``'s server, started if none runs, and this user's registration
    (release it when done: the server stops once every user has)."""
    home = _absolute(home)
    user = FileLock(home / USERS_LOCK)
    timeout = START_TIMEOUT_S
    try:
        async with asyncio.timeout(timeout):
            # Waits only while a server that found no user left is stopping.
            await user.acquire(shared=True)
            try:
                record = await _running_or_started(home, config)
            except BaseException:
                user.release()
                raise
    except TimeoutError:
        raise StoreUnavailableError(
            f"the local store server in {home} did not start within {timeout:.0f}s; "
            f"the end of {home / LOG}:\n{redact(log_tail(home))}"
        ) from None
    except OSError as exc:
        raise StoreUnavailableError(f"cannot use the local store directory {home}: {exc}") from None
    settings = config.server_environment()
    if record.settings and record.settings != settings:
        differ = sorted(k for k, v in settings.items() if record.settings.get(k) != v)
        log.warning(
            "the local store server (pid %d) runs with other settings than this client's (%s);"
            " the server's apply until it stops",
            record.pid,
            ", ".join(differ),
        )
    return record.url, user


def _absolute(home: Path) -> Path:
    """The server started for ``home`` runs in it: a relative path would move under it.
    (A getcwd, no disk access.)"""
    return Path(os.path.abspath(home))


async def _running_or_started(home: Path, config: StoreConfig) -> ServerRecord:
    started: subprocess.Popen[bytes] | None = None
    starts = 0
    starter = FileLock(home / START_LOCK)
    try:
        while True:
            record = running_server(home)
            if record is not None:
                return record
            # Start one unless one is starting: ours (until it runs or exits), another
            # client's (it holds start.lock), or any (it holds server.lock before it records
            # itself).
            idle = started is None or started.poll() is not None
            if idle and not is_locked(home / SERVER_LOCK):
                if started is not None and started.returncode != 0:
                    raise StoreUnavailableError(
                        f"the local store server in {home} exited with code "
                        f"{started.returncode}; the end of {home / LOG}:\n"
                        f"{redact(log_tail(home))}"
                    )
                if starts == _STARTS:
                    raise StoreUnavailableError(
                        f"started the local store server in {home} {starts} times and none "
                        f"stayed; the end of {home / LOG}:\n{redact(log_tail(home))}"
                    )
                if starter.held or starter.try_acquire():
                    started = _start_server(home, config)
                    starts += 1
            await asyncio.sleep(_POLL_S)
    finally:
        starter.release()


def _start_server(home: Path, config: StoreConfig) -> subprocess.Popen[bytes]:
    """``ctxstore serve --exit-when-unused`` for ``home``, detached from this process.

    Its own session, so a Ctrl-C meant for this program does not stop a server other
    programs use. ``subprocess`` rather than asyncio's: asyncio kills the children it
    started when their transport is closed with the loop. An exited server is reaped by the
    next ``Popen`` of this process, or by init once this process is gone."""
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env.update(config.server_environment())
    if _FROM_SOURCE:  # the same code as this client's
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "actors.cli", "--home", str(home)]
    command += ["serve", "--exit-when-unused"]
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOG).open("ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            cwd=home,
            start_new_session=True,
        )
