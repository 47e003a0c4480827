"""Shared pieces of the benchmarks: servers, the actor host process, timing, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from broker import EmbeddedServer, StoreConfig, connect
from contracts import HEADER_MSG_ID, HEADER_WRITER, Write, encode, write_subject

__all__ = [
    "ActorHost",
    "Figure",
    "bench_config",
    "encoded_writes",
    "percentile",
    "server",
]

ECHO_PREFIX = "bench.echo"
SAME_PREFIX = "bench.same"  # an echo of bytes given beforehand (``bench.host``)


@dataclass
class Figure:
    """One line of the results table: a measured value, its baseline and their ratio."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def bench_config(url: str, **overrides: Any) -> StoreConfig:
    """The store's configuration for a benchmark: no context limit, roomy payloads."""
    base = StoreConfig.build({}, nats_url=url, max_payload=1024 * 1024)
    return base.replace(**{"max_contexts": None, **overrides})


@contextlib.asynccontextmanager
async def server(
    root: Path, name: str, *, sync_always: bool = False
) -> AsyncIterator[EmbeddedServer]:
    srv = EmbeddedServer(root / name, sync_always=sync_always, max_payload=8 * 1024 * 1024)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def encoded_writes(
    tenant: str, evolution_id: str, writes: Sequence[Write], writer: str
) -> list[tuple[str, bytes, dict[str, str]]]:
    """(subject, body, headers) as the client would publish them."""
    out = []
    for i, body in enumerate(writes):
        kind = str(body.__struct_config__.tag)
        headers = {HEADER_MSG_ID: f"{evolution_id}-{i}", HEADER_WRITER: writer}
        out.append((write_subject(tenant, evolution_id, kind), encode(body), headers))
    return out


async def publish_pipelined(
    nc: Client,
    items: Sequence[tuple[str, bytes, dict[str, str]]],
    *,
    window: int = 256,
    window_timeout: float = 60.0,
) -> int:
    """``publish_async`` in bounded windows (each window awaited with a timeout).

    Returns the highest stream sequence acknowledged."""
    js = nc.jetstream()
    last = 0
    for start in range(0, len(items), window):
        futures = [
            await js.publish_async(subject, data, headers=headers)
            for subject, data, headers in items[start : start + window]
        ]
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=window_timeout)
        last = max(last, max(a.seq for a in acks))
    return last


class ActorHost:
    """A store actor (and a bare echo responder) in a process of its own, as deployed.

    The echo responder answers ``bench.echo.<size>`` with ``size`` bytes, precomputed: the
    bare request-reply baseline served from the same process as the actor. With
    ``BENCH_PROFILE_DIR`` set, the process runs under py-spy (collapsed stacks there)."""

    _profiles = 0

    def __init__(
        self,
        url: str,
        *,
        profile: Path | None = None,
        env: dict[str, str] | None = None,
        partitions: int = 1,
        partition: int = 0,
    ):
        self.url = url
        self.partition_args = (
            []
            if partitions == 1
            else ["--partitions", str(partitions), "--partition", str(partition)]
        )
        if profile is None and os.environ.get("BENCH_PROFILE_DIR"):
            ActorHost._profiles += 1
            folder = Path(os.environ["BENCH_PROFILE_DIR"])
            folder.mkdir(parents=True, exist_ok=True)
            profile = folder / f"actor-{os.getpid()}-{ActorHost._profiles}.txt"
        self.profile = profile
        self.env = env or {}
        self._proc: asyncio.subprocess.Process | None = None
        self.ready_seconds = 0.0

    async def start(self, ready_within: float = 600.0) -> None:
        args = [sys.executable, "-m", "bench.host", "--url", self.url, *self.partition_args]
        if self.profile is not None:
            spy = str(Path(sys.executable).parent / "py-spy")
            args = [spy, "record", "-r", "250", "-o", str(self.profile), "-f", "raw", "--", *args]
        started = time.perf_counter()
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        assert self._proc.stdout is not None
        async with asyncio.timeout(ready_within):
            while True:
                line = await self._proc.stdout.readline()
                if not line:
                    raise RuntimeError("bench actor host exited before it was ready")
                if line.startswith(b"ready"):
                    break
        self.ready_seconds = time.perf_counter() - started

    @property
    def pid(self) -> int | None:
        """The actor's process (under py-spy, py-spy's child is not tracked: None)."""
        if self._proc is None or self.profile is not None:
            return None
        return self._proc.pid

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT if self.profile else signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def __aenter__(self) -> ActorHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by named processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        self.used = {n: cpu_seconds(p) - self._start[n] for n, p in self.pids.items()}
        return self.used


async def raw_connection(url: str, name: str) -> Client:
    return await connect(url, name=name)
