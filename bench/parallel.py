"""Figure 6: research + analysis run in parallel against one after the other.

Uses the evolution pipeline (``actors.evolution.engine``) on ``examples/sample_project``, asking the
agents through the bus exactly as ``run_evolution`` does, once with both requests in flight
together and once in turn; rounds alternate, medians. Twice: with each agent in a process of
its own (``ctxstore agent NAME``, as deployed: the target's figure), and with the engine's
default local agents, which share one process and so one core."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench.common import ActorHost, Figure, bench_config, median, server

__all__ = ["run_parallel"]

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample_project"


async def run_parallel(tmp: Path, *, quick: bool) -> list[Figure]:
    if importlib.util.find_spec("actors.evolution.engine") is None or not SAMPLE.is_dir():
        return [
            Figure(
                "research + analysis, parallel / sequential",
                float("nan"),
                "s",
                target="<= 1.11x (>= 0.9 of perfect overlap)",
                extra={"note": "needs the evolution pipeline (issue 4), not yet landed"},
            )
        ]
    rounds = 3 if quick else 7
    figures = []
    generated = generate_project(tmp / "generated", GENERATED_FILES)
    async with server(tmp, "parallel") as srv, ActorHost(srv.url):
        for target in (SAMPLE, generated):
            for remote in (True, False):
                if remote:
                    async with _agent_processes(srv.url, ("research", "analysis")):
                        figure = await _measure(srv.url, tmp, rounds, remote=True, target=target)
                else:
                    figure = await _measure(srv.url, tmp, rounds, remote=False, target=target)
                figures.append(figure)
    return figures


# Big enough that the analysis, not the round trips, is what is measured.
GENERATED_FILES = 600


def generate_project(root: Path, files: int, salt: int = 0) -> Path:
    """A project of ``files`` modules, each with a function ruff can simplify and one
    without a docstring (the same shape as the test suite's large project). Another ``salt``
    gives other content, so an evolution has nothing to learn from one of another salt."""
    for n in range(files):
        folder = root / f"pkg{n // 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{n % 40:02d}.py").write_text(
            f"def check_{n}(a, b):\n    if a:\n        if b:\n            return {n + salt}\n"
            f"    return 0\n\n\ndef plain_{n}(x):\n    return x + {n}\n"
        )
    return root


@contextlib.asynccontextmanager
async def _agent_processes(url: str, names: tuple[str, ...]) -> AsyncIterator[None]:
    """``ctxstore agent NAME`` for each name, each in a process of its own, as deployed."""
    procs = []
    try:
        for name in names:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "actors.cli",
                "agent",
                name,
                stdout=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, "NATS_URL": url},
            )
            procs.append(proc)
            assert proc.stdout is not None
            async with asyncio.timeout(60):
                line = await proc.stdout.readline()
            if b"serving" not in line:
                raise RuntimeError(f"agent {name} did not start: {line!r}")
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _measure(url: str, tmp: Path, rounds: int, *, remote: bool, target: Path) -> Figure:
    from actors import SharedContextStore
    from actors.evolution.agents.roles import (
        OPTION_APPLY,
        OPTION_WORKDIR,
        CodeAnalysisAgent,
        ResearchAgent,
    )
    from actors.evolution.engine import EvolutionEngine

    par: list[float] = []
    seq: list[float] = []
    each: dict[str, list[float]] = {"research": [], "analysis": []}
    store = SharedContextStore(config=bench_config(url), name="bench-engine")
    async with store, EvolutionEngine(store, local_agents=not remote) as engine:
        await engine._connect()
        agents = (ResearchAgent.name, CodeAnalysisAgent.name)
        for r in range(rounds + 1):  # the first round warms up
            for mode in ("par", "seq") if r % 2 else ("seq", "par"):
                project = target
                if target != SAMPLE:
                    # Fresh content each time: the analysis remembers files it has seen.
                    salt = len(par) + len(seq) + 1 + (1000 if remote else 0) + 100 * r
                    project = generate_project(
                        tmp / f"gen-{remote}-{r}-{mode}", GENERATED_FILES, salt
                    )
                eid = await store.create_context(str(project), ["documentation", "complexity"])
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
    where = (
        "agents in their own processes (ctxstore agent NAME)"
        if remote
        else "agents in the engine's process (its default local agents)"
    )
    bound = max(median(each["research"]), median(each["analysis"]))
    # Issue 10's decision: parallel research is judged against the perfect-overlap bound (the
    # longer of the two alone), on every project; no longer against one after the other.
    return Figure(
        f"research + analysis wall time, parallel, {where}, "
        + ("sample project" if target == SAMPLE else f"{GENERATED_FILES} generated files"),
        p,
        "s",
        bound,
        "perfect overlap (the longer of the two alone)",
        "<= 1.11x (>= 0.9 of perfect overlap)",
        bound / p >= 0.9,
        {
            "one_after_the_other_s": s,
            "of_one_after_the_other": p / s,
            "parallel_s": par,
            "sequential_s": seq,
            "research_s": median(each["research"]),
            "analysis_s": median(each["analysis"]),
            # A perfect overlap still takes as long as the longer of the two.
            "perfect_overlap_ratio": max(median(each["research"]), median(each["analysis"]))
            / (median(each["research"]) + median(each["analysis"])),
            # How close the parallel run comes to that bound (1.0 = a perfect overlap).
            "of_perfect_overlap": max(median(each["research"]), median(each["analysis"])) / p,
            "agents": where,
        },
    )
