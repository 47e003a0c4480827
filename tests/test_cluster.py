"""The store on a three-node cluster on loopback (``broker.cluster.LocalCluster``): replicas
everywhere, writers that ride out the loss of the stream leader with nothing lost or applied
twice, and a standby store actor on another node that takes over when the leader's node dies.

The figures (time until writes resume, lost, doubled) are printed (``pytest -s``), not
asserted: timing on a shared 2-core machine is no test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client
from workload import ActorProcess, Expected, contexts_at

from actors import SharedContextStore, new_evolution_id
from actors.store.lease import LEASE_BUCKET, Holder
from broker import EVENTS_STREAM, WRITES_STREAM, StoreConfig, connect, provision
from broker.cluster import LocalCluster
from broker.streams import drifts, migrate
from contracts import Decoders, Stage, StoreTimeoutError, StoreUnavailableError, event_filter

pytestmark = pytest.mark.timeout(180)

_STAGES = [Stage.RESEARCH, Stage.PLANNING, Stage.IMPLEMENTATION, Stage.EVALUATION]
# A context keeps its last 1,000 error_log entries, and the check counts writes through them:
# a writer moves on to new contexts well before.
_WRITES_PER_CONTEXT = 500


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster(tmp_path / "cluster") as running:
        yield running


def _config(urls: str, tmp_path: Path, **changes: object) -> StoreConfig:
    return StoreConfig.build(
        {}, nats_url=urls, replicas=3, max_payload=64 * 1024, export_path=tmp_path / "x"
    ).replace(**changes)


class Load:
    """Writers that keep writing through a failover: a write that failed is retried with its
    idempotency key (stored once whatever happened to the first attempt)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate  # writes per second, per writer
        self.expected = Expected()
        self.acks: list[float] = []  # monotonic time of every acknowledgement
        self.stop = asyncio.Event()
        self.progress = asyncio.Event()
        self.retries = 0

    async def write(self, client: SharedContextStore, eids: list[str]) -> None:
        n = 0
        began = time.monotonic()
        while not self.stop.is_set():
            # A steady load, not a flood: the figures are of a failover, not of two cores
            # saturated by three servers, two actors and the writers.
            await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))
            if n and n % (len(eids) * _WRITES_PER_CONTEXT) == 0:
                eids = [await self._new_context(client) for _ in eids]
            eid, tag = eids[n % len(eids)], f"{client.name}-{n}"
            stage = _STAGES[n % len(_STAGES)]
            while True:
                try:
                    receipt = await client.update_phase(
                        stage, eid, error=f"e-{tag}", idempotency_key=tag
                    )
                    break
                except (StoreTimeoutError, StoreUnavailableError):
                    self.retries += 1
            log = self.expected.record(eid, receipt.seq)
            log.stages.append((receipt.seq, stage, f"e-{tag}"))
            self.acks.append(time.monotonic())
            self.progress.set()
            n += 1

    async def _new_context(self, client: SharedContextStore) -> str:
        eid = new_evolution_id()
        while True:
            try:
                await client.create_context(f"./{eid}", evolution_id=eid, idempotency_key=eid)
                return eid
            except (StoreTimeoutError, StoreUnavailableError):
                self.retries += 1

    async def acked_after(self, moment: float, count: int = 20) -> float:
        """Seconds from ``moment`` until ``count`` more writes were acknowledged."""
        while sum(1 for t in self.acks if t > moment) < count:
            self.progress.clear()
            await self.progress.wait()
        return sorted(t for t in self.acks if t > moment)[0] - moment

    def gap_around(self, moment: float) -> float:
        """The longest time without any acknowledgement, across ``moment``."""
        before = max((t for t in self.acks if t <= moment), default=moment)
        after = min(t for t in self.acks if t > moment)
        return after - before


@contextlib.asynccontextmanager
async def load(config: StoreConfig, writers: int = 3, rate: float = 100.0) -> AsyncIterator[Load]:
    running = Load(rate)
    async with contextlib.AsyncExitStack() as stack:
        creator = await stack.enter_async_context(SharedContextStore(config=config, name="creator"))
        clients = [
            await stack.enter_async_context(
                SharedContextStore(config=config, name=f"w{i}", confirm_writes=False, timeout=2.0)
            )
            for i in range(writers)
        ]
        owned = []
        for client in clients:
            eids = [await creator.create_context(f"./{client.name}-{j}") for j in range(2)]
            for eid in eids:
                running.expected.record(eid, (await creator.get_context(eid)).version)
            owned.append(eids)
        async with asyncio.TaskGroup() as group:
            for client, eids in zip(clients, owned, strict=True):
                group.create_task(running.write(client, eids))
            try:
                yield running
            finally:
                running.stop.set()


async def _verify(nc: Client, running: Load) -> tuple[int, int]:
    """Lost and doubled writes of ``running``, once the store applied all of them; every
    context exactly as the acknowledgements predict."""
    async with asyncio.timeout(60):  # the actor may still be taking its consumer again
        while True:
            try:
                contexts = await contexts_at(nc, running.expected.max_seq)
                break
            except (msgspec.ValidationError, nats.errors.Error):  # an error reply: not yet
                continue
    lost, doubled = running.expected.lost_and_duplicated(contexts)
    if lost:  # where: the sequences of the writes missing
        missing = sorted(
            seq
            for eid, log in running.expected.contexts.items()
            for seq, _, error in log.stages
            if error not in contexts[eid].error_log
        )
        print(f"\nmissing {len(missing)}: {missing[:5]} .. {missing[-5:]}")
    if (lost, doubled) == (0, 0):
        for eid, log in running.expected.contexts.items():
            assert log.check(contexts[eid]) == [], eid
    return lost, doubled


async def _leader(nc_urls: str, stream: str) -> str:
    nc = await connect(nc_urls, name="leader-probe")
    try:
        info = await nc.jetstream().stream_info(stream)
        assert info.cluster is not None
        assert info.cluster.leader is not None
        return str(info.cluster.leader)
    finally:
        await nc.close()


async def _lease_holder_pid(urls: str) -> int | None:
    """The pid of the lease's holder; None while nobody holds it, or the bucket cannot be
    read (a JetStream request may time out while the cluster loses a member)."""
    nc = await connect(urls, name="lease-probe")
    try:
        # As the bucket's leader has it (a direct get may be answered by a lagging replica).
        msg = await nc.jetstream(timeout=1.0).get_last_msg(
            f"KV_{LEASE_BUCKET}", f"$KV.{LEASE_BUCKET}.actor"
        )
        return msgspec.json.decode(msg.data or b"", type=Holder).pid
    except Exception:
        return None
    finally:
        await nc.close()


async def test_replicas_everywhere_and_provisioning_never_lowers_them(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    config = _config(cluster.urls, tmp_path)
    nc = await connect(cluster.urls, name="test", auth=config.auth)
    try:
        js = nc.jetstream()
        assert await provision(js, config) == []
        for stream in (WRITES_STREAM, EVENTS_STREAM):
            assert (await js.stream_info(stream)).config.num_replicas == 3
        # An actor started with one setting changed and replicas left at 1: nothing scales
        # down; what differs is reported.
        lower = config.replace(replicas=1, max_payload=128 * 1024)
        found = await provision(js, lower)
        assert {(d.stream, d.field, d.current, d.wanted) for d in found} >= {
            (WRITES_STREAM, "num_replicas", 3, 1),
            (EVENTS_STREAM, "num_replicas", 3, 1),
        }
        info = await js.stream_info(WRITES_STREAM)
        assert info.config.num_replicas == 3
        assert info.config.max_msg_size == 128 * 1024  # a safe setting does follow
        # Only the explicit migration changes it, and says what it changed.
        assert await migrate(js, lower, apply=False) == found
        assert (await js.stream_info(WRITES_STREAM)).config.num_replicas == 3
        await migrate(js, lower, apply=True)
        assert (await js.stream_info(WRITES_STREAM)).config.num_replicas == 1
        assert await drifts(js, lower) == []
    finally:
        await nc.close()


async def test_failover_of_the_stream_leader_and_of_the_active_actor(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    config = _config(cluster.urls, tmp_path)
    nc = await connect(cluster.urls, name="test")
    await provision(nc.jetstream(), config)
    await nc.close()
    leader = await _leader(cluster.urls, WRITES_STREAM)
    others = [n for n in cluster.nodes if n.server_name != leader]
    env = {"CONTEXT_STORE_REPLICAS": "3"}
    # The active actor and its standby each on a node of their own, neither the stream's
    # leader: each failure below is one thing at a time.
    active = ActorProcess(others[0].url, tmp_path, "active", env, verbose=True)
    standby = ActorProcess(others[1].url, tmp_path, "standby", env, verbose=True)
    await active.start()
    await standby.start()
    try:
        assert await _lease_holder_pid(cluster.urls) == active.pid
        nc = await connect(cluster.urls, name="test")
        js = nc.jetstream()
        for bucket in ("KV_ctxstore_leases",):
            assert (await js.stream_info(bucket)).config.num_replicas == 3
        async with load(config) as first:
            await first.acked_after(time.monotonic() - 60, count=50)
            # 1. kill -9 the write stream's leader under load.
            await cluster.node(leader).kill()
            killed = time.monotonic()
            resumed = await first.acked_after(killed)
            gap = first.gap_around(killed)
            assert await _leader(cluster.urls, WRITES_STREAM) != leader
        lost, doubled = await _verify(nc, first)
        print(
            f"\nstream leader {leader} killed: writes resumed {resumed:.2f}s after the kill "
            f"(longest time without an ack {gap:.2f}s); {first.expected.writes} acknowledged "
            f"writes, lost {lost}, applied twice {doubled}"
        )
        assert (lost, doubled) == (0, 0)

        await cluster.node(leader).restart()  # back to three, for the next failure
        await cluster.wait_ready(replicas=3)
        async with load(config) as second:
            await second.acked_after(time.monotonic() - 60, count=50)
            events = await nc.subscribe(event_filter())
            await nc.flush()
            # 2. kill -9 the node of the active actor, and the actor with it (the lease may
            # have moved in the first failure: its holder is the active one).
            holder = await _lease_holder_pid(cluster.urls)
            active, standby = (active, standby) if holder == active.pid else (standby, active)
            await active.kill()
            await next(n for n in cluster.nodes if n.url == active.url).kill()
            killed = time.monotonic()
            async with asyncio.timeout(60):
                while await _lease_holder_pid(cluster.urls) != standby.pid:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)  # (a KV watch would die with the node it is on)
            took_over = time.monotonic() - killed
            # Announcements come again: from the new leader, for writes stored after it took
            # the lease (what it announces on taking the lead are writes from before).
            mark = second.expected.max_seq
            async with asyncio.timeout(60):
                while Decoders.event.decode((await events.next_msg(timeout=60)).data).seq <= mark:
                    pass
            announced = time.monotonic() - killed
            await second.acked_after(time.monotonic(), count=20)
        lost, doubled = await _verify(nc, second)
        print(
            f"active actor's node killed: the standby took the lease {took_over:.2f}s after, "
            f"announced new writes {announced:.2f}s after; {second.expected.writes} "
            f"acknowledged writes, lost {lost}, applied twice {doubled}"
        )
        assert (lost, doubled) == (0, 0)
        await nc.close()
    finally:
        for process in (active, standby):
            with contextlib.suppress(Exception):
                await process.stop()
