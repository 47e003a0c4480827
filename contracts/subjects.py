"""Every NATS subject of the store, built here and only here.

Layout (token positions are fixed so that permissions and partitioning can key on them)::

    ctxstore.write.<tenant>.<evolution_id>.<kind>    phase writes   (stream CTXSTORE_WRITES)
    ctxstore.write.<tenant>.<evolution_id>.<kind>.<role>   the same, by an authenticated role
    ctxstore.event.<tenant>.<evolution_id>.<kind>    applied writes (stream CTXSTORE_EVENTS)
    ctxstore.error.<tenant>.<evolution_id>.<kind>    rejected writes (stream CTXSTORE_EVENTS)
    ctxstore.query.<tenant>.<operation>              request-reply queries (NATS micro service)

Token 0 is the root, 1 the channel, 2 the tenant, 3 the evolution id (or the query operation).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from enum import StrEnum

from contracts.roles import WRITER_ROLES
from contracts.vocabulary import WriteKind

__all__ = [
    "DEFAULT_TENANT",
    "ROOT",
    "Channel",
    "Query",
    "SubjectError",
    "WriteSubject",
    "agent_subject",
    "check_token",
    "error_filter",
    "error_subject",
    "event_filter",
    "event_subject",
    "event_subject_of",
    "kind_filter",
    "outcome_filter",
    "query_filter",
    "query_subject",
    "query_tenant",
    "role_of",
    "write_filter",
    "write_subject",
]

ROOT = "ctxstore"
DEFAULT_TENANT = "default"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SubjectError(ValueError):
    """A tenant, id or subject that cannot be part of the store's subject space."""


class Channel(StrEnum):
    WRITE = "write"
    EVENT = "event"
    ERROR = "error"
    QUERY = "query"
    AGENT = "agent"


class Query(StrEnum):
    """Request-reply operations served by the store actor."""

    GET = "get"
    LIST = "list"
    COMPARE = "compare"
    EXPORT = "export"
    OUTCOME = "outcome"
    HISTORY = "history"
    STATS = "stats"


def check_token(value: str, what: str) -> str:
    """Return ``value`` if it is a valid subject token (letters, digits, ``_``, ``-``; 1-64)."""
    if not isinstance(value, str) or not _TOKEN.match(value):
        shown = _shown(value) if isinstance(value, str) else type(value).__name__
        raise SubjectError(f"{what} {shown} is invalid: use 1-64 letters, digits, '_' or '-'")
    return value


def _build(channel: Channel, tenant: str, evolution_id: str, kind: str) -> str:
    check_token(tenant, "tenant")
    check_token(evolution_id, "evolution_id")
    return f"{ROOT}.{channel}.{tenant}.{evolution_id}.{kind}"


def write_subject(
    tenant: str, evolution_id: str, kind: WriteKind | str, role: str | None = None
) -> str:
    """A raw ``str`` kind must be a valid token; the store rejects kinds it does not know.
    ``role``: the authenticated role publishing it (its permissions allow only subjects
    ending in its name), or None without authentication."""
    if not isinstance(kind, WriteKind):
        check_token(kind, "kind")
    subject = _build(Channel.WRITE, tenant, evolution_id, kind)
    if role is None:
        return subject
    if role not in WRITER_ROLES:
        raise SubjectError(f"role {_shown(role)} does not write: use one of {sorted(WRITER_ROLES)}")
    return f"{subject}.{role}"


def role_of(subject: str) -> str | None:
    """The role token of a write subject published by an authenticated role, else None."""
    found = WriteSubject.try_parse(subject)
    return None if found is None else found.role


def event_subject(tenant: str, evolution_id: str, kind: WriteKind | str) -> str:
    return _build(Channel.EVENT, tenant, evolution_id, kind)


def error_subject(tenant: str, evolution_id: str, kind: WriteKind | str) -> str:
    return _build(Channel.ERROR, tenant, evolution_id, kind)


_WRITE_PREFIX = f"{ROOT}.{Channel.WRITE}."
_EVENT_PREFIX = f"{ROOT}.{Channel.EVENT}."


def event_subject_of(stored_write_subject: str) -> str:
    """The event subject for a write stored on ``stored_write_subject``, a write subject the
    store has already parsed and checked (the hot path: no second validation)."""
    if not stored_write_subject.startswith(_WRITE_PREFIX):
        raise SubjectError(f"not a write subject: {_shown(stored_write_subject)}")
    rest = stored_write_subject[len(_WRITE_PREFIX) :]
    if rest.count(".") == 3:  # a role's write: its event has the plain layout
        rest = rest.rpartition(".")[0]
    return _EVENT_PREFIX + rest


def query_subject(tenant: str, operation: Query) -> str:
    check_token(tenant, "tenant")
    return f"{ROOT}.{Channel.QUERY}.{tenant}.{operation}"


def agent_subject(tenant: str, agent: str) -> str:
    """Where an agent takes work requests (``AgentRequest``), for one tenant."""
    check_token(tenant, "tenant")
    return f"{ROOT}.{Channel.AGENT}.{tenant}.{check_token(agent, 'agent')}"


def _filter(channel: Channel | str, tenant: str | None, evolution_id: str | None) -> str:
    t = "*" if tenant is None else check_token(tenant, "tenant")
    if evolution_id is None:
        return f"{ROOT}.{channel}.{t}.>"
    return f"{ROOT}.{channel}.{t}.{check_token(evolution_id, 'evolution_id')}.>"


def kind_filter(tenant: str, evolution_id: str, kind: WriteKind | str) -> str:
    """Every role's subject of one kind of write to one evolution."""
    return f"{_build(Channel.WRITE, tenant, evolution_id, kind)}.*"


def write_filter(tenant: str | None = None, evolution_id: str | None = None) -> str:
    """Wildcard over writes: all tenants, one tenant, or one evolution of one tenant."""
    return _filter(Channel.WRITE, tenant, evolution_id)


def event_filter(tenant: str | None = None, evolution_id: str | None = None) -> str:
    return _filter(Channel.EVENT, tenant, evolution_id)


def error_filter(tenant: str | None = None, evolution_id: str | None = None) -> str:
    """Wildcard over rejected-write events."""
    return _filter(Channel.ERROR, tenant, evolution_id)


def outcome_filter(tenant: str | None = None, evolution_id: str | None = None) -> str:
    """Wildcard over both outcomes of writes: applied (``event``) and rejected (``error``).
    Its channel token is a wildcard, so it means exactly those two only on the events
    stream (``CTXSTORE_EVENTS``), whose subjects are those two channels."""
    return _filter("*", tenant, evolution_id)


def query_filter(operation: Query) -> str:
    """The subject the actor serves an operation on, for every tenant."""
    return f"{ROOT}.{Channel.QUERY}.*.{operation}"


@dataclass(frozen=True, slots=True)
class WriteSubject:
    """A parsed write subject. ``kind`` is kept as the raw token: an unknown kind is a
    rejection reason, not a parse failure, so the sender still hears about it."""

    tenant: str
    evolution_id: str
    kind: str
    role: str | None = None  # the authenticated writer, on a role's subject

    @classmethod
    def parse(cls, subject: str) -> WriteSubject:
        """The tokens of a write subject; ``SubjectError`` if it has not the write layout.
        The tokens are not checked (see ``check``): an invalid one is a reason to reject."""
        found = cls.try_parse(subject)
        if found is None:
            raise SubjectError(f"not a write subject: {_shown(subject)}")
        return found

    @classmethod
    def try_parse(cls, subject: str) -> WriteSubject | None:
        parts = subject.split(".")
        if len(parts) not in (5, 6) or parts[0] != ROOT or parts[1] != Channel.WRITE:
            return None
        role = None
        if len(parts) == 6:
            if parts[5] not in WRITER_ROLES:
                return None
            role = sys.intern(parts[5])
        # Interned: a tenant or kind is held once, not once per context in memory.
        return cls(
            tenant=sys.intern(parts[2]),
            evolution_id=parts[3],
            kind=sys.intern(parts[4]),
            role=role,
        )

    def check(self) -> WriteSubject:
        """Self, if tenant and evolution id are valid tokens; else ``SubjectError``."""
        check_token(self.tenant, "tenant")
        check_token(self.evolution_id, "evolution_id")
        return self


def _shown(value: str, limit: int = 200) -> str:
    """``repr`` of what a caller sent, cut to ``limit`` characters: errors echo input, and
    an echo must never make a reply too large to send."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} characters)"


def query_tenant(subject: str) -> str:
    """The tenant token of a query subject."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != ROOT or parts[1] != Channel.QUERY:
        raise SubjectError(f"not a query subject: {_shown(subject)}")
    return check_token(parts[2], "tenant")
