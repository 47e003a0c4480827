"""``python -m bench.host --url URL [--partitions P --partition K]``: a store actor plus a
bare echo responder, until SIGTERM. Of a partitioned store: partition K's actor (the echo
responder only with partition 0).

Prints ``ready`` once the actor serves queries."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from nats.aio.msg import Msg

from actors.store.actor import StoreActor
from bench.common import ECHO_PREFIX, SAME_PREFIX, bench_config
from broker import connect


async def main(url: str, partitions: int = 1, partition: int = 0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    echo_nc = await connect(url, name="bench-echo", long_running=True)
    replies: dict[str, bytes] = {}

    async def echo(msg: Msg) -> None:
        payload = replies.get(msg.subject)
        if payload is None:
            payload = replies[msg.subject] = b"x" * int(msg.subject.rsplit(".", 1)[1])
        await msg.respond(payload)

    kept: dict[str, bytes] = {}

    async def same(msg: Msg) -> None:
        # bench.same.keep.<name> keeps the request's body; bench.same.get.<name> replies it.
        _, _, op, name = msg.subject.split(".", 3)
        if op == "keep":
            kept[name] = msg.data
            await msg.respond(b"ok")
        else:
            await msg.respond(kept.get(name, b""))

    if partition == 0:
        await echo_nc.subscribe(f"{ECHO_PREFIX}.*", cb=echo)
        await echo_nc.subscribe(f"{SAME_PREFIX}.*.*", cb=same)
    await echo_nc.flush()
    nc = await connect(url, name=f"bench-actor-{partition}", long_running=True)
    config = bench_config(url, partitions=partitions)
    async with StoreActor(nc, config, read_wait=120.0, owns_process=True, partition=partition):
        print("ready", flush=True)
        await stop.wait()
    with contextlib.suppress(Exception):
        await nc.drain()
        await echo_nc.drain()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--partition", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.url, args.partitions, args.partition))
