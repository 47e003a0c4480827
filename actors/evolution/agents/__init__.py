"""The five evolution agents, as actors on the bus, and the host that serves them."""

from actors.evolution.agents.base import Agent, AgentHost
from actors.evolution.agents.roles import (
    AGENT_NAMES,
    CodeAnalysisAgent,
    EvaluatorAgent,
    PlannerAgent,
    RefactorAgent,
    ResearchAgent,
    build_agent,
)

__all__ = [
    "AGENT_NAMES",
    "Agent",
    "AgentHost",
    "CodeAnalysisAgent",
    "EvaluatorAgent",
    "PlannerAgent",
    "RefactorAgent",
    "ResearchAgent",
    "build_agent",
]
