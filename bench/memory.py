"""Figure 5: memory per context held by the store actor.

Each measurement runs in a fresh process (``python -m bench.memory``) so nothing left over
from other benchmarks skews it. The process builds the actor's state exactly as the actor
does, by ``StoreState.apply`` of stored writes (10 per context: a whole evolution), and
reports:

- RSS delta / contexts: what the operating system sees (includes allocator overhead; the
  figure the target is about);
- tracemalloc delta / contexts (a separate run): the Python objects alone;
- the context's JSON size: the baseline (the spec's "~10 KB" is JSON);
- the extra held when every context has been read once (the actor keeps the encoded reply
  of the most recently read contexts, within ``CACHE_BYTES``).

The peer: Redis (``bench.peers``) holding the same real contexts as JSON values (the bytes our
store replies), its ``used_memory`` growth per context. LangGraph's SQLite saver keeps its
checkpoints on disk, not in memory: it has no counterpart here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Figure

__all__ = ["run_memory"]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def probe(contexts: int, scaled: bool, trace: bool) -> dict[str, float]:
    from actors.core.fold import Limits, StoredWrite, StoreState
    from actors.store.queries import CACHE_BYTES
    from bench.payloads import evolution_writes
    from contracts import encode, write_subject

    # Encode each write once per shape; ids differ per context, the bodies vary by seed.
    state = StoreState(Limits(1024 * 1024, None))
    now = datetime.now(UTC)
    gc.collect()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if trace else _rss()
    seq = 0
    for c in range(contexts):
        eid = f"evo-{c:08d}-bench"
        for body in evolution_writes(c, scaled=scaled):
            seq += 1
            kind = str(body.__struct_config__.tag)
            state.apply(
                StoredWrite(
                    seq=seq,
                    time=now,
                    subject=write_subject("default", eid, kind),
                    data=encode(body),
                    writer="bench-writer",
                )
            )
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if trace else _rss()
    from actors.core.held import context_reply

    # The context's JSON is what a get replies (the held context itself is compressed: its
    # own encoding is not the JSON).
    sample = next(iter(state.contexts.values()))
    json_bytes = len(context_reply(sample))
    result = {
        "contexts": len(state.contexts),
        "bytes_per_context": (after - before) / contexts,
        "json_bytes": json_bytes,
    }
    if not trace:
        # As the actor's reply cache: only the most recently read contexts stay encoded,
        # within its byte budget.
        cache, cached = {}, 0
        for k, v in reversed(state.contexts.items()):
            data = context_reply(v)
            if cached + len(data) > CACHE_BYTES:
                break
            cache[k], cached = data, cached + len(data)
        gc.collect()
        result["with_reply_cache_per_context"] = (_rss() - before) / contexts
        del cache
    return result


def probe_real(contexts: int, real: Path) -> dict[str, float]:
    """Contexts folded from the writes of real evolutions (``bench.real``), as the actor
    folds them; their gzipped JSON is the baseline (the spec's "compressed JSON")."""
    from bench.real import build_contexts, gzipped_json, load

    evolutions = load(real)
    gc.collect()
    before = _rss()
    state = build_contexts(evolutions, contexts)
    gc.collect()
    after = _rss()
    del evolutions
    sizes = [gzipped_json(c) for c in list(state.contexts.values())[: 6 * 20]]
    from actors.core.held import context_reply

    json_sizes = [len(context_reply(c)) for c in list(state.contexts.values())[: 6 * 20]]
    return {
        "contexts": len(state.contexts),
        "bytes_per_context": (after - before) / contexts,
        "gzip_json_bytes": sum(sizes) / len(sizes),
        "json_bytes": sum(json_sizes) / len(json_sizes),
    }


async def _probe(
    contexts: int, scaled: bool, trace: bool, real: Path | None = None
) -> dict[str, float]:
    args = [sys.executable, "-m", "bench.memory", "--contexts", str(contexts)]
    if scaled:
        args.append("--scaled")
    if trace:
        args.append("--trace")
    if real is not None:
        args += ["--real", str(real)]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed: {args}")
    result: dict[str, float] = json.loads(out)
    return result


async def run_memory(tmp: Path, *, quick: bool, full: bool) -> list[Figure]:
    small_n = 20_000 if quick else 100_000
    scaled_n = 2_000 if quick else 10_000
    real = await _real_figure(tmp)
    figures = [real, *await _redis_figure(tmp, real)]
    for label, n, scaled in (
        ("spec-sized", small_n, False),
        ("scaled (50 issues/tasks)", scaled_n, True),
    ):
        rss = await _probe(n, scaled, trace=False)
        traced = await _probe(min(n, 10_000), scaled, trace=True)
        per = rss["bytes_per_context"]
        figures.append(
            Figure(
                f"memory per context, {n:,} {label} contexts (RSS)",
                per,
                "B/context",
                rss["json_bytes"],
                "its JSON size",
                "<= 10 KB" if not scaled else "",
                (per <= 10 * 1024) if not scaled else None,
                {"rss": rss, "tracemalloc": traced},
            )
        )
        figures.append(
            Figure(
                f"  ... Python objects only (tracemalloc, {min(n, 10_000):,} contexts)",
                traced["bytes_per_context"],
                "B/context",
                rss["json_bytes"],
                "its JSON size",
            )
        )
        figures.append(
            Figure(
                "  ... after every context was read once (reply cache)",
                rss["with_reply_cache_per_context"],
                "B/context",
                rss["json_bytes"],
                "its JSON size",
            )
        )
    return figures


REAL_CONTEXTS = 10_000
REDIS_CONTEXTS = 2_000  # ~100 MB of JSON in redis-server: enough for a steady per-key figure


async def _redis_figure(tmp: Path, ours: Figure) -> list[Figure]:
    """Redis's ``used_memory`` growth per context holding the same real contexts as JSON
    values (each under its own key, as the latency bench reads them), against ours."""
    from actors.core.held import context_reply
    from bench.peers import open_peers
    from bench.real import build_contexts, load

    async with open_peers(tmp, clients=0, langgraph=False) as peers:
        if (redis := peers.redis) is None:
            return [
                Figure(f"peer {p}: skipped", float("nan"), "", extra={"skipped": why})
                for p, why in peers.skipped.items()
            ]
        state = build_contexts(load(tmp / "real.msgpack"), REDIS_CONTEXTS)
        before = await redis.used_memory()
        json_bytes = 0
        for held in state.contexts.values():
            reply = context_reply(held)
            json_bytes += len(reply)
            await redis.put_context(f"ctx:{held.evolution_id}", reply)
        per = (await redis.used_memory() - before) / REDIS_CONTEXTS
    return [
        Figure(
            "  ... against redis: the same real contexts as JSON values (used_memory)",
            ours.value,
            "B/context",
            per,
            f"Redis used_memory per context ({REDIS_CONTEXTS:,} held)",
            extra={
                "peer": "redis",
                "peer_bytes_per_context": per,
                "json_bytes": json_bytes / REDIS_CONTEXTS,
                "contexts": REDIS_CONTEXTS,
            },
        )
    ]


async def _real_figure(tmp: Path) -> Figure:
    from bench.real import real_evolutions, save

    path = tmp / "real.msgpack"
    save(await real_evolutions(tmp), path)
    got = await _probe(REAL_CONTEXTS, False, False, real=path)
    per, gz = got["bytes_per_context"], got["gzip_json_bytes"]
    return Figure(
        f"memory per real evolution context, {REAL_CONTEXTS:,} contexts (RSS)",
        per,
        "B/context",
        gz,
        "its JSON gzipped",
        "<= 1.5x",
        per <= 1.5 * gz,
        {"real": got},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--contexts", type=int, required=True)
    parser.add_argument("--scaled", action="store_true")
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--real", type=Path)
    a = parser.parse_args()
    if a.real is not None:
        print(json.dumps(probe_real(a.contexts, a.real)))
    else:
        print(json.dumps(probe(a.contexts, a.scaled, a.trace)))
