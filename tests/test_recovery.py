"""Restart recovery: a new store actor rebuilds every context exactly, from the stream.

Thousands of writes from several clients; the actor stopped and a new one started; and the
actor as its own OS process killed with SIGKILL at random points under load, three times.
Every acknowledged write must be in the rebuilt state once: not lost, not applied twice.
Figures are printed (``-s``) and recorded as test properties.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from workload import (
    ActorProcess,
    Expected,
    contexts_at,
    create_contexts,
    running_actor,
    seq_ranges,
    wait_on,
    write_as,
    writers,
)

from actors.store.snapshots import SNAPSHOT_BUCKET
from broker import EVENTS_STREAM, EmbeddedServer, StoreConfig
from contracts import Decoders, WriteApplied, event_filter

Record = Callable[[str, object], None]


def no_snapshots(config: StoreConfig) -> StoreConfig:
    return config.replace(**{"snapshot_every": None, "snapshot_interval": None})


async def test_a_new_actor_rebuilds_every_context_after_thousands_of_writes(
    server: EmbeddedServer, config: StoreConfig, nc: Client, record_property: Record
) -> None:
    config = no_snapshots(config)
    expected = Expected()
    async with running_actor(server, config, "actor-1") as first:
        owned = await create_contexts(config, clients=4, per_client=5, expected=expected)
        async with writers(config, 4) as clients:
            await asyncio.gather(
                *(write_as(c, eids, 750, expected) for c, eids in zip(clients, owned, strict=True))
            )
        before = await contexts_at(nc, expected.max_seq)
        assert first.state.applied_seq == expected.max_seq
    assert expected.writes == 20 + 4 * 750
    for eid, log in expected.contexts.items():
        assert log.check(before[eid]) == [], eid

    started = perf_counter()
    async with running_actor(server, config, "actor-2") as second:
        restart = perf_counter() - started
        # Rebuilt before it answers: a query that waits for nothing sees everything.
        after = await contexts_at(nc, 0)
        assert second.recovered_writes == expected.writes
    assert after == before
    assert expected.lost_and_duplicated(after) == (0, 0)
    print(f"\nrestart: {expected.writes} writes replayed in {restart * 1000:.0f} ms")
    record_property("writes", expected.writes)
    record_property("restart_ms", round(restart * 1000))


async def test_writes_made_while_no_actor_runs_are_applied_and_announced(
    server: EmbeddedServer, config: StoreConfig, nc: Client
) -> None:
    expected = Expected()
    async with running_actor(server, config, "actor-1"):
        owned = await create_contexts(config, clients=2, per_client=2, expected=expected)
    # No actor: JetStream still acknowledges writes (the client does not wait for the actor).
    async with writers(config, 2) as clients:
        await asyncio.gather(
            *(write_as(c, eids, 100, expected) for c, eids in zip(clients, owned, strict=True))
        )
    async with running_actor(server, config, "actor-2") as actor:
        contexts = await contexts_at(nc, expected.max_seq)
        assert actor.reannounced == 200  # replayed past the last announcement: announced now
    for eid, log in expected.contexts.items():
        assert log.check(contexts[eid]) == [], eid
    events = await applied_events(nc)
    assert sorted(events) == sorted(s for log in expected.contexts.values() for s in log.seqs)
    assert set(events.values()) == {1}


async def applied_events(nc: Client) -> Counter[int]:
    """How many times each write sequence was announced, as the events stream holds it."""
    js = nc.jetstream()
    info = await js.stream_info(EVENTS_STREAM)
    counts: Counter[int] = Counter()
    if not info.state.messages:
        return counts
    done = asyncio.Event()

    async def count(msg: Msg) -> None:
        event = Decoders.event.decode(msg.data)
        if isinstance(event, WriteApplied):
            counts[event.seq] += 1
        if msg.metadata.sequence.stream >= info.state.last_seq:
            done.set()

    sub = await js.subscribe(
        event_filter(),
        stream=EVENTS_STREAM,
        ordered_consumer=True,
        cb=count,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        async with asyncio.timeout(20):
            await done.wait()
    finally:
        await sub.unsubscribe()
    return counts


# -- kill -9 under load --------------------------------------------------------------------


async def test_kill_9_of_the_actor_under_load_loses_and_duplicates_nothing(
    server: EmbeddedServer,
    config: StoreConfig,
    nc: Client,
    tmp_path: Path,
    record_property: Record,
) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    progress = asyncio.Event()  # set on every write acknowledged and every event seen
    expected = Expected(progress=progress)
    announced: Counter[int] = Counter()  # core-subscription view: includes re-announcements

    async def on_event(msg: Msg) -> None:
        event = Decoders.event.decode(msg.data)
        if isinstance(event, WriteApplied):
            announced[event.seq] += 1
        progress.set()

    await nc.subscribe(event_filter(), cb=on_event)
    await nc.flush()

    until = functools.partial(wait_on, progress)

    # Verbose: what each start loaded and replayed is in its log, should a write go missing.
    actor = ActorProcess(server.url, tmp_path, verbose=True)
    restarts: list[float] = [await actor.start()]
    stop = asyncio.Event()
    try:
        owned = await create_contexts(config, clients=4, per_client=16, expected=expected)
        async with asyncio.timeout(60), writers(config, 4) as clients:
            load = asyncio.gather(
                *(
                    write_as(c, eids, 20_000, expected, stop)
                    for c, eids in zip(clients, owned, strict=True)
                )
            )
            for _ in range(3):
                # A random point of the actor's work: after it announced 300..1500 more.
                target = len(announced) + rng.randint(300, 1500)
                await until(lambda: len(announced) >= target)  # noqa: B023 (awaited at once)
                await actor.kill()
                # Writes go on while no actor runs: JetStream acknowledges them.
                target = expected.writes + rng.randint(100, 1000)
                await until(lambda: expected.writes >= target)  # noqa: B023 (awaited at once)
                restarts.append(await actor.start())
            target = len(announced) + 500
            await until(lambda: len(announced) >= target)
            stop.set()
            await load
            contexts = await contexts_at(nc, expected.max_seq)
    finally:
        stop.set()
        await actor.stop()

    snapshots = await (await nc.jetstream().object_store(SNAPSHOT_BUCKET)).list()
    lost, duplicated = expected.lost_and_duplicated(contexts)
    problems = {eid: p for eid, log in expected.contexts.items() if (p := log.check(contexts[eid]))}
    events = await applied_events(nc)
    acked = [s for log in expected.contexts.values() for s in log.seqs]
    unannounced = [s for s in acked if events[s] == 0]
    announced_twice = [s for s, n in events.items() if n > 1]
    core_repeats = sum(n - 1 for n in announced.values() if n > 1)
    figures = {
        "seed": seed,
        "writes": expected.writes,
        "kills": 3,
        "lost": lost,
        "duplicated": duplicated,
        "unannounced": len(unannounced),
        "announced_twice_in_stream": len(announced_twice),
        "re_announced_on_core": core_repeats,
        "restart_s": [round(r, 3) for r in restarts],
        "snapshots_kept": [i.name for i in snapshots],
    }
    print(f"\ncrash test: {figures}")
    for key, value in figures.items():
        record_property(key, value)
    if lost or duplicated:
        figures["lost_runs"] = seq_ranges(expected.lost_seqs(contexts))[:10]
        figures["contexts_missing"] = len(set(expected.contexts) - set(contexts))
        figures["actor_logs"] = _recovery_lines(tmp_path)
        print(f"crash test, what was lost: {figures}")
    assert (lost, duplicated) == (0, 0), figures
    assert problems == {}
    assert len(contexts) == len(expected.contexts)
    assert unannounced == []
    assert announced_twice == []
    assert snapshots  # the actor saved snapshots along the way, and restarted from them


def _recovery_lines(folder: Path) -> dict[str, list[str]]:
    """What each start of the actor said about snapshots, replay and leadership."""
    wanted = ("loaded", "recovered", "snapshot", "leader", "lease", "gap", "standby", "ERROR")
    return {
        log.name: [
            line[-200:]
            for line in log.read_text(errors="replace").splitlines()
            if any(w in line for w in wanted)
        ][-20:]
        for log in sorted(folder.glob("*.log"))
    }
