"""Who may write what: the roles of an authenticated deployment (``ctxstore auth init``).

Each role is a NATS user whose permissions follow phase ownership. A role publishes its
writes on subjects that end in its own name (``ctxstore.write.<tenant>.<id>.<kind>.<role>``),
and the server lets it publish on no other: so the last token of a stored write names the
authenticated writer, whatever the client claims in ``Ctxstore-Writer``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from contracts.agents import AgentName
from contracts.vocabulary import Phase, WriteKind

__all__ = ["ROLE_KINDS", "WRITER_ROLES", "Role"]


class Role(StrEnum):
    ACTOR = "actor"  # the store actor: streams, events, snapshots, the lease
    ADMIN = "admin"  # every write (an evolution's engine, imports), every read
    VIEWER = "viewer"  # queries and watching only
    RESEARCH = AgentName.RESEARCH.value
    ANALYSIS = AgentName.ANALYSIS.value
    PLANNER = AgentName.PLANNER.value
    REFACTOR = AgentName.REFACTOR.value
    EVALUATOR = AgentName.EVALUATOR.value


_ALL_KINDS: Final = frozenset(str(k) for k in WriteKind)

ROLE_KINDS: Final[dict[Role, frozenset[str]]] = {
    Role.ACTOR: frozenset({WriteKind.DELETE.value}),  # TTL expiry
    Role.ADMIN: _ALL_KINDS,
    Role.VIEWER: frozenset(),
    Role.RESEARCH: frozenset({Phase.EXTERNAL_RESEARCH.value, WriteKind.AGENT.value}),
    Role.ANALYSIS: frozenset({Phase.ORIGINAL_ANALYSIS.value, WriteKind.AGENT.value}),
    Role.PLANNER: frozenset({Phase.IMPROVEMENT_PLAN.value, WriteKind.AGENT.value}),
    Role.REFACTOR: frozenset({Phase.IMPLEMENTATION_LOG.value, WriteKind.AGENT.value}),
    Role.EVALUATOR: frozenset({Phase.EVALUATION_RESULTS.value, WriteKind.AGENT.value}),
}
"""The write kinds each role may publish (the server enforces it)."""

WRITER_ROLES: Final = frozenset(str(r) for r, kinds in ROLE_KINDS.items() if kinds)
