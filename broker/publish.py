"""Publishing one message to JetStream and waiting for its acknowledgement, with retries.

Every writer of the store (the client's writes, a bundle import, the actor's TTL deletes)
publishes through ``publish``: a lost acknowledgement is retried with the same headers, so
with a ``Nats-Msg-Id`` the server stores the message once and answers the retry with the
original sequence (``duplicate=True``) inside the stream's duplicate window; a closed
connection is replaced between attempts when the caller says how; every failure is raised
as a ``contracts.errors`` exception, JetStream refusals sorted by their error code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from broker.nats_errors import JSErrorCode, store_error
from broker.streams import WRITES_STREAM
from contracts import HEADER_MSG_ID
from contracts.errors import (
    ConflictError,
    PayloadTooLargeError,
    RequestError,
    StoreTimeoutError,
    StoreUnavailableError,
)

__all__ = ["JetStreamSource", "message_size", "publish"]

JetStreamSource = Callable[[], Awaitable[JetStreamContext]]
"""Gives the JetStream context to publish with; called before each attempt, so a client
whose connection was closed can hand out one on a new connection."""

_HEADER_LINE: Final = len(b"NATS/1.0\r\n")
_ATTEMPTS: Final = 3
_FIRST_BACKOFF_S: Final = 0.05
_MAX_BACKOFF_S: Final = 0.5
_CONNECTION_LOST: Final = (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError)


def message_size(data: bytes, headers: Mapping[str, str]) -> int:
    """The size the server checks against its ``max_payload``: the body and the header block
    (nats-py checks the body alone; a message over the limit makes the server close the
    connection, and nats-py then closes it for good)."""
    block = sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())
    return len(data) + _HEADER_LINE + block + 2


async def publish(
    jetstream: JetStreamSource,
    subject: str,
    data: bytes,
    headers: Mapping[str, str],
    *,
    attempts: int = _ATTEMPTS,
    stream: str = WRITES_STREAM,
    max_payload: int | None = None,
    what: str | None = None,
    failover: float = 0.0,
) -> PubAck:
    """Publish ``data`` on ``subject`` and return JetStream's acknowledgement.

    ``failover``: for this many seconds, a stream that has no leader (it answers "no
    responders" or "temporarily unavailable" while a cluster elects a new one, a few
    seconds after a server dies) is asked again, with the same ``Nats-Msg-Id``, rather than
    failing the write: a client of a cluster rides out the failover.

    Raises ``StoreTimeoutError`` when no attempt was acknowledged (the message may still
    have been stored: retry with the same ``Nats-Msg-Id``), ``ConflictError`` when an
    expected-last-sequence header was refused (``current_version`` is the sequence the
    server named) by another message than this one (same ``Nats-Msg-Id``: that is answered
    as a duplicate, as the server answers an unguarded retry), ``PayloadTooLargeError``
    over ``max_payload`` or the stream's limit, ``StoreUnavailableError`` when no stream or
    no server takes it, and another ``RequestError`` for any other refusal.
    """
    what = what or subject
    if attempts > 1 and HEADER_MSG_ID not in headers:
        raise ValueError("a publish retried without a Nats-Msg-Id could be stored twice")
    if max_payload is not None and (size := message_size(data, headers)) > max_payload:
        raise PayloadTooLargeError(
            f"{what}: {size} bytes with its headers, over the server's limit of {max_payload} bytes"
        )
    unanswered = 0  # attempts sent whose acknowledgement never came: maybe stored
    deadline = time.monotonic() + failover
    backoff = _FIRST_BACKOFF_S
    attempt = 0
    while attempt < attempts:
        attempt += 1
        try:
            js = await jetstream()
        except StoreUnavailableError as exc:
            if unanswered:  # a new connection could not be had, but the message may be in
                raise _timed_out(what, unanswered) from exc
            raise
        try:
            # A copy each time: nats-py may add to the mapping it is given.
            ack: PubAck = await js.publish(subject, data, headers=dict(headers))
            return ack
        except Exception as exc:
            error = store_error(exc, f"publishing {what}")
            if error is None:
                raise
            if _leaderless(exc) and time.monotonic() + backoff < deadline:
                # Not an attempt used up: nothing was stored (nobody took the message).
                attempt -= 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            # Worth another attempt: a lost acknowledgement, or a connection that is gone
            # (the source may hand out a new one); not a refusal, which would come again.
            if isinstance(error, StoreTimeoutError):
                unanswered += 1
            lost = isinstance(error, StoreTimeoutError) or isinstance(exc, _CONNECTION_LOST)
            if lost and attempt < attempts:
                continue
            if isinstance(error, ConflictError):
                # A guarded retry of a message the server stored is refused, not answered as
                # a duplicate: the server checks the expected sequence first. The refusal
                # names the last sequence; if it holds this message, it is the duplicate.
                seq = await _stored_at(js, stream, error.current_version, headers)
                if seq is not None:
                    return PubAck(stream=stream, seq=seq, duplicate=True)
            if unanswered and isinstance(error, StoreTimeoutError | StoreUnavailableError):
                raise _timed_out(what, unanswered) from exc
            raise error from exc
    raise AssertionError("unreachable")


def _leaderless(exc: BaseException) -> bool:
    """The answer of a stream without a leader: nobody took the message."""
    match exc:
        case nats.errors.NoRespondersError() | NoStreamResponseError():
            return True
        case APIError():
            return exc.err_code == JSErrorCode.CLUSTER_NOT_AVAILABLE or exc.code == 503
    return False


def _timed_out(what: str, unanswered: int) -> StoreTimeoutError:
    return StoreTimeoutError(
        f"{what}: no acknowledgement for {unanswered} attempt(s); it may have been stored: "
        "a retry with the same idempotency key (Nats-Msg-Id) is safe"
    )


async def _stored_at(
    js: JetStreamContext, stream: str, seq: int | None, headers: Mapping[str, str]
) -> int | None:
    """``seq`` if the message stored there is this very one (the same ``Nats-Msg-Id``):
    stored by an earlier attempt, or by an earlier call with the same key."""
    msg_id = headers.get(HEADER_MSG_ID)
    if msg_id is None or not seq:
        return None
    try:
        stored = await js.get_msg(stream, seq)
    except Exception as exc:
        error = store_error(exc, f"reading message {seq} of {stream}")
        if error is None:
            raise
        if isinstance(error, RequestError):  # e.g. deleted since: not ours to claim
            return None
        raise error from exc
    return seq if (stored.headers or {}).get(HEADER_MSG_ID) == msg_id else None
