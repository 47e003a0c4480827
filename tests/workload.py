"""A write load for recovery and snapshot tests, and what its acknowledgements predict.

Several clients (``confirm_writes=False``: a write returns once JetStream acknowledged it)
write phase writes and stage updates that log a unique error string to their own contexts.
From the acknowledged sequences alone, ``Expected`` predicts every context exactly: the
latest data and version of each phase, the context's version, its stage, and its error_log
(which grows by one entry per applied stage write, so a lost write leaves a gap and a write
applied twice leaves a duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from actors import SharedContextStore, StoreActor
from actors.core.fold import ERROR_LOG_LIMIT
from broker import EmbeddedServer, StoreConfig, connect
from contracts import (
    DEFAULT_TENANT,
    Decoders,
    EvolutionContext,
    ExternalResearch,
    GetRequest,
    ImprovementPlan,
    ListRequest,
    OriginalAnalysis,
    Query,
    Stage,
    encode,
    phase_data,
    query_subject,
)

_STAGES = [Stage.RESEARCH, Stage.PLANNING, Stage.IMPLEMENTATION, Stage.EVALUATION]


@dataclass
class ContextLog:
    """The acknowledged writes of one context."""

    create_seq: int = 0
    phases: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    stages: list[tuple[int, Stage, str]] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)

    def kept_stages(self) -> list[tuple[int, Stage, str]]:
        """The stage writes whose error entries the context still holds: its last
        ``ERROR_LOG_LIMIT`` (the store keeps no more; older ones are in the history)."""
        return sorted(self.stages)[-ERROR_LOG_LIMIT:]

    def check(self, ctx: EvolutionContext) -> list[str]:
        """What differs between ``ctx`` and what the acknowledgements predict."""
        problems = []
        want_versions = {p: s for p, (s, _) in self.phases.items()}
        if ctx.phase_versions != want_versions:
            problems.append(f"phase_versions {ctx.phase_versions} != {want_versions}")
        for phase, (_, data) in self.phases.items():
            if getattr(ctx, phase) != data:
                problems.append(f"{phase} differs")
        if ctx.version != max(self.seqs):
            problems.append(f"version {ctx.version} != {max(self.seqs)}")
        want_errors = [e for _, _, e in sorted(self.stages)][-ERROR_LOG_LIMIT:]
        if ctx.error_log != want_errors:
            problems.append(
                f"error_log: {len(ctx.error_log)} entries, {len(set(ctx.error_log))} distinct; "
                f"expected {len(want_errors)}"
            )
        if self.stages and ctx.current_phase != max(self.stages)[1]:
            problems.append(f"current_phase {ctx.current_phase}")
        return problems


@dataclass
class Expected:
    contexts: dict[str, ContextLog] = field(default_factory=dict)
    max_seq: int = 0
    writes: int = 0
    progress: asyncio.Event | None = None  # set on every acknowledged write

    def record(self, eid: str, seq: int) -> ContextLog:
        if self.progress is not None:
            self.progress.set()
        log = self.contexts.setdefault(eid, ContextLog())
        log.seqs.append(seq)
        self.max_seq = max(self.max_seq, seq)
        self.writes += 1
        return log

    def lost_seqs(self, contexts: dict[str, EvolutionContext]) -> list[int]:
        """The sequences of the acknowledged writes the state does not show (stage writes,
        and each phase's latest), to say where a loss lies."""
        lost: list[int] = []
        for eid, log in self.contexts.items():
            ctx = contexts.get(eid)
            if ctx is None:
                lost += log.seqs
                continue
            logged = set(ctx.error_log)
            lost += [seq for seq, _, error in log.kept_stages() if error not in logged]
            lost += [
                seq
                for phase, (seq, _) in log.phases.items()
                if ctx.phase_versions.get(phase, 0) < seq
            ]
        return sorted(lost)

    def lost_and_duplicated(self, contexts: dict[str, EvolutionContext]) -> tuple[int, int]:
        """Acknowledged writes the state does not show, and ones it shows twice (stage
        writes, counted through error_log entries; phase writes through phase_versions)."""
        lost = duplicated = 0
        for eid, log in self.contexts.items():
            ctx = contexts.get(eid)
            if ctx is None:
                lost += len(log.seqs)
                continue
            counts: dict[str, int] = {}
            for entry in ctx.error_log:
                counts[entry] = counts.get(entry, 0) + 1
            for _, _, error in log.kept_stages():
                n = counts.pop(error, 0)
                lost += n == 0
                duplicated += max(n - 1, 0)
            duplicated += sum(counts.values())  # entries no acknowledged write explains
            for phase, (seq, _) in log.phases.items():
                lost += ctx.phase_versions.get(phase, 0) < seq
        return lost, duplicated


async def phase_write(
    client: SharedContextStore, eid: str, n: int, tag: str
) -> tuple[str, int, dict[str, Any]]:
    """One phase write through the public API: (phase, seq, the data the context holds)."""
    match n % 3:
        case 0:
            a: dict[str, Any] = dict(
                files_analyzed=n, metrics={"w": tag}, issues=[{"n": n}], improvements=[]
            )
            r = await client.store_original_analysis(**a, evolution_id=eid)
            return "original_analysis", r.seq, phase_data(OriginalAnalysis(**a))
        case 1:
            b: dict[str, Any] = dict(best_practices=[tag], references=[], patterns=[])
            r = await client.store_external_research(**b, evolution_id=eid)
            return "external_research", r.seq, phase_data(ExternalResearch(**b))
        case _:
            c: dict[str, Any] = dict(
                tasks=[{"id": tag}], priorities=[tag], dependencies={}, estimated_impact=0.5
            )
            r = await client.store_improvement_plan(**c, evolution_id=eid)
            return "improvement_plan", r.seq, phase_data(ImprovementPlan(**c))


async def write_as(
    client: SharedContextStore,
    eids: list[str],
    writes: int,
    expected: Expected,
    stop: asyncio.Event | None = None,
) -> None:
    """``writes`` writes to ``eids``, round robin, recording every acknowledgement."""
    for n in range(writes):
        if stop is not None and stop.is_set():
            return
        eid = eids[n % len(eids)]
        tag = f"{client.name}-{n}"
        if n % 4 == 3:
            stage = _STAGES[n % len(_STAGES)]
            await client.update_phase(stage, eid, error=f"e-{tag}")
            log = expected.record(eid, client.last_seq)
            log.stages.append((client.last_seq, stage, f"e-{tag}"))
        else:
            phase, seq, data = await phase_write(client, eid, n, tag)
            log = expected.record(eid, seq)
            log.phases[phase] = (seq, data)


async def create_contexts(
    config: StoreConfig, clients: int, per_client: int, expected: Expected
) -> list[list[str]]:
    """Contexts for each client (created with confirmation, so the actor must be running)."""
    owned: list[list[str]] = []
    async with SharedContextStore(config=config, name="creator") as creator:
        for c in range(clients):
            eids = []
            for j in range(per_client):
                eid = await creator.create_context(f"./p{c}-{j}", ["documentation"])
                log = expected.record(eid, creator.last_seq)
                log.create_seq = creator.last_seq
                eids.append(eid)
            owned.append(eids)
    return owned


@contextlib.asynccontextmanager
async def writers(config: StoreConfig, count: int) -> AsyncIterator[list[SharedContextStore]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                SharedContextStore(config=config, name=f"writer-{i}", confirm_writes=False)
            )
            for i in range(count)
        ]


@contextlib.asynccontextmanager
async def running_actor(
    server: EmbeddedServer, config: StoreConfig, name: str = "actor"
) -> AsyncIterator[StoreActor]:
    conn = await connect(server.url, name=name, long_running=True)
    try:
        async with StoreActor(conn, config) as actor:
            yield actor
    finally:
        await conn.close()


async def request(nc: Client, subject: str, data: bytes) -> Msg:
    """A request to the store actor, retried at once on "no responders" as the client does
    (the server has been seen to say so once right after an actor restart)."""
    for _ in range(2):
        try:
            return await nc.request(subject, data, timeout=10.0)
        except nats.errors.NoRespondersError:
            continue
    return await nc.request(subject, data, timeout=10.0)


async def contexts_at(nc: Client, seq: int) -> dict[str, EvolutionContext]:
    """Every context of the default tenant, from the running actor once it applied ``seq``
    (the wire contract's ``min_seq``)."""
    listing = await request(
        nc, query_subject(DEFAULT_TENANT, Query.LIST), encode(ListRequest(min_seq=seq))
    )
    found = {}
    for summary in Decoders.context_list.decode(listing.data).contexts:
        reply = await request(
            nc,
            query_subject(DEFAULT_TENANT, Query.GET),
            encode(GetRequest(evolution_id=summary.evolution_id, min_seq=seq)),
        )
        found[summary.evolution_id] = Decoders.context.decode(reply.data)
    return found


class ActorProcess:
    """``ctxstore --nats-url URL serve``: the store actor in its own OS process."""

    def __init__(
        self,
        url: str,
        log_dir: Path,
        name: str = "actor",
        env: dict[str, str] | None = None,
        *,
        verbose: bool = False,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        self.serve_args = serve_args  # e.g. ("--partition", "1")
        self.url = url
        self.log_dir = log_dir
        self.name = name
        self.env = env or {}
        self.verbose = verbose
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> float:
        """Start it; seconds until it said it serves (it has recovered by then)."""
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXT_STORE_")}
        env["CONTEXT_STORE_SNAPSHOT_EVERY"] = "2000"  # snapshots take part in the crashes
        env["CONTEXT_STORE_MAX_PAYLOAD"] = str(64 * 1024)
        env.update(self.env)
        began = perf_counter()
        with (self.log_dir / f"{self.name}-{self.starts}.log").open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "actors.cli",
                "--nats-url",
                self.url,
                *(["-v"] if self.verbose else []),
                "serve",
                *self.serve_args,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=Path(__file__).parent.parent,
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            line = await self.proc.stdout.readline()
        assert line.startswith(b"store actor serving"), line
        return perf_counter() - began

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(10):
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            async with asyncio.timeout(10):
                await self.proc.wait()


def seq_ranges(seqs: list[int], gap: int = 50) -> list[tuple[int, int, int]]:
    """Sorted sequences as (first, last, count) runs, a new run past ``gap`` missing ones."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq - runs[-1][1] <= gap:
            runs[-1][1] = seq
            runs[-1][2] += 1
        else:
            runs.append([seq, seq, 1])
    return [(a, b, n) for a, b, n in runs]


async def wait_on(progress: asyncio.Event, condition: Callable[[], bool]) -> None:
    """Until ``condition()`` holds, looked at again each time ``progress`` is set (by whatever
    moves it: an acknowledged write, an event seen). Bound it with a timeout."""
    while not condition():
        progress.clear()
        await progress.wait()
