"""``EvolutionEngine``: drives one evolution through its phases, on the bus.

The engine creates the context, moves it from stage to stage, and asks each agent to do its
phase by a request that names only the evolution; agents read and write the store. Research
and analysis run in parallel. An agent that fails, is missing or times out marks the context
failed with the error in its error_log; every wait is bounded, so the engine never hangs.

By default the engine runs the five agents itself, in this process, on their own
connections (``local_agents=True``); with ``local_agents=False`` it relies on agents started
elsewhere (``ctxstore agent NAME``), and the result is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import msgspec
import nats.errors
from nats.aio.client import Client

from actors.client import SharedContextStore, get_context_store
from actors.client.local import default_home
from actors.evolution.agents.base import AgentHost
from actors.evolution.agents.logic import Executor, ResearchSource
from actors.evolution.agents.logic.refactor import MAX_TEST_RUNS
from actors.evolution.agents.roles import (
    OPTION_APPLY,
    OPTION_VERIFY,
    OPTION_VERIFY_TIMEOUT,
    OPTION_WORKDIR,
    CodeAnalysisAgent,
    EvaluatorAgent,
    PlannerAgent,
    RefactorAgent,
    ResearchAgent,
)
from broker import connect
from broker.lifecycle import AsyncResource
from contracts import (
    AgentReply,
    AgentRequest,
    EvolutionContext,
    Stage,
    Status,
    agent_subject,
    encode,
)
from contracts.errors import AgentError, service_error

__all__ = ["EvolutionConfig", "EvolutionEngine", "EvolutionResult", "Progress"]

VERIFY_RUNS_ALLOWED = MAX_TEST_RUNS

_REPLY = msgspec.json.Decoder(AgentReply)


@dataclass(frozen=True)
class EvolutionConfig:
    """What to evolve and how. ``apply=True`` writes the verified result over the target's
    files; otherwise only the working copy (``workdir``) changes.

    ``verify``: the command that runs the project's tests on the working copy (a shell
    command), ``None`` for the project's own test command when one is found (pytest), or
    ``"none"`` for no verification. ``verify_timeout`` bounds each run; the implementation
    phase may run the tests several times (bisecting edits that break them), so its patience
    is ``agent_timeout`` plus ``VERIFY_RUNS_ALLOWED`` runs."""

    target_path: str | os.PathLike[str]
    focus_areas: Sequence[str] = ("documentation",)
    apply: bool = False
    workdir: Path | None = None
    agent_timeout: float = 120.0
    evolution_id: str | None = None
    verify: str | None = None
    verify_timeout: float = 600.0


@dataclass(frozen=True)
class Progress:
    """One step of an evolution, for progress displays."""

    evolution_id: str
    stage: Stage
    state: str  # "started" | "finished" | "failed"
    detail: str = ""
    elapsed: float = 0.0


@dataclass
class EvolutionResult:
    evolution_id: str
    status: Status
    workdir: str
    context: EvolutionContext
    comparison: dict[str, Any]
    durations: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def success_rate(self) -> float:
        return float(self.context.evaluation_results.get("success_rate", 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "evolution_id": self.evolution_id,
            "status": self.status.value,
            "workdir": self.workdir,
            "error": self.error,
            "durations": self.durations,
            "success_rate": self.success_rate,
            "comparison": self.comparison,
        }


class EvolutionEngine(AsyncResource):
    """``results = await EvolutionEngine().run_evolution(EvolutionConfig(...))``"""

    def __init__(
        self,
        store: SharedContextStore | None = None,
        *,
        local_agents: bool = True,
        research_source: ResearchSource | None = None,
        executors: Sequence[Executor] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self._store = store
        self._local_agents = local_agents
        self._research_source = research_source
        self._executors = executors
        self._on_progress = on_progress
        self._nc: Client | None = None
        self._host: AgentHost | None = None
        self._agent_stores: list[SharedContextStore] = []
        self._host_nc: Client | None = None
        self._closed = False

    @property
    def store(self) -> SharedContextStore:
        if self._store is None:
            self._store = get_context_store()
        return self._store

    async def open(self) -> Self:
        """Nothing to open yet: the engine connects on its first evolution."""
        if self._closed:
            raise RuntimeError("this EvolutionEngine was closed")
        return self

    async def aclose(self) -> None:
        """Stop the local agents and close the engine's connections (not the store)."""
        self._closed = True
        host, self._host = self._host, None
        if host is not None:
            await host.aclose()
        for agent_store in self._agent_stores:
            await agent_store.aclose()
        self._agent_stores.clear()
        for conn in (self._host_nc, self._nc):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._host_nc = self._nc = None

    async def _connect(self) -> Client:
        if self._closed:
            raise RuntimeError("this EvolutionEngine was closed")
        if self._nc is None:
            await self.store.open()
            url = self.store.servers
            assert url is not None
            # The server was just reached: ride out a restart of up to a minute, as before.
            self._nc = await connect(
                url, name="ctxstore-engine", reconnect_attempts=120, auth=self.store.config.auth
            )
            if self._local_agents:
                await self._start_local_agents(url)
        return self._nc

    async def _start_local_agents(self, url: str) -> None:
        config = self.store.config.replace(**{"nats_url": url})

        def client(name: str) -> SharedContextStore:
            agent_store = SharedContextStore(config=config, name=f"{name}-agent")
            self._agent_stores.append(agent_store)
            return agent_store

        agents = [
            ResearchAgent(client("research"), self._research_source),
            CodeAnalysisAgent(client("analysis")),
            PlannerAgent(client("planner")),
            RefactorAgent(client("refactor"), self._executors),
            EvaluatorAgent(client("evaluator")),
        ]
        self._host_nc = await connect(
            url, name="ctxstore-local-agents", long_running=True, auth=config.auth
        )
        self._host = AgentHost(self._host_nc, agents, tenant=config.tenant)
        await self._host.start()

    def _progress(self, eid: str, stage: Stage, state: str, detail: str, start: float) -> None:
        if self._on_progress is not None:
            self._on_progress(Progress(eid, stage, state, detail, time.perf_counter() - start))

    async def _ask(
        self, agent: str, evolution_id: str, options: dict[str, str], patience: float
    ) -> AgentReply:
        nc = await self._connect()
        subject = agent_subject(self.store.config.tenant, agent)
        body = encode(AgentRequest(evolution_id=evolution_id, options=options))
        try:
            msg = await nc.request(subject, body, timeout=patience)
        except nats.errors.NoRespondersError:
            raise AgentError(agent, "no agent is running to take the request") from None
        except nats.errors.TimeoutError:
            raise AgentError(agent, f"no answer within {patience}s") from None
        err = service_error(msg.headers, msg.data)
        if err is not None:
            raise AgentError(agent, err.message)
        return _REPLY.decode(msg.data)

    async def run_evolution(self, config: EvolutionConfig) -> EvolutionResult:
        await self._connect()
        store = self.store
        target = _absolute(config.target_path)
        eid = await store.create_context(
            target, list(config.focus_areas), evolution_id=config.evolution_id
        )
        workdir = config.workdir or default_home() / "workspaces" / eid
        options = {
            OPTION_WORKDIR: os.fspath(workdir),
            OPTION_APPLY: str(config.apply).lower(),
            OPTION_VERIFY: config.verify if config.verify is not None else "auto",
            OPTION_VERIFY_TIMEOUT: str(config.verify_timeout),
        }
        durations: dict[str, float] = {}
        steps: list[tuple[Stage, tuple[str, ...]]] = [
            (Stage.RESEARCH, (ResearchAgent.name, CodeAnalysisAgent.name)),
            (Stage.PLANNING, (PlannerAgent.name,)),
            (Stage.IMPLEMENTATION, (RefactorAgent.name,)),
            (Stage.EVALUATION, (EvaluatorAgent.name,)),
        ]
        error: str | None = None
        for stage, agents in steps:
            start = time.perf_counter()
            await store.update_phase(stage, eid)
            self._progress(eid, stage, "started", ", ".join(agents), start)
            patience = config.agent_timeout
            if stage is Stage.IMPLEMENTATION and options[OPTION_VERIFY] != "none":
                patience += VERIFY_RUNS_ALLOWED * config.verify_timeout
            outcomes = await asyncio.gather(
                *(self._ask(a, eid, options, patience) for a in agents),
                return_exceptions=True,
            )
            durations[stage.value] = round(time.perf_counter() - start, 4)
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                error = "; ".join(_describe(f) for f in failures)
                await store.update_phase(stage, eid, status=Status.FAILED, error=error)
                self._progress(eid, stage, "failed", error, start)
                break
            self._progress(eid, stage, "finished", "", start)
        else:
            await store.update_phase(Stage.COMPLETED, eid)
        context = await store.get_context(eid)
        comparison = (await store.get_comparison_data(eid)).as_dict()
        return EvolutionResult(
            evolution_id=eid,
            status=context.status,
            workdir=os.fspath(workdir),
            context=context,
            comparison=comparison,
            durations=durations,
            error=error,
        )


def _absolute(path: str | os.PathLike[str]) -> str:
    # Agents in other processes must find the same project, whatever their working directory.
    return os.path.abspath(path)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AgentError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
