"""The local store directory's rules: one server per directory, and who uses it.

Files in the directory (``home``):

- ``server.lock``: held exclusively (``flock``) by the one process that runs the server on
  this directory (``ctxstore serve``, the server a client started, or an in-process
  ``LocalStack``); it holds that process's pid, for messages.
- ``server.json``: the running server's URL and pid, written once it serves and removed
  before ``server.lock`` is released. Valid only while ``server.lock`` is held: a process
  killed with SIGKILL leaves it behind, and its pid may be reused.
- ``users.lock``: held shared by every client of the local server for as long as it is open.
  A server started for clients stops once it can take it exclusively (no user left).
- ``start.lock``: held by the one client starting a server, so that a burst of clients
  starts one server rather than one each (all but one would find the directory taken).
- ``server.log``: what a server started for clients writes.

``flock`` locks die with the process that holds them (the kernel releases them), so a user or
a server killed with SIGKILL holds nothing. Every wait polls with ``LOCK_NB``: nothing here
blocks an event loop. A process forked (not exec'd) from a user shares its lock and keeps it
while it lives. POSIX only: on Windows the local store directory is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Final

import msgspec

from contracts.errors import BrokerError

if sys.platform != "win32":
    import fcntl

__all__ = [
    "LOG",
    "RECORD",
    "SERVER_LOCK",
    "START_LOCK",
    "USERS_LOCK",
    "FileLock",
    "ServerRecord",
    "forget_server",
    "is_locked",
    "lock_holder",
    "log_tail",
    "read_record",
    "record_server",
    "running_server",
]

SERVER_LOCK: Final = "server.lock"
USERS_LOCK: Final = "users.lock"
START_LOCK: Final = "start.lock"
RECORD: Final = "server.json"
LOG: Final = "server.log"


class ServerRecord(msgspec.Struct, frozen=True):
    url: str
    pid: int
    # The CONTEXT_STORE_* settings the server runs with (StoreConfig.server_environment()).
    settings: dict[str, str] = msgspec.field(default_factory=dict)


_decode_record = msgspec.json.Decoder(ServerRecord).decode


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_CLOEXEC: a child process (nats-server, a spawned server) must not inherit the lock.
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


class FileLock:
    """A ``flock`` on ``path`` through a descriptor of its own (locks are per descriptor,
    so two of these in one process exclude each other as two processes would)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, *, shared: bool = False) -> bool:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this FileLock")
        if sys.platform == "win32":
            raise BrokerError(
                "the local store directory needs flock (POSIX): on Windows, give the URL of "
                "a NATS server (NATS_URL or --nats-url)"
            )
        fd = _open(self.path)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    async def acquire(self, *, shared: bool = False, poll: float = 0.01) -> None:
        """Wait for the lock (bound it with ``asyncio.timeout``)."""
        # flock has no notification to wait on, and a blocking flock would block the loop
        # (or a thread that cannot be cancelled): poll.
        while not self.try_acquire(shared=shared):  # noqa: ASYNC110
            await asyncio.sleep(poll)

    def write_pid(self) -> None:
        """Record this process as the holder (read by ``lock_holder``)."""
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        """Release the lock (closing the descriptor releases it). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether some process holds ``path`` exclusively. A shared probe: probes never
    exclude each other, only the exclusive holder."""
    probe = FileLock(path)
    if probe.try_acquire(shared=True):
        probe.release()
        return False
    return True


def lock_holder(home: Path) -> int | None:
    """The pid written in ``server.lock``, if any."""
    with contextlib.suppress(OSError, ValueError):
        return int((home / SERVER_LOCK).read_text(encoding="utf-8").strip())
    return None


def record_server(home: Path, url: str, settings: dict[str, str]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{RECORD}.{os.getpid()}"
    tmp.write_bytes(msgspec.json.encode(ServerRecord(url, os.getpid(), settings)))
    tmp.replace(home / RECORD)


def read_record(home: Path) -> ServerRecord | None:
    try:
        return _decode_record((home / RECORD).read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def forget_server(home: Path, *, anyone: bool = False) -> None:
    """Remove ``server.json`` if it names this process (or whoever, with ``anyone``: the
    new holder of ``server.lock`` clearing what a killed one left)."""
    record = read_record(home)
    if record is not None and (anyone or record.pid == os.getpid()):
        with contextlib.suppress(FileNotFoundError):
            (home / RECORD).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_server(home: Path) -> ServerRecord | None:
    """The server serving ``home`` now: recorded, its process alive, ``server.lock`` held."""
    record = read_record(home)
    if record is None or not _alive(record.pid) or not is_locked(home / SERVER_LOCK):
        return None
    return record


def log_tail(home: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of ``server.log``."""
    try:
        with (home / LOG).open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no server.log)"
    return "\n".join(text.splitlines()[-lines:])
