"""TTL: the store actor removes contexts whose last write is older than ``ttl_seconds``.

Time is not in the log, so expiry cannot be decided by the pure state transition. The actor
decides it, and records it in the log as an ordinary ``delete`` write, so the state stays a
function of the log:

1. publish ``DeleteContext`` (writer ``ctxstore-ttl``) guarded by the context's version
   (expected-last-subject-sequence over the context's subjects): if any write reached the
   context since the actor looked, the server refuses the delete and the context lives on
   (it is no longer idle);
2. purge the context's writes before the delete from the stream (a purge by subject filter
   up to the delete's sequence): the delete itself stays, so the actor still consumes it;
3. once the actor has applied the delete, purge it too (up to and including its sequence;
   a later create of the same id is kept).

A replay after step 2 or 3 never sees the context; a replay between 1 and 2 sees it created
and deleted. A crash between the steps leaves at most those writes in the stream; the
state is right either way. The ``delete`` write is announced like any other
(``WriteApplied`` with kind ``delete``).

The age is measured from the context's ``updated_at`` (else ``created_at``): the time of its
last write, for a write re-published by an import the time it was recorded (so an imported
old context expires at the next sweep when it is older than the TTL).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from nats.js import JetStreamContext

from actors.core.held import HeldContext
from broker.publish import publish
from broker.streams import WRITES_STREAM
from contracts import (
    HEADER_EXPECTED_LAST_SUBJECT_SEQ,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    HEADER_MSG_ID,
    HEADER_WRITER,
    ConflictError,
    DeleteContext,
    WriteKind,
    encode,
    write_filter,
    write_subject,
)

__all__ = ["TTL_WRITER", "expire", "sweep_interval"]

log = logging.getLogger("ctxstore.retention")

TTL_WRITER: Final = "ctxstore-ttl"


def sweep_interval(ttl_seconds: float) -> float:
    """How often the actor looks for expired contexts: a quarter of the TTL, 50 ms..60 s."""
    return min(max(ttl_seconds / 4, 0.05), 60.0)


async def expire(
    js: JetStreamContext,
    ctx: HeldContext,
    ttl_seconds: float,
    reach: Callable[[int], Awaitable[None]],
) -> int | None:
    """Delete one expired context from the log and the stream; the delete's sequence, or
    ``None`` when a write moved the context on first (it is not idle any more)."""
    subjects = write_filter(ctx.tenant, ctx.evolution_id)
    body = DeleteContext(reason=f"expired: no write for more than {ttl_seconds:g}s (TTL)")
    headers = {
        HEADER_MSG_ID: f"ttl-{ctx.tenant}-{ctx.evolution_id}-{ctx.version}",
        HEADER_WRITER: TTL_WRITER,
        HEADER_EXPECTED_LAST_SUBJECT_SEQ: str(ctx.version),
        HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: subjects,
    }
    subject = write_subject(ctx.tenant, ctx.evolution_id, WriteKind.DELETE)

    async def jetstream() -> JetStreamContext:
        return js

    try:
        ack = await publish(
            jetstream, subject, encode(body), headers, what=f"the TTL delete of {ctx.evolution_id}"
        )
    except ConflictError:  # the guard refused it: a write came in since the actor looked
        return None
    await js.purge_stream(WRITES_STREAM, subject=subjects, seq=ack.seq)
    await reach(ack.seq)
    await js.purge_stream(WRITES_STREAM, subject=subjects, seq=ack.seq + 1)
    log.info("expired %s/%s at seq %d", ctx.tenant, ctx.evolution_id, ack.seq)
    return ack.seq
