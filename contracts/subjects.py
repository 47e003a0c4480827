"""Every NATS subject of the store, built here and only here.

Layout (token positions are fixed so that permissions and partitioning can key on them)::

    ctxstore.write.<tenant>.<evolution_id>.<kind>    phase writes   (stream CTXSTORE_WRITES)
    ctxstore.write.<tenant>.<evolution_id>.<kind>.<role>   the same, by an authenticated role
    ctxstore.event.<tenant>.<evolution_id>.<kind>    applied writes (stream CTXSTORE_EVENTS)
    ctxstore.error.<tenant>.<evolution_id>.<kind>    rejected writes (stream CTXSTORE_EVENTS)
    ctxstore.query.<tenant>.<operation>              request-reply queries (NATS micro service)
    ctxstore.query.<tenant>.<operation>.p<k>         the same, to partition k's actors

Token 0 is the root, 1 the channel, 2 the tenant, 3 the evolution id (or the query operation).

**Partitions** (``CONTEXT_STORE_PARTITIONS`` = P > 1): writers publish exactly as above; the
write stream's subject transform stores each write with its partition inserted after the id,
``ctxstore.write.<tenant>.<evolution_id>.<partition>.<kind>[.<role>]``, so filters on
``ctxstore.write.<tenant>.<evolution_id>.>`` (guards, history) match both layouts. The
partition is nats-server's ``{{partition(P,1,2)}}`` of the tenant and id tokens:
``partition_of`` computes the same. It goes after the id, not last: JetStream accepts a
transform whose source ends in ``>`` (needed for the optional role token) only if its
destination ends in ``>`` too.
"""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from typing import Final

import msgspec

from contracts.roles import WRITER_ROLES
from contracts.vocabulary import WriteKind

__all__ = [
    "DEFAULT_TENANT",
    "MAX_PARTITIONS",
    "ROOT",
    "UNKNOWN_TOKEN",
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
    "names_one_context",
    "outcome_filter",
    "partition_filter",
    "partition_of",
    "partitions_of_transform",
    "published_subject",
    "query_filter",
    "query_partition",
    "query_subject",
    "query_tenant",
    "role_of",
    "stored_partition",
    "stored_write_filter",
    "write_filter",
    "write_subject",
    "write_transform",
]

ROOT = "ctxstore"
DEFAULT_TENANT = "default"
# Stands in for the tenant, id or kind of a write too broken to name them, in the subject of
# its rejection (every partition shares that subject).
UNKNOWN_TOKEN = "_"
MAX_PARTITIONS = 32
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_QUERY_PARTITION = re.compile(r"^p([0-9]{1,3})$")
_PARTITION_TOKEN = 4  # of a stored write's subject, in a partitioned store
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


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
    if subject.count(".") != 5:  # only a role's write subjects have six tokens (hot path)
        return None
    found = WriteSubject.try_parse(subject)
    return None if found is None else found.role


def event_subject(tenant: str, evolution_id: str, kind: WriteKind | str) -> str:
    return _build(Channel.EVENT, tenant, evolution_id, kind)


def error_subject(tenant: str, evolution_id: str, kind: WriteKind | str) -> str:
    return _build(Channel.ERROR, tenant, evolution_id, kind)


_WRITE: Final = Channel.WRITE.value  # a plain str: an enum member's lookup costs more
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


def query_subject(tenant: str, operation: Query, partition: int | None = None) -> str:
    """Where to ask: the store (any actor answers; the wire contract), or the actors of
    ``partition`` (of a partitioned store: they hold its contexts)."""
    check_token(tenant, "tenant")
    base = f"{ROOT}.{Channel.QUERY}.{tenant}.{operation}"
    return base if partition is None else f"{base}.p{partition}"


def agent_subject(tenant: str, agent: str) -> str:
    """Where an agent takes work requests (``AgentRequest``), for one tenant."""
    check_token(tenant, "tenant")
    return f"{ROOT}.{Channel.AGENT}.{tenant}.{check_token(agent, 'agent')}"


def _filter(channel: Channel | str, tenant: str | None, evolution_id: str | None) -> str:
    t = "*" if tenant is None else check_token(tenant, "tenant")
    if evolution_id is None:
        return f"{ROOT}.{channel}.{t}.>"
    return f"{ROOT}.{channel}.{t}.{check_token(evolution_id, 'evolution_id')}.>"


def kind_filter(tenant: str, evolution_id: str, kind: WriteKind | str, partitions: int = 1) -> str:
    """Every role's subject of one kind of write to one evolution, as stored in a store of
    ``partitions`` partitions."""
    if partitions <= 1:
        return f"{_build(Channel.WRITE, tenant, evolution_id, kind)}.*"
    part = partition_of(tenant, evolution_id, partitions)
    return f"{ROOT}.{Channel.WRITE}.{tenant}.{evolution_id}.{part}.{kind}.*"


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


def query_filter(operation: Query, partition: int | None = None) -> str:
    """The subject the actor serves an operation on, for every tenant: the store's (any actor
    answers), or ``partition``'s (that partition's actors answer)."""
    base = f"{ROOT}.{Channel.QUERY}.*.{operation}"
    return base if partition is None else f"{base}.p{partition}"


# -- partitions --------------------------------------------------------------------------


def partition_of(tenant: str, evolution_id: str, partitions: int) -> int:
    """The partition of a context in a store of ``partitions``: nats-server's
    ``{{partition(P,1,2)}}``, FNV-1a (32 bits) of the tenant and id tokens joined as they are
    (no separator), modulo P."""
    if partitions <= 1:
        return 0
    h = _FNV_OFFSET
    for byte in (tenant + evolution_id).encode():
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h % partitions


def write_transform(partitions: int) -> tuple[str, str]:
    """(source, destination) of the write stream's subject transform for ``partitions`` > 1:
    every write is stored with its partition after the id."""
    w = f"{ROOT}.{Channel.WRITE}"
    return (
        f"{w}.*.*.>",
        f"{w}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{partition({partitions},1,2)}}}}.>",
    )


_TRANSFORM_PARTITIONS = re.compile(r"\{\{\s*[pP]artition\s*\(\s*(\d+)\s*,")


def partitions_of_transform(destination: str | None) -> int:
    """P of a write stream whose subject transform has ``destination`` (1: no transform)."""
    found = _TRANSFORM_PARTITIONS.search(destination or "")
    return int(found.group(1)) if found else 1


def stored_write_filter(partitions: int = 1) -> str:
    """The write stream's subjects: with partitions, only subjects the transform maps (an id
    token and more), so that every stored write has a partition."""
    return write_filter() if partitions <= 1 else f"{ROOT}.{Channel.WRITE}.*.*.>"


def partition_filter(partition: int) -> str:
    """The stored writes of one partition (of a partitioned store)."""
    return f"{ROOT}.{Channel.WRITE}.*.*.{partition}.>"


def published_subject(stored: str, partitioned: bool) -> str:
    """The subject a write was published on, from the one it is stored on: in a partitioned
    store, without the partition token the stream inserted."""
    if not partitioned:
        return stored
    parts = stored.split(".")
    if len(parts) <= _PARTITION_TOKEN + 1:  # not a transformed write subject: keep it as is
        return stored
    del parts[_PARTITION_TOKEN]
    return ".".join(parts)


def stored_partition(stored: str) -> int | None:
    """The partition a partitioned write stream stored a write in, from the subject it is
    stored on (None: not a transformed write subject)."""
    parts = stored.split(".")
    if len(parts) <= _PARTITION_TOKEN + 1 or not parts[_PARTITION_TOKEN].isdecimal():
        return None
    return int(parts[_PARTITION_TOKEN])


def names_one_context(subject: str) -> bool:
    """Whether an event's or a rejection's subject names one context (not the
    ``UNKNOWN_TOKEN`` of a write too broken to name its tenant or id)."""
    return UNKNOWN_TOKEN not in subject.split(".")[2:4]


class WriteSubject(msgspec.Struct, frozen=True, gc=False):
    """A parsed write subject. ``kind`` is kept as the raw token: an unknown kind is a
    rejection reason, not a parse failure, so the sender still hears about it. (A Struct:
    the store parses one per write, and a frozen dataclass is several times slower to make.)"""

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
        if len(parts) not in (5, 6) or parts[0] != ROOT or parts[1] != _WRITE:
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
    if len(parts) not in (4, 5) or parts[0] != ROOT or parts[1] != Channel.QUERY:
        raise SubjectError(f"not a query subject: {_shown(subject)}")
    return check_token(parts[2], "tenant")


def query_partition(subject: str) -> int | None:
    """The partition a query subject names (``...<op>.p<k>``), or None (the store's)."""
    parts = subject.split(".")
    if len(parts) != 5:
        return None
    found = _QUERY_PARTITION.match(parts[4])
    if found is None:
        raise SubjectError(f"not a partition of a query subject: {_shown(subject)}")
    return int(found.group(1))
