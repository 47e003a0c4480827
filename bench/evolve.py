"""Figure 7: a whole evolution's cost against project size.

Full evolutions (research and analysis, planning, implementation, evaluation; local agents,
no test command) of fresh generated projects of ``SMALL`` and ``4 * SMALL`` files, in the same run;
the larger one's wall time as a ratio of the smaller one's: 4x is linear growth. The store
runs with its default payload limit, so the bounded phase writes are part of what is
measured."""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import ActorHost, Figure, median, server
from bench.parallel import generate_project
from broker import StoreConfig

__all__ = ["run_evolve"]

SMALL = 250


async def run_evolve(tmp: Path, *, quick: bool) -> list[Figure]:
    from actors import SharedContextStore
    from actors.evolution import EvolutionConfig, EvolutionEngine

    rounds = 1 if quick else 3
    sizes = (SMALL, 4 * SMALL)
    times: dict[int, list[float]] = {n: [] for n in sizes}
    async with server(tmp, "evolve") as srv, ActorHost(srv.url):
        config = StoreConfig.build(None, nats_url=srv.url)
        store = SharedContextStore(config=config, name="bench-evolve")
        async with store, EvolutionEngine(store) as engine:
            for r in range(rounds + 1):  # the first round warms up
                for n in sizes if r % 2 else tuple(reversed(sizes)):
                    # A fresh project each time: a second evolution of the same one would
                    # learn from the first and do less.
                    project = generate_project(tmp / f"p{n}-{r}", n, salt=1000 * r)
                    started = time.perf_counter()
                    result = await engine.run_evolution(
                        EvolutionConfig(
                            project,
                            ("documentation", "complexity"),
                            workdir=tmp / f"work-{n}-{r}",
                            verify="none",
                            agent_timeout=600,
                        )
                    )
                    if result.error:
                        raise RuntimeError(f"evolution of {n} files failed: {result.error}")
                    if r:
                        times[n].append(time.perf_counter() - started)
    small, large = median(times[SMALL]), median(times[4 * SMALL])
    return [
        Figure(
            f"evolve wall time, {4 * SMALL} generated files",
            large,
            "s",
            small,
            f"{SMALL} generated files",
            "<= 4.4x (about linear)",
            large / small <= 4.4,
            {"small_s": times[SMALL], "large_s": times[4 * SMALL]},
        )
    ]
