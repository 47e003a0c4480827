"""A delivery that never reaches the store actor: the consumer counts it delivered, and the
actor acks "all up to" a later write. It must be read again, not acked away.

A proxy between the actor and a real nats-server loses one JetStream delivery on its way to
the actor (as a connection that dies with a pull's answer in flight, or a server that dies
after its consumer counted the delivery, would)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from tcprelay import TcpRelay
from workload import contexts_at

from actors import SharedContextStore, StoreActor
from broker import EmbeddedServer, StoreConfig, connect
from broker.delivery import pull_request, pull_subject
from broker.intake import ConsumerGap, Intake, open_intake
from contracts import Stage

_ACTOR_ACK = b"$JS.ACK.CTXSTORE_WRITES.ctxstore-actor."


class LosingProxy(TcpRelay):
    """A TCP proxy that forwards the NATS protocol both ways and, once armed, drops the
    ``nth`` JetStream delivery of the actor's durable consumer that the server sends."""

    def __init__(self, upstream_port: int, nth: int) -> None:
        super().__init__(upstream_port)
        self._nth = nth
        self.armed = False
        self.seen = 0
        self.dropped: bytes | None = None  # the control line of the dropped delivery

    async def to_client(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        await self._deliveries(src, dst)

    async def _deliveries(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Server to client, one protocol message at a time (a MSG or HMSG with its body)."""
        try:
            while line := await src.readline():
                body = b""
                op = line.split(b" ", 1)[0].upper()
                if op in (b"MSG", b"HMSG"):
                    body = await src.readexactly(int(line.split()[-1]) + 2)
                    reply = (
                        line.split()[3] if len(line.split()) >= (5 if op == b"MSG" else 6) else b""
                    )
                    if self.armed and reply.startswith(_ACTOR_ACK):
                        self.seen += 1
                        if self.seen == self._nth:
                            self.dropped = line
                            continue
                dst.write(line + body)
                await dst.drain()
        finally:
            dst.close()


@pytest.fixture
async def losing_actor(
    server: EmbeddedServer, config: StoreConfig
) -> AsyncIterator[tuple[LosingProxy, StoreActor]]:
    async with LosingProxy(server.port or 0, nth=7) as proxy:
        nc = await connect(proxy.url, name="actor-behind-proxy", long_running=True)
        try:
            async with StoreActor(nc, config) as actor:
                yield proxy, actor
        finally:
            await nc.close()


async def test_a_delivery_lost_on_its_way_to_the_actor_is_read_again(
    losing_actor: tuple[LosingProxy, StoreActor], config: StoreConfig
) -> None:
    proxy, actor = losing_actor
    async with SharedContextStore(config=config, name="writer", confirm_writes=False) as store:
        eid = await store.create_context("./p")
        await store.get_context(eid)  # applied: the writes below are the ones counted
        proxy.armed = True
        errors = [f"error-{n}" for n in range(40)]
        last = 0
        for error in errors:
            receipt = await store.update_phase(Stage.RESEARCH, eid, error=error)
            last = receipt.seq
        assert config.nats_url is not None
        nc = await connect(config.nats_url, name="reader")
        try:
            async with asyncio.timeout(30):
                contexts = await contexts_at(nc, last)
        finally:
            await nc.close()
    assert proxy.dropped is not None, "the proxy saw too few deliveries to drop one"
    assert contexts[eid].error_log == errors
    assert actor.state.applied_seq >= last


@pytest.mark.parametrize("kind", ["raw", "public"])
async def test_deliveries_lost_before_an_intakes_first_one_are_a_gap_too(
    server: EmbeddedServer, kind: Literal["raw", "public"]
) -> None:
    """A reader on a consumer it made anew expects its first delivery to be the consumer's
    first: deliveries lost before it (the answer to a pull cancelled mid-way, taken off the
    connection and dropped) must show as a gap, or the reader applies what follows and the
    lost writes are skipped for good (the state's position is past them)."""
    nc = await connect(server.url, name="gap-reader")
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="GAPS", subjects=["gaps.>"]))
        for n in range(10):
            await js.publish(f"gaps.{n}", b"x")
        consumer = await js.add_consumer(
            "GAPS",
            ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        # Three deliveries taken by a pull whose answer never reaches the intake.
        elsewhere = await nc.subscribe(nc.new_inbox())
        await nc.publish(
            pull_subject("GAPS", consumer.name),
            pull_request(3, expires=1.0, max_bytes=1 << 20),
            reply=elsewhere.subject,
        )
        for _ in range(3):
            await elsewhere.next_msg(timeout=10)
        await elsewhere.unsubscribe()
        handled: list[int] = []
        intake = open_intake(
            nc,
            kind,
            "GAPS",
            consumer.name,
            lambda delivery: handled.append(delivery.seq),
            batch=10,
            max_bytes=1 << 20,
            expires=1.0,
        )
        async with intake:
            with pytest.raises(ConsumerGap):
                await _read_until_stopped(intake)
        assert handled == []
    finally:
        await nc.close()


async def _read_until_stopped(intake: Intake) -> None:
    """A few pulls (the whole stream fits in one), then what stopped the intake, if any."""
    async with asyncio.timeout(10):
        for _ in range(3):
            if intake.stopped:
                break
            await intake.pull()
    intake.raise_failure()
