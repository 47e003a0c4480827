"""Applied writes per second with the store in 2 partitions (2 actor processes) against 1.

Two servers run side by side: one holds a store of one partition, served by one actor
process; the other a store of two partitions (``CONTEXT_STORE_PARTITIONS=2``), served by one
actor process per partition. Rounds alternate between them, and with a bare round (the same
payloads ``publish_async`` to a stream configured as the write stream, on the first server:
what the writers and one server take at most). Each round publishes fresh evolutions (10
writes each, as ``bench.writes``) from 4 writers, each on its own connection, pipelined; a
store round ends when every partition has applied every write of it (a ``stats`` query with
``min_seq`` = the round's last sequence, which the store's subject gathers from every
partition). The figure is the median round; the ratio is 2 partitions over 1.

A second figure takes the writers out: a backlog of writes is published with no actor
running, then the actors start (1, or one per partition, at once) and the figure is the
backlog over the time from their start until every write is applied (and announced):
what the actors take when they need not share the cores with the writers. A fresh server
per round and setup; the process start-up (about 0.5 s, the same for both) is in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from nats.aio.client import Client

from bench.common import (
    ActorHost,
    CpuMeter,
    Figure,
    bench_config,
    median,
    publish_pipelined,
    raw_connection,
    server,
)
from bench.writes import _bare_stream, _items
from broker import StoreConfig, provision
from contracts import Query, StatsRequest, encode, query_subject, service_error

__all__ = ["run_partitions"]

WRITERS = 4


async def _wait_all_applied(nc: Client, config: StoreConfig, seq: int) -> None:
    """Until every partition has applied every write of its own up to ``seq``."""
    subject = query_subject(config.tenant, Query.STATS)
    body = encode(StatsRequest(min_seq=seq))
    while True:
        reply = await nc.request(subject, body, timeout=150)
        if service_error(reply.headers, reply.data) is None:
            return


async def run_partitions(tmp: Path, *, quick: bool) -> list[Figure]:
    contexts_per_writer = 250 if quick else 500  # x 10 writes
    rounds = 3 if quick else 5
    rates: dict[str, list[float]] = {"p1": [], "p2": [], "bare": []}
    cpu: dict[str, list[dict[str, float]]] = {"p1": [], "p2": [], "bare": []}
    async with contextlib.AsyncExitStack() as stack:
        one = await stack.enter_async_context(server(tmp, "one-partition"))
        two = await stack.enter_async_context(server(tmp, "two-partitions"))
        host1 = await stack.enter_async_context(ActorHost(one.url))
        hosts2 = [
            await stack.enter_async_context(ActorHost(two.url, partitions=2, partition=k))
            for k in range(2)
        ]
        configs = {"p1": bench_config(one.url), "p2": bench_config(two.url, partitions=2)}
        meters = {
            "p1": CpuMeter({"server": one.pid, "actors": host1.pid, "writers": None}),
            "bare": CpuMeter({"server": one.pid, "writers": None}),
            "p2": CpuMeter(
                {
                    "server": two.pid,
                    "actor_0": hosts2[0].pid,
                    "actor_1": hosts2[1].pid,
                    "writers": None,
                }
            ),
        }
        conns = {
            name: [await raw_connection(srv.url, f"bench-{name}-{w}") for w in range(WRITERS)]
            for name, srv in (("p1", one), ("p2", two))
        }
        conns["bare"] = conns["p1"]
        for nc in (*conns["p1"], *conns["p2"]):
            stack.push_async_callback(nc.close)
        await _bare_stream(conns["p1"][0], configs["p1"])
        order = ["p1", "p2", "bare"]
        for r in range(rounds):
            for mode in order[r % 3 :] + order[: r % 3]:
                config = configs["p1" if mode == "bare" else mode]
                per_writer = [
                    _items(config, r, w, contexts_per_writer, mode == "bare")
                    for w in range(WRITERS)
                ]
                meter = meters[mode]
                meter.start()
                started = time.perf_counter()
                lasts = await asyncio.gather(
                    *(
                        publish_pipelined(nc, items)
                        for nc, items in zip(conns[mode], per_writer, strict=True)
                    )
                )
                if mode != "bare":
                    await _wait_all_applied(conns[mode][0], config, max(lasts))
                elapsed = time.perf_counter() - started
                count = sum(len(items) for items in per_writer)
                used = meter.stop()
                cpu[mode].append({k: round(v / count * 1e6, 1) for k, v in used.items()})
                rates[mode].append(count / elapsed)
    catch_up: dict[str, list[float]] = {"p1": [], "p2": []}
    backlog_per_writer = 1000 if quick else 2500  # contexts x 10 writes, x WRITERS
    for r in range(rounds):
        for mode in ("p1", "p2") if r % 2 == 0 else ("p2", "p1"):
            partitions = 1 if mode == "p1" else 2
            catch_up[mode].append(
                await _catch_up(tmp / f"catch-up-{mode}-{r}", partitions, r, backlog_per_writer)
            )
    p1, p2, bare = median(rates["p1"]), median(rates["p2"]), median(rates["bare"])
    c1, c2 = median(catch_up["p1"]), median(catch_up["p2"])
    extra = {
        "rounds": rates,
        # Each round of 2 partitions over the round of 1 next to it (same load on the machine).
        "ratio_per_round": [round(b / a, 3) for a, b in zip(rates["p1"], rates["p2"], strict=True)],
        "writes_per_round": WRITERS * contexts_per_writer * 10,
        "cpu_us_per_write": cpu,
    }
    return [
        Figure(
            f"applied writes/s, 2 partitions (2 actor processes), {WRITERS} writers",
            p2,
            "writes/s",
            p1,
            "1 partition (1 actor process)",
            "> 1x",
            p2 > p1,
            extra,
        ),
        Figure(
            "applied writes/s catching up a backlog, 2 partitions (2 actor processes)",
            c2,
            "writes/s",
            c1,
            "1 partition (1 actor process)",
            "",
            None,
            {
                "rounds": catch_up,
                "backlog": WRITERS * backlog_per_writer * 10,
                "ratio_per_round": [
                    round(b / a, 3) for a, b in zip(catch_up["p1"], catch_up["p2"], strict=True)
                ],
            },
        ),
        Figure(
            f"applied writes/s, 1 partition, {WRITERS} writers",
            p1,
            "writes/s",
            bare,
            "bare publish_async",
            "",
            None,
            {},
        ),
    ]


async def _catch_up(root: Path, partitions: int, round_no: int, contexts_per_writer: int) -> float:
    """Writes/s of actors starting on a backlog, from their start to the last write applied."""
    async with server(root, "catch-up") as srv:
        config = bench_config(srv.url, partitions=partitions)
        conns = [await raw_connection(srv.url, f"bench-backlog-{w}") for w in range(WRITERS)]
        try:
            await provision(conns[0].jetstream(), config)
            per_writer = [
                _items(config, 1000 + round_no, w, contexts_per_writer, False)
                for w in range(WRITERS)
            ]
            lasts = await asyncio.gather(
                *(publish_pipelined(nc, items) for nc, items in zip(conns, per_writer, strict=True))
            )
            hosts = [
                ActorHost(srv.url, partitions=partitions, partition=k) for k in range(partitions)
            ]
            started = time.perf_counter()
            try:
                await asyncio.gather(*(host.start() for host in hosts))
                await _wait_all_applied(conns[0], config, max(lasts))
                elapsed = time.perf_counter() - started
            finally:
                for host in hosts:
                    await host.stop()
        finally:
            for nc in conns:
                await nc.close()
    return sum(len(items) for items in per_writer) / elapsed
