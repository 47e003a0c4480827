"""Work requests to agents. They carry ids and options only: agents read their input from
the store and write their results to it, never to each other."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from contracts.vocabulary import Token

__all__ = ["AGENT_NAMES", "AgentName", "AgentReply", "AgentRequest"]


class AgentName(StrEnum):
    """The five roles of an evolution; each serves ``ctxstore.agent.<tenant>.<name>``."""

    RESEARCH = "research"
    ANALYSIS = "analysis"
    PLANNER = "planner"
    REFACTOR = "refactor"
    EVALUATOR = "evaluator"


AGENT_NAMES: tuple[str, ...] = tuple(a.value for a in AgentName)


class AgentRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    evolution_id: Token
    options: dict[str, str] = {}


class AgentReply(msgspec.Struct, frozen=True, kw_only=True):
    agent: str
    evolution_id: str
    seq: int
    summary: dict[str, Any] = {}
