"""Real evolution contexts: the writes of whole evolutions run by the evolution engine.

``real_evolutions`` runs the engine (its five local agents) on a few real projects (the
sample project with each focus, and three packages of this repository) on a server of its
own, and returns each evolution's writes as the stream holds them: (kind, JSON body),
in order. Benchmarks replay these writes under other ids to hold many real contexts.
``python -m bench.real OUT`` writes them to a file (msgpack), for probes in other processes.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec

from actors.client.history import read_messages
from actors.core.fold import Limits, StoredWrite, StoreState
from actors.core.held import HeldContext, context_reply
from bench.common import bench_config, server
from contracts import DEFAULT_MAX_WRITE, WriteSubject, write_filter, write_subject

__all__ = ["Evolution", "build_contexts", "load", "real_evolutions", "save"]

ROOT = Path(__file__).resolve().parent.parent
TARGETS: tuple[tuple[Path, tuple[str, ...]], ...] = (
    (ROOT / "examples" / "sample_project", ("documentation",)),
    (ROOT / "examples" / "sample_project", ("complexity",)),
    (ROOT / "examples" / "sample_project", ("documentation", "complexity")),
    (ROOT / "broker", ("documentation",)),
    (ROOT / "bench", ("complexity",)),
    (ROOT / "contracts", ("documentation",)),
)

Evolution = list[tuple[str, bytes]]  # (kind, body) of each write, in stream order


async def real_evolutions(
    tmp: Path, targets: Sequence[tuple[Path, tuple[str, ...]]] = TARGETS
) -> list[Evolution]:
    from actors import SharedContextStore, StoreActor
    from actors.evolution.engine import EvolutionConfig, EvolutionEngine
    from broker import connect

    out: list[Evolution] = []
    async with server(tmp, "real") as srv:
        config = bench_config(srv.url)
        nc = await connect(srv.url, name="bench-real-actor", long_running=True)
        async with StoreActor(nc, config), SharedContextStore(config=config) as store:
            engine = EvolutionEngine(store)
            try:
                for i, (target, focus) in enumerate(targets):
                    result = await engine.run_evolution(
                        EvolutionConfig(target, focus_areas=focus, workdir=tmp / f"work-{i}")
                    )
                    msgs = await read_messages(
                        nc, "CTXSTORE_WRITES", write_filter(config.tenant, result.evolution_id)
                    )
                    out.append([(WriteSubject.parse(m.subject).kind, m.data) for m in msgs])
            finally:
                await engine.aclose()
        await nc.close()
    return out


def save(evolutions: list[Evolution], path: Path) -> None:
    path.write_bytes(msgspec.msgpack.encode(evolutions))


def load(path: Path) -> list[Evolution]:
    return msgspec.msgpack.decode(path.read_bytes(), type=list[list[tuple[str, bytes]]])


def build_contexts(
    evolutions: Sequence[Evolution], count: int, *, state: StoreState | None = None
) -> StoreState:
    """A state holding ``count`` contexts, each the fold of one real evolution's writes
    (taken in turn) under an id of its own, as the actor builds it."""
    from datetime import UTC, datetime

    state = state or StoreState(Limits(DEFAULT_MAX_WRITE, None))
    now = datetime.now(UTC)
    seq = state.applied_seq
    for c in range(count):
        eid = f"evo-real-{c:08d}"
        for kind, body in evolutions[c % len(evolutions)]:
            seq += 1
            state.apply(StoredWrite(seq, now, write_subject("default", eid, kind), body))
    return state


def gzipped_json(ctx: HeldContext) -> int:
    """The size of the context's JSON, gzipped: the spec's "compressed JSON"."""
    return len(gzip.compress(context_reply(ctx)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="ctxbench-real-") as tmp:
        found = uvloop.run(real_evolutions(Path(tmp)))
    save(found, args.out)
    for evolution in found:
        state = build_contexts([evolution], 1)
        held = next(iter(state.contexts.values()))
        size = len(context_reply(held))
        print(f"{len(evolution)} writes, {size:,} B of JSON, {gzipped_json(held):,} B gzipped")
