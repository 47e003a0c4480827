"""The agent actor: takes work requests on its subject, reads and writes only the store.

A request names the evolution (and options such as a working directory); the agent reads what
it needs from the store, writes its phase result to the store, and replies with a short
summary. Its start, finish or failure is recorded in the context (``ctx.agents``) so the
store's history shows when each agent worked.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import msgspec
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from actors.client import SharedContextStore
from actors.runtime.actor import Actor
from actors.runtime.replies import reply, reply_error
from contracts import AgentReply, AgentRequest, ErrorCode, agent_subject, encode

__all__ = ["Agent", "AgentHost"]

log = logging.getLogger("ctxstore.agents")
_REQUEST = msgspec.json.Decoder(AgentRequest)


class Agent(ABC):
    """One role of the pipeline. Subclasses implement ``work``."""

    name: ClassVar[str]

    def __init__(self, store: SharedContextStore) -> None:
        self.store = store

    async def run(self, evolution_id: str, options: Mapping[str, str]) -> AgentReply:
        await self.store.record_activity(self.name, "started", evolution_id=evolution_id)
        try:
            summary = await self.work(evolution_id, options)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self.store.record_activity(
                    self.name, "failed", f"{type(exc).__name__}: {exc}", evolution_id=evolution_id
                )
            raise
        await self.store.record_activity(self.name, "finished", evolution_id=evolution_id)
        return AgentReply(
            agent=self.name, evolution_id=evolution_id, seq=self.store.last_seq, summary=summary
        )

    @abstractmethod
    async def work(self, evolution_id: str, options: Mapping[str, str]) -> dict[str, Any]:
        """Do this agent's phase for the evolution; returns a short summary."""


class AgentHost(Actor):
    """Serves agents as a NATS micro service (``ctxstore-agents``) until closed."""

    actor_name = "ctxstore-agents"

    def __init__(self, nc: Client, agents: Sequence[Agent], *, tenant: str) -> None:
        super().__init__()
        self._nc = nc
        self._agents = list(agents)
        self._tenant = tenant
        self._service: Service | None = None

    async def on_start(self) -> None:
        self._service = await add_service(
            self._nc, name="ctxstore-agents", version="0.1.0", description="evolution agents"
        )
        for agent in self._agents:
            await self._service.add_endpoint(
                name=agent.name,
                subject=agent_subject(self._tenant, agent.name),
                handler=self._handler(agent),
            )
        await self._nc.flush()

    async def on_stop(self) -> None:
        # Work in flight was cancelled with the actor's tasks: its requester has a timeout.
        if self._service is not None:
            with contextlib.suppress(Exception):
                await self._service.stop()

    def _handler(self, agent: Agent) -> Callable[[Request], Awaitable[None]]:
        async def serve(req: Request, body: AgentRequest) -> None:
            # Whatever happens here is this request's error reply, never the host's end.
            try:
                answer = encode(await agent.run(body.evolution_id, body.options))
            except Exception as exc:
                log.exception("agent %s failed on %s", agent.name, body.evolution_id)
                message = f"{agent.name} failed: {type(exc).__name__}: {exc}"
                await reply_error(req, ErrorCode.INTERNAL, message)
                return
            await reply(req, answer, max_payload=self._nc.max_payload)

        async def handle(req: Request) -> None:
            try:
                body = _REQUEST.decode(req.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                message = f"invalid agent request: {exc}"
                await reply_error(req, ErrorCode.INVALID, message)
                return
            if not self.running:
                message = f"agent {agent.name} is stopping"
                await reply_error(req, ErrorCode.INTERNAL, message, status=503)
                return
            # One evolution's work must not hold up the next request to the same agent.
            self.spawn(serve(req, body), name=f"{agent.name}:{body.evolution_id}")

        return handle
