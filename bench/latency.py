"""Figures 1 and 3: get_context and compare latency against a bare request-reply echo.

Three variants run in alternating blocks on the same server, the actor and the echo
responder living in one process of their own (``bench.host``):

- ``api``: ``SharedContextStore.get_context`` / ``get_comparison_data`` (request, reply,
  typed decode);
- ``raw``: a plain nats-py request to the same query subject (no decode): the protocol cost;
- ``echo``: a plain nats-py request answered by a bare responder with the same number of
  bytes as the store's reply;
- ``redis``, ``langgraph``: the peers a user would pick instead (``bench.peers``), holding the
  very context our store replies (its JSON; decoded by the same typed decoder for Redis),
  read back in the same alternating blocks. Skipped, and said so, where they cannot run.

Each variant's percentiles 0-100 are kept (``quantiles_us``) for ``bench.charts``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from actors import SharedContextStore
from bench.common import (
    ECHO_PREFIX,
    ActorHost,
    Figure,
    bench_config,
    percentile,
    raw_connection,
    server,
)
from bench.payloads import evolution_writes
from bench.peers import Peers, open_peers
from contracts import (
    CompareRequest,
    CreateContext,
    EvaluationResults,
    ExternalResearch,
    GetRequest,
    ImplementationLog,
    ImprovementPlan,
    OriginalAnalysis,
    Query,
    StageUpdate,
    Write,
    encode,
    query_subject,
)

__all__ = ["run_latency", "write_evolution"]


async def write_evolution(store: SharedContextStore, eid: str, writes: list[Write]) -> None:
    """Write a whole evolution through the client API."""
    for body in writes:
        match body:
            case CreateContext():
                await store.create_context(body.target_path, body.focus_areas, evolution_id=eid)
            case StageUpdate():
                await store.update_phase(body.phase, eid)
            case OriginalAnalysis():
                await store.store_original_analysis(
                    body.files_analyzed,
                    body.metrics,
                    body.issues,
                    body.improvements,
                    evolution_id=eid,
                )
            case ExternalResearch():
                await store.store_external_research(
                    body.best_practices, body.references, body.patterns, evolution_id=eid
                )
            case ImprovementPlan():
                await store.store_improvement_plan(
                    body.tasks,
                    body.priorities,
                    body.dependencies,
                    body.estimated_impact,
                    evolution_id=eid,
                )
            case ImplementationLog():
                await store.store_implementation_log(
                    body.modified_files, body.changes, body.rollback_points, evolution_id=eid
                )
            case EvaluationResults():
                await store.store_evaluation_results(
                    body.goals_achieved,
                    body.metrics_comparison,
                    body.success_rate,
                    evolution_id=eid,
                )
            case _:
                raise TypeError(type(body))


async def _interleaved(
    variants: dict[str, Callable[[], Awaitable[Any]]], blocks: int, per_block: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for fn in variants.values():  # warm up
        for _ in range(50):
            await fn()
    clock = time.perf_counter_ns
    for block in range(blocks):
        order = names[block % len(names) :] + names[: block % len(names)]
        for name in order:
            fn, out = variants[name], samples[name]
            for _ in range(per_block):
                t0 = clock()
                await fn()
                out.append((clock() - t0) / 1000.0)
    return samples


def quantiles(samples: list[float]) -> list[float]:
    """Percentiles 0, 1, ..., 100 of ``samples``: what the charts draw distributions from."""
    ordered = sorted(samples)
    last = len(ordered) - 1
    return [ordered[round(q / 100 * last)] for q in range(101)]


PEER_LABELS = {
    "redis": "Redis GET of the same JSON + the same msgspec decode",
    "langgraph": "LangGraph AsyncSqliteSaver.aget_tuple (SQLite)",
}


def _peer_figures(what: str, samples: dict[str, list[float]]) -> list[Figure]:
    """Our client API's p50 against each peer's, read from the same run's samples."""
    figs = []
    ours = samples["api"]
    for peer, label in PEER_LABELS.items():
        if peer not in samples:
            continue
        theirs = samples[peer]
        figs.append(
            Figure(
                f"  ... {what} p50 against {peer}",
                percentile(ours, 50),
                "us",
                percentile(theirs, 50),
                f"{label} p50",
                extra={
                    "peer": peer,
                    "p99_us": {"api": percentile(ours, 99), peer: percentile(theirs, 99)},
                },
            )
        )
    return figs


def _latency_figures(
    what: str, samples: dict[str, list[float]], sizes: dict[str, int], p99_target: bool
) -> list[Figure]:
    p50 = {k: percentile(v, 50) for k, v in samples.items()}
    p99 = {k: percentile(v, 99) for k, v in samples.items()}
    extra = {
        "samples": len(samples["api"]),
        "p50_us": p50,
        "p99_us": p99,
        "reply_bytes": sizes,
        "mean_us": {k: sum(v) / len(v) for k, v in samples.items()},
        "quantiles_us": {k: quantiles(v) for k, v in samples.items()},
    }
    figs = [
        Figure(
            f"{what} p50 (client API)",
            p50["api"],
            "us",
            p50["echo"],
            "bare echo p50",
            "<= 1.3x" if p99_target else "",
            None,
            extra,
        ),
        Figure(
            f"{what} p50 (raw request, no decode)", p50["raw"], "us", p50["echo"], "bare echo p50"
        ),
        Figure(
            f"{what} p99 (client API)",
            p99["api"],
            "us",
            p99["echo"],
            "bare echo p99",
            "< 1000 us" if p99_target else "",
        ),
    ]
    if p99_target:
        figs[0].met = figs[0].ratio is not None and figs[0].ratio <= 1.3
        figs[2].met = p99["api"] < 1000.0
    return figs + _peer_figures(what, samples)


async def _real_get(
    store: SharedContextStore, raw: Any, peers: Peers, blocks: int, per_block: int
) -> list[Figure]:
    """get_context of a real evolution's context (``bench.real``) against a bare echo of
    the very bytes the store replies, decoded by the same typed decoder: what any client
    pays to receive and decode that context."""
    from bench.common import SAME_PREFIX
    from bench.real import real_evolutions
    from broker.publish import publish
    from contracts import HEADER_MSG_ID, Decoders, write_subject

    with tempfile.TemporaryDirectory(prefix="ctxbench-real-") as folder:
        evolution = (await real_evolutions(Path(folder)))[0]
    eid = "bench-real-0"
    js = raw.jetstream()

    async def jetstream() -> Any:
        return js

    last = 0
    for i, (kind, body) in enumerate(evolution):
        subject = write_subject("default", eid, kind)
        ack = await publish(jetstream, subject, body, {HEADER_MSG_ID: f"{eid}-{i}"})
        last = ack.seq
    subject = query_subject("default", Query.GET)
    request = encode(GetRequest(evolution_id=eid, min_seq=last))
    reply = (await raw.request(subject, request, timeout=30)).data
    await raw.request(f"{SAME_PREFIX}.keep.real", reply)
    same = f"{SAME_PREFIX}.get.real"
    decoder = Decoders.context

    async def echo_decode() -> None:
        decoder.decode((await raw.request(same, request)).data)

    samples = await _interleaved(
        {
            "api": lambda: store.get_context(eid),
            "raw": lambda: raw.request(subject, request),
            "echo": lambda: raw.request(same, request),
            "echo_decode": echo_decode,
            **await peers.hold(eid, reply, await store.get_context(eid)),
        },
        blocks,
        per_block,
    )
    p50 = {k: percentile(v, 50) for k, v in samples.items()}
    p99 = {k: percentile(v, 99) for k, v in samples.items()}
    ratio = p50["api"] / p50["echo_decode"]
    extra = {
        "p50_us": p50,
        "p99_us": p99,
        "reply_bytes": len(reply),
        "samples": len(samples["api"]),
        "quantiles_us": {k: quantiles(v) for k, v in samples.items()},
    }
    return [
        Figure(
            f"get_context p50, a real evolution's context ({len(reply):,} B)",
            p50["api"],
            "us",
            p50["echo_decode"],
            "bare echo of the same bytes + msgspec decode",
            "<= 1.1x",
            ratio <= 1.1,
            extra,
        ),
        Figure(
            "  ... raw request, no decode",
            p50["raw"],
            "us",
            p50["echo"],
            "bare echo of the same bytes",
        ),
        *_peer_figures("real context", samples),
    ]


async def run_latency(tmp: Path, *, quick: bool) -> list[Figure]:
    blocks, per_block = (6, 200) if quick else (20, 500)
    async with (
        server(tmp, "latency") as srv,
        ActorHost(srv.url),
        open_peers(tmp, clients=0) as peers,
    ):
        config = bench_config(srv.url)
        raw = await raw_connection(srv.url, "bench-raw")
        async with SharedContextStore(config=config, name="bench-agent") as store:
            eid = "bench-latency-0"
            await write_evolution(store, eid, evolution_writes(0, scaled=True))
            writes_bytes = sum(len(encode(w)) for w in evolution_writes(0, scaled=True))
            get_subject = query_subject(config.tenant, Query.GET)
            cmp_subject = query_subject(config.tenant, Query.COMPARE)
            get_body = encode(GetRequest(evolution_id=eid, min_seq=store.last_seq))
            cmp_body = encode(CompareRequest(evolution_id=eid, min_seq=store.last_seq))
            get_reply = (await raw.request(get_subject, get_body)).data
            get_size = len(get_reply)
            cmp_size = len((await raw.request(cmp_subject, cmp_body)).data)
            get_echo = f"{ECHO_PREFIX}.{get_size}"
            cmp_echo = f"{ECHO_PREFIX}.{cmp_size}"

            get_samples = await _interleaved(
                {
                    "api": lambda: store.get_context(eid),
                    "raw": lambda: raw.request(get_subject, get_body),
                    "echo": lambda: raw.request(get_echo, get_body),
                    **await peers.hold(eid, get_reply, await store.get_context(eid)),
                },
                blocks,
                per_block,
            )
            real = await _real_get(store, raw, peers, blocks, per_block)
            skipped = dict(peers.skipped)
            cmp_samples = await _interleaved(
                {
                    "api": lambda: store.get_comparison_data(eid),
                    "raw": lambda: raw.request(cmp_subject, cmp_body),
                    "echo": lambda: raw.request(cmp_echo, cmp_body),
                },
                max(2, blocks // 2),
                per_block,
            )
        await raw.close()
    figs = [*real, *_latency_figures("get_context", get_samples, {"get": get_size}, True)]
    figs += _latency_figures("compare", cmp_samples, {"compare": cmp_size}, False)
    figs.append(
        Figure(
            "context size on the wire (get reply)",
            get_size,
            "B",
            extra={"compare_reply_bytes": cmp_size, "writes_bytes": writes_bytes, "writes": 10},
        )
    )
    figs.append(Figure("comparison size on the wire", cmp_size, "B"))
    for peer, why in skipped.items():
        figs.append(Figure(f"peer {peer}: skipped", float("nan"), "", extra={"skipped": why}))
    return figs
