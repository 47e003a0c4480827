"""Writes of any size (up to ``max_write``) through a server whose max_payload is 1 MiB: sent
compressed and in chunks on the write stream, applied whole at their last chunk, and read
back, replayed, restored from a snapshot, exported and imported, time-travelled and watched
like any other write. Unfinished writes are dropped by an abort in the log."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from workload import request, running_actor

from actors import (
    ConflictError,
    IncompleteWriteError,
    PayloadTooLargeError,
    SharedContextStore,
)
from broker import WRITES_STREAM, EmbeddedServer, StoreConfig, connect
from broker.publish import publish_write
from contracts import (
    HEADER_MSG_ID,
    HEADER_WRITER,
    Decoders,
    ErrorCode,
    ImplementationLog,
    OriginalAnalysis,
    OutcomeRequest,
    Query,
    WriteApplied,
    WriteRejected,
    encode,
    error_filter,
    error_for,
    event_filter,
    phase_data,
    query_subject,
    write_subject,
)
from contracts.framing import frame_write

MiB = 1 << 20


def compressible(size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Issues like an analysis of a large project: about ``size`` bytes of JSON."""
    return [
        {
            "type": ("code_smell", "missing_docstring", "complex_function")[i % 3],
            "location": f"pkg/module_{(i + seed) % 97}.py:{i}",
            "message": f"function handle_{i % 1000} has cyclomatic complexity {8 + i % 9}",
        }
        for i in range(size // 130)
    ]


def incompressible(size: int, seed: int = 1) -> list[dict[str, Any]]:
    """Random text: zstd keeps about three quarters of it."""
    r = random.Random(seed)
    return [{"blob": base64.b64encode(r.randbytes(740)).decode()} for _ in range(size // 1000)]


@pytest.fixture
async def small_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """A server with the common stand-alone default: messages of at most 1 MiB."""
    async with EmbeddedServer(tmp_path / "nats", max_payload=MiB) as srv:
        yield srv


@pytest.fixture
async def nc(small_server: EmbeddedServer) -> AsyncIterator[Client]:
    """A plain connection to the small server (instead of the default one)."""
    conn = await connect(small_server.url, name="test-raw")
    yield conn
    await conn.close()


@pytest.fixture
def big_config(small_server: EmbeddedServer, tmp_path: Path) -> StoreConfig:
    return StoreConfig.build(
        {},
        nats_url=small_server.url,
        max_payload=MiB,
        export_path=tmp_path / "exports",
        snapshot_every=None,
        snapshot_interval=None,
        chunk_timeout=0.5,
    )


async def subjects_of(nc: Client, subject: str) -> int:
    info = await nc.jetstream().stream_info(WRITES_STREAM, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def test_writes_of_20_mb_work_end_to_end(
    small_server: EmbeddedServer, big_config: StoreConfig, tmp_path: Path
) -> None:
    analysis = OriginalAnalysis(files_analyzed=4000, issues=compressible(20 * MiB))
    log = ImplementationLog(changes=incompressible(20 * MiB))
    raw = await connect(small_server.url, name="test-raw")
    async with (
        running_actor(small_server, big_config) as actor,
        SharedContextStore(config=big_config) as store,
    ):
        eid = await store.create_context("./big")
        watch = await store.watch(eid).open()
        first = await store.context(eid).write(analysis)
        second = await store.context(eid).write(log)
        done = await store.update_phase("planning", eid)
        # Stored in several messages each, applied whole at the last one.
        assert await subjects_of(raw, write_subject("default", eid, "implementation_log")) > 5
        ctx = await store.get_context(eid)
        assert ctx.original_analysis == phase_data(analysis)
        assert ctx.implementation_log == phase_data(log)
        assert ctx.phase_versions == {
            "original_analysis": first.seq,
            "implementation_log": second.seq,
        }
        assert ctx.version == done.seq
        # Watched: one event per write, after the whole of it, nothing for its chunks.
        events = []
        async with asyncio.timeout(20):
            async for event in watch:
                # The create's event may come after the watch opened: the actor announces
                # a write once applied, which is after its acknowledgement.
                if event.seq >= first.seq:
                    events.append(event)
                if event.seq == done.seq:
                    break
        await watch.aclose()
        assert [(e.kind, e.seq) for e in events] == [
            ("original_analysis", first.seq),
            ("implementation_log", second.seq),
            ("stage", done.seq),
        ]
        assert events[1].size == len(encode(log))
        # Time travel: nothing of a write before its last chunk, all of it at it.
        before = await store.get_context(eid, at=second.seq - 1)
        assert before.implementation_log == {}
        assert before.original_analysis == phase_data(analysis)
        at = await store.get_context(eid, at=second.seq)
        assert at.implementation_log == phase_data(log)
        # History: one entry per write, its size that of its JSON.
        history = await store.history(eid)
        assert [(h.kind, h.seq) for h in history][1:3] == [
            ("original_analysis", first.seq),
            ("implementation_log", second.seq),
        ]
        assert history[2].size == len(encode(log))
        # Exported and imported (sent in chunks again) under another id.
        path = await store.export_context(eid)
        copy = await store.import_context(path, evolution_id="evo-big-copy")
        imported = await store.get_context(copy)
        assert imported.original_analysis == phase_data(analysis)
        assert imported.implementation_log == phase_data(log)
        # Held compressed: far less than the JSON in the actor.
        held = actor.state.held("default", eid)
        assert held is not None
        assert len(held.original_analysis) < len(encode(analysis)) / 10
    # Replayed by a new actor.
    async with running_actor(small_server, big_config, "actor-2") as again:
        assert again.recovered_writes > 0
        replayed = again.state.get("default", eid)
        assert replayed == ctx
    # Restored from a snapshot.
    snapshotting = big_config.replace(snapshot_every=10**9, snapshot_interval=None)
    async with running_actor(small_server, snapshotting, "actor-3") as third:
        assert third.snapshots is not None
        created = (await raw.jetstream().stream_info(WRITES_STREAM)).created
        assert created is not None
        await third.snapshots.save(third.state, created)
    async with running_actor(small_server, snapshotting, "actor-4") as fourth:
        assert fourth.snapshot_loaded is not None
        assert fourth.snapshot_loaded.name is not None
        assert fourth.recovered_writes == 0
        assert fourth.state.get("default", eid) == ctx
        assert fourth.state.get("default", "evo-big-copy") == imported
    await raw.close()


async def test_a_write_of_64_mb_is_stored_applied_and_read_back(
    small_server: EmbeddedServer, big_config: StoreConfig
) -> None:
    analysis = OriginalAnalysis(files_analyzed=1, issues=incompressible(64 * 10**6, seed=7))
    assert len(encode(analysis)) > 64 * 10**6
    async with (
        running_actor(small_server, big_config),
        SharedContextStore(config=big_config) as store,
    ):
        eid = await store.create_context("./huge")
        receipt = await store.context(eid).write(analysis)
        ctx = await store.get_context(eid)
        assert ctx.version == receipt.seq
        assert ctx.original_analysis == phase_data(analysis)
    async with running_actor(small_server, big_config, "actor-2") as again:
        assert again.state.get("default", eid) == ctx


async def test_a_write_over_the_cap_is_refused_with_a_clear_error(
    small_server: EmbeddedServer, big_config: StoreConfig
) -> None:
    capped = big_config.replace(max_write=2 * MiB)
    raw = await connect(small_server.url, name="test-raw")
    async with (
        running_actor(small_server, capped) as actor,
        SharedContextStore(config=capped) as store,
    ):
        eid = await store.create_context("./p")
        last = actor.state.applied_seq
        big = OriginalAnalysis(files_analyzed=1, issues=incompressible(3 * MiB))
        with pytest.raises(PayloadTooLargeError, match=r"limit on a write \(max_write\)"):
            await store.context(eid).write(big)
        assert (await store.get_context(eid)).version == last  # nothing was sent
        # A writer that does not check: the store refuses it, once, at its last chunk.
        rejected = await raw.subscribe(error_filter("default", eid))
        await raw.flush()
        loose = SharedContextStore(config=big_config, confirm_writes=False)
        receipt = await loose.context(eid).write(big)
        await loose.aclose()
        msg = await rejected.next_msg(timeout=10)
        event = Decoders.event.decode(msg.data)
        assert isinstance(event, WriteRejected)
        assert event.seq == receipt.seq
        assert event.code == ErrorCode.TOO_LARGE
        assert "exceeds the limit of 2097152 bytes" in event.reason
        ctx = await store.get_context(eid)
        assert ctx.original_analysis == {}
        assert ctx.error_log == [f"seq {receipt.seq} original_analysis: {event.reason}"]
    await raw.close()


async def publish_partly(
    nc: Client, subject: str, body: bytes, write_id: str, chunks: int, room: int
) -> tuple[int, int]:
    """The first ``chunks`` messages of a write in chunks, as a writer killed mid-way left
    them: the last one's sequence, and how many the write had."""
    frames = frame_write(body, room=room, write_id=write_id, compress_over=10**12)
    assert len(frames) > chunks
    seq = 0
    for i, frame in enumerate(frames[:chunks]):
        headers = {**frame.headers, HEADER_MSG_ID: f"{write_id}.{i}", HEADER_WRITER: "dies"}
        seq = (await nc.jetstream().publish(subject, frame.data, headers=headers)).seq
    return seq, len(frames)


async def test_a_writer_killed_mid_way_leaves_no_partial_phase_and_the_store_goes_on(
    small_server: EmbeddedServer, big_config: StoreConfig, nc: Client, tmp_path: Path
) -> None:
    async with (
        running_actor(small_server, big_config) as actor,
        SharedContextStore(config=big_config) as store,
    ):
        eid = await store.create_context("./p")
        errors = await nc.subscribe(error_filter("default", eid))
        await nc.flush()
        body = encode(OriginalAnalysis(files_analyzed=9, issues=compressible(3 * MiB)))
        subject = write_subject("default", eid, "original_analysis")
        stored, count = await publish_partly(nc, subject, body, "w-dies", 2, MiB // 2)
        # Until its writer is given up on, the store goes on; nothing of it shows.
        await store.update_phase("research", eid)
        ctx = await store.get_context(eid)
        assert ctx.original_analysis == {}
        assert ctx.phase_versions == {}
        assert actor.state.chunks.open
        # After chunk_timeout the actor drops it, by an abort in the log.
        msg = await errors.next_msg(timeout=10)
        event = Decoders.event.decode(msg.data)
        assert isinstance(event, WriteRejected)
        assert event.code == ErrorCode.INCOMPLETE
        assert event.seq > stored
        assert f"write w-dies dropped unfinished after 2 of {count} chunks" in event.reason
        assert not actor.state.chunks.open
        assert actor.dropped_writes == 1
        history = await store.history(eid)
        assert [(h.kind, h.applied, h.code) for h in history][-1] == (
            "original_analysis",
            False,
            "incomplete",
        )
        after = await store.get_context(eid)
        assert after.original_analysis == {}
        assert after.error_log[-1].endswith(event.reason)
        # Guarded writes still work: the version is the last sequence of its subjects.
        await store.store_original_analysis(1, {}, [], [], expected_version=after.version)
        final = await store.get_context(eid)
        path = await store.export_context(eid)
    # A replay drops it at the same point (the abort is in the log).
    async with running_actor(small_server, big_config, "actor-2") as again:
        assert again.state.get("default", eid) == final
        assert not again.state.chunks.open
        # An import drops it again, with the same reason.
        async with SharedContextStore(config=big_config) as store:
            copy = await store.import_context(path, evolution_id="evo-dies-copy")
            imported = await store.get_context(copy)
            assert [e.split(" ", 2)[2] for e in imported.error_log] == [
                e.split(" ", 2)[2] for e in final.error_log
            ]
            assert imported.original_analysis == final.original_analysis


async def test_unfinished_writes_hold_a_bounded_amount_of_memory(
    small_server: EmbeddedServer, big_config: StoreConfig, nc: Client
) -> None:
    small = big_config.replace(max_write=256 * 1024, chunk_timeout=3600.0)
    async with running_actor(small_server, small) as actor:
        assert actor.chunk_budget == 512 * 1024
        async with SharedContextStore(config=small) as store:
            eids = [await store.create_context(f"./p{i}") for i in range(3)]
            errors = await nc.subscribe(error_filter("default"))
            await nc.flush()
            body = encode(OriginalAnalysis(files_analyzed=1, issues=incompressible(220 * 1024)))
            for i, eid in enumerate(eids):
                subject = write_subject("default", eid, "original_analysis")
                await publish_partly(nc, subject, body, f"w{i}", 1, 180 * 1024)
            # The oldest is dropped once the three hold more than the budget.
            msg = await errors.next_msg(timeout=10)
            event = Decoders.event.decode(msg.data)
            assert isinstance(event, WriteRejected)
            assert event.evolution_id == eids[0]
            assert event.code == ErrorCode.INCOMPLETE
            assert "held more than 524288 bytes" in event.reason
            await store.update_phase("research", eids[2])  # applied after the abort
            assert actor.state.chunks.bytes <= actor.chunk_budget
            assert len(actor.state.chunks.open) == 2


async def test_guarded_and_idempotent_writes_in_chunks(
    small_server: EmbeddedServer, big_config: StoreConfig, nc: Client
) -> None:
    analysis = OriginalAnalysis(files_analyzed=3, issues=incompressible(3 * MiB, seed=3))
    async with (
        running_actor(small_server, big_config),
        SharedContextStore(config=big_config) as store,
    ):
        eid = await store.create_context("./p")
        version = (await store.get_context(eid)).version
        handle = store.context(eid)
        receipt = await handle.write(analysis, expected_version=version, idempotency_key="k1")
        assert not receipt.duplicate
        # A retry with the same key, guarded by the same version: not applied twice.
        again = await handle.write(analysis, expected_version=version, idempotency_key="k1")
        assert again.duplicate
        assert again.seq == receipt.seq
        assert (await store.get_context(eid)).version == receipt.seq
        # A stale guard: refused at the first chunk, nothing stored.
        last = (await nc.jetstream().stream_info(WRITES_STREAM)).state.last_seq
        with pytest.raises(ConflictError) as refused:
            await handle.write(analysis, expected_version=version)
        assert refused.value.current_version == receipt.seq
        assert (await nc.jetstream().stream_info(WRITES_STREAM)).state.last_seq == last
        # Nothing can come between the chunks of a guarded write: the next chunk is
        # refused, and the write is dropped unfinished.
        subject = write_subject("default", eid, "original_analysis")
        sneaky, calls = 0, 0

        async def jetstream() -> Any:
            # Before the second chunk goes, another writer writes to the context.
            nonlocal sneaky, calls
            calls += 1
            if calls == 2:
                async with SharedContextStore(config=big_config, confirm_writes=False) as o:
                    sneaky = (await o.update_phase("planning", eid)).seq
            return nc.jetstream()

        headers = {
            HEADER_MSG_ID: "guarded-1",
            "Nats-Expected-Last-Subject-Sequence": str(receipt.seq),
            "Nats-Expected-Last-Subject-Sequence-Subject": f"ctxstore.write.default.{eid}.>",
        }
        with pytest.raises(ConflictError):
            await publish_write(jetstream, subject, encode(analysis), headers, max_payload=MiB)
        assert sneaky > 0
        ctx = await store.get_context(eid)
        assert ctx.current_phase == "planning"
        assert ctx.phase_versions == {"original_analysis": receipt.seq}


async def test_a_dropped_write_is_reported_to_its_writer(
    small_server: EmbeddedServer, big_config: StoreConfig, nc: Client
) -> None:
    """The writer confirms its write by its last chunk: a write the store could not put
    together raises, it does not pass silently."""
    async with (
        running_actor(small_server, big_config),
        SharedContextStore(config=big_config) as store,
    ):
        eid = await store.create_context("./p")
        events = await nc.subscribe(event_filter("default", eid))
        await nc.flush()
        body = encode(OriginalAnalysis(files_analyzed=1, issues=incompressible(2 * MiB)))
        subject = write_subject("default", eid, "original_analysis")
        frames = frame_write(body, room=MiB // 2, write_id="w-bad", compress_over=10**12)
        # Chunk 2 is lost: the last one is refused, with why.
        for i, frame in enumerate(frames):
            if i == 1:
                continue
            headers = {**frame.headers, HEADER_MSG_ID: f"bad.{i}"}
            ack = await nc.jetstream().publish(subject, frame.data, headers=headers)
        reply = await request(
            nc,
            query_subject("default", Query.OUTCOME),
            encode(OutcomeRequest(seq=ack.seq, min_seq=ack.seq)),
        )
        outcome = Decoders.outcome.decode(reply.data)
        assert not outcome.applied
        assert outcome.code == "incomplete"
        error = error_for(outcome.code, outcome.reason or "")
        assert isinstance(error, IncompleteWriteError)
        assert "came where 2/" in str(error)
        await store.update_phase("research", eid)
        msg = await events.next_msg(timeout=10)
        applied = Decoders.event.decode(msg.data)
        assert isinstance(applied, WriteApplied)
        assert applied.kind == "stage"  # nothing was announced for the broken write
