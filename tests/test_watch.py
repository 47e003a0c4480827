"""Watch: applied writes as they happen, in order, with no gap or duplicate across a server
restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from actors import InvalidWriteError, SharedContextStore, StoreActor
from actors.client.watch import OutcomeWatch, Watch
from broker import EmbeddedServer, StoreConfig, connect
from contracts import Stage, WriteApplied, WriteKind, WriteRejected, write_subject

ROOT = Path(__file__).resolve().parent.parent
PLAN: dict[str, Any] = dict(tasks=[], priorities=[], dependencies={}, estimated_impact=0.5)


async def take(watch: Watch | OutcomeWatch, n: int, within: float = 10.0) -> list[Any]:
    out: list[Any] = []
    async with asyncio.timeout(within):
        async for event in watch:
            out.append(event)
            if len(out) == n:
                break
    return out


async def applied_seqs(store: SharedContextStore, eid: str) -> list[int]:
    return [e.seq for e in await store.history(eid) if e.applied]


async def test_watch_one_context_live_in_order(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    eid = await store.create_context("./p")
    async with store.watch(eid) as watch:
        await store.update_phase(Stage.RESEARCH)
        other = await store_b.create_context("./other")  # not this context: not seen
        await store_b.update_phase(Stage.RESEARCH, other)
        await store_b.store_external_research(["a"], [], [], evolution_id=eid)
        await store.store_improvement_plan(**PLAN)
        events = await take(watch, 3)
    assert [e.kind for e in events] == ["stage", "external_research", "improvement_plan"]
    assert {e.evolution_id for e in events} == {eid}
    assert [e.writer for e in events] == ["agent-a", "agent-b", "agent-a"]
    assert [e.seq for e in events] == (await applied_seqs(store, eid))[1:]
    assert events[0].current_phase == Stage.RESEARCH
    assert events[-1].version == (await store.get_context(eid)).version


async def test_watch_filters_phases_and_replays_from_start(
    store: SharedContextStore, store_b: SharedContextStore
) -> None:
    first = await store.create_context("./p")
    await store.store_improvement_plan(**PLAN)
    second = await store_b.create_context("./q")
    await store_b.update_phase(Stage.PLANNING)
    await store_b.store_improvement_plan(**PLAN)

    async with store.watch(from_start=True) as everything:
        events = await take(everything, 5)
    assert [(e.evolution_id, e.kind) for e in events] == [
        (first, "create"),
        (first, "improvement_plan"),
        (second, "create"),
        (second, "stage"),
        (second, "improvement_plan"),
    ]
    async with store.watch(phases=["improvement_plan"], from_start=True) as plans:
        events = await take(plans, 2)
        # And live: a new plan arrives after the recorded ones; other kinds are skipped.
        await store.update_phase(Stage.PLANNING, first)
        await store.store_improvement_plan(**{**PLAN, "estimated_impact": 0.9}, evolution_id=first)
        events += await take(plans, 1)
    assert [(e.evolution_id, e.kind) for e in events] == [
        (first, "improvement_plan"),
        (second, "improvement_plan"),
        (first, "improvement_plan"),
    ]


async def test_watch_without_from_start_sees_only_new_events(store: SharedContextStore) -> None:
    eid = await store.create_context("./p")
    await store.update_phase(Stage.RESEARCH)
    watch = store.watch(eid)
    await watch.open()
    await store.update_phase(Stage.PLANNING)
    [event] = await take(watch, 1)
    assert (event.kind, event.current_phase) == ("stage", Stage.PLANNING)
    await watch.aclose()
    assert [e async for e in watch] == []  # closed: iteration ends


async def test_watch_has_no_gap_or_duplicate_across_a_server_restart(tmp_path: Path) -> None:
    store_dir = tmp_path / "nats"
    server = EmbeddedServer(store_dir)
    await server.start()
    port = server.port
    assert port is not None
    url = server.url
    config = StoreConfig.build({}, nats_url=url, export_path=tmp_path / "exports")
    actor_conn = await connect(url, name="actor", long_running=True)
    actor = StoreActor(actor_conn, config)
    await actor.start()
    store = SharedContextStore(config=config, name="writer")
    watcher = SharedContextStore(config=config, name="watcher")
    seen: asyncio.Queue[WriteApplied] = asyncio.Queue()

    async def collect(watch: Watch) -> None:
        async for event in watch:
            await seen.put(event)

    try:
        eid = await store.create_context("./p")
        watch = watcher.watch(eid, from_start=True)
        task = asyncio.create_task(collect(watch))
        for i in range(5):
            await store.store_original_analysis(i, {}, [], [])
        got = [await asyncio.wait_for(seen.get(), 10) for _ in range(6)]
        # A second watch that has seen nothing yet when the server goes away: after the
        # restart it must resume where it started, not replay the recorded events.
        quiet = await watcher.watch(eid).open()

        await server.stop()
        server = EmbeddedServer(store_dir, port=port)
        await server.start()
        # The writer's client reconnects by itself; its writes wait for that.
        for i in range(5, 10):
            await store.store_original_analysis(i, {}, [], [])
        await store.update_phase(Stage.COMPLETED)
        got += [await asyncio.wait_for(seen.get(), 20) for _ in range(6)]

        assert [e.seq for e in got] == await applied_seqs(store, eid)
        assert len({e.seq for e in got}) == len(got) == 12
        assert got[-1].current_phase == Stage.COMPLETED
        assert seen.empty()
        assert [e.seq for e in await take(quiet, 6)] == [e.seq for e in got[6:]]
        await quiet.aclose()
        await watch.aclose()
        async with asyncio.timeout(5):
            await task
    finally:
        await watcher.aclose()
        await store.aclose()
        await actor.aclose()
        await actor_conn.close()
        await server.stop()


@contextlib.asynccontextmanager
async def cli_watch(url: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "actors.cli",
        "--nats-url",
        url,
        "watch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(ROOT),
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_watch_prints_events_live_until_interrupted(
    store: SharedContextStore,
) -> None:
    eid = await store.create_context("./p")
    url = store.url
    assert url is not None
    async with cli_watch(url, eid) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        async with asyncio.timeout(20):
            assert b"watching" in await proc.stderr.readline()
            await store.update_phase(Stage.RESEARCH)
            await store.store_improvement_plan(**PLAN)
            lines = [await proc.stdout.readline(), await proc.stdout.readline()]
            proc.send_signal(signal.SIGINT)
            code = await proc.wait()
    assert code == 0
    assert [line.split()[3] for line in lines] == [b"stage", b"improvement_plan"]
    assert all(eid.encode() in line for line in lines)


async def test_watch_outcomes_yields_rejected_writes_in_order_with_their_reason(
    store: SharedContextStore, store_b: SharedContextStore, nc: Client
) -> None:
    eid = await store.create_context("./p")
    other = await store_b.create_context("./other")
    async with store.watch_outcomes(eid) as outcomes, store.watch(eid) as applied_only:
        await store.update_phase(Stage.RESEARCH, eid)
        # A write the store rejects (negative count), published without the client.
        await nc.jetstream().publish(
            write_subject("default", eid, WriteKind.ORIGINAL_ANALYSIS),
            b'{"type": "original_analysis", "files_analyzed": -1}',
        )
        await nc.jetstream().publish(  # another context's rejection: not seen
            write_subject("default", other, WriteKind.ORIGINAL_ANALYSIS),
            b'{"type": "original_analysis", "files_analyzed": -2}',
        )
        await store.update_phase(Stage.PLANNING, eid)
        events = await take(outcomes, 3)
        plain = await take(applied_only, 2)
    assert [type(e) for e in events] == [WriteApplied, WriteRejected, WriteApplied]
    assert [e.seq for e in events] == [e.seq for e in (await store.history(eid))[1:]]
    rejected = events[1]
    assert isinstance(rejected, WriteRejected)
    assert (rejected.evolution_id, rejected.kind, rejected.code) == (
        eid,
        "original_analysis",
        "invalid",
    )
    assert "files_analyzed" in rejected.reason
    # The plain watch still yields applied writes only.
    assert [e.seq for e in plain] == [events[0].seq, events[2].seq]
    async with store.context(eid).watch_outcomes(from_start=True) as again:
        assert [e.seq for e in await take(again, 4)] == [e.seq for e in await store.history(eid)]


@pytest.mark.parametrize("bad", ["has space", "a.b", "*", ""])
async def test_watch_rejects_ids_that_are_not_subject_tokens(
    store: SharedContextStore, bad: str
) -> None:
    with pytest.raises(InvalidWriteError):
        store.watch(bad)
