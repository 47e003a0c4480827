"""Figure 6: research + analysis run in parallel against one after the other.

Uses the evolution pipeline (``actors.engine``) on ``examples/sample_project``: the engine's
local agents (one process, the default), asked through the bus exactly as
``run_evolution`` asks them, once with both requests in flight together and once in turn.
Rounds alternate; medians."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path

from bench.common import ActorHost, Figure, bench_config, median, server

__all__ = ["run_parallel"]

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample_project"


async def run_parallel(tmp: Path, *, quick: bool) -> list[Figure]:
    if importlib.util.find_spec("actors.engine") is None or not SAMPLE.is_dir():
        return [
            Figure(
                "research + analysis, parallel / sequential",
                float("nan"),
                "s",
                target="<= 0.55x",
                extra={"note": "needs the evolution pipeline (issue 4), not yet landed"},
            )
        ]
    from actors import SharedContextStore
    from actors.agents.roles import OPTION_APPLY, OPTION_WORKDIR
    from actors.engine import CodeAnalysisAgent, EvolutionEngine, ResearchAgent

    rounds = 3 if quick else 7
    par: list[float] = []
    seq: list[float] = []
    each: dict[str, list[float]] = {"research": [], "analysis": []}
    async with server(tmp, "parallel") as srv, ActorHost(srv.url):
        store = SharedContextStore(config=bench_config(srv.url), name="bench-engine")
        async with store, EvolutionEngine(store) as engine:
            await engine._connect()
            agents = (ResearchAgent.name, CodeAnalysisAgent.name)
            for r in range(rounds + 1):  # the first round warms up
                for mode in ("par", "seq") if r % 2 else ("seq", "par"):
                    eid = await store.create_context(str(SAMPLE), ["documentation", "complexity"])
                    options = {OPTION_WORKDIR: str(tmp / eid), OPTION_APPLY: "false"}
                    started = time.perf_counter()
                    if mode == "par":
                        await asyncio.gather(*(engine._ask(a, eid, options, 120) for a in agents))
                    else:
                        for a, key in zip(agents, ("research", "analysis"), strict=True):
                            t = time.perf_counter()
                            await engine._ask(a, eid, options, 120)
                            if r:
                                each[key].append(time.perf_counter() - t)
                    if r:
                        (par if mode == "par" else seq).append(time.perf_counter() - started)
    p, s = median(par), median(seq)
    return [
        Figure(
            "research + analysis wall time, parallel",
            p,
            "s",
            s,
            "one after the other",
            "<= 0.55x",
            p / s <= 0.55,
            {
                "parallel_s": par,
                "sequential_s": seq,
                "research_s": median(each["research"]),
                "analysis_s": median(each["analysis"]),
                "agents": "in one process (the engine's default local agents)",
            },
        )
    ]
