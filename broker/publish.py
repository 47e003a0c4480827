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
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from broker.nats_errors import JSErrorCode, store_error
from broker.streams import WRITES_STREAM
from contracts import HEADER_EXPECTED_LAST_SUBJECT_SEQ, HEADER_MSG_ID
from contracts.errors import (
    ConflictError,
    ContextStoreError,
    PayloadTooLargeError,
    RequestError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from contracts.framing import COMPRESS_OVER, frame_write

__all__ = ["JetStreamSource", "message_size", "publish", "publish_write", "write_id_of"]

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
    tries = _Tries(what, attempts, time.monotonic() + failover)
    while True:
        try:
            js = await jetstream()
        except StoreUnavailableError as exc:
            raise tries.unreachable(exc) from exc
        try:
            # A copy each time: nats-py may add to the mapping it is given.
            ack: PubAck = await js.publish(subject, data, headers=dict(headers))
            return ack
        except Exception as exc:
            error = store_error(exc, f"publishing {what}")
            if error is None:
                raise
            if await tries.again(exc, error):
                continue
            if isinstance(error, ConflictError):
                # A guarded retry of a message the server stored is refused, not answered as
                # a duplicate: the server checks the expected sequence first. The refusal
                # names the last sequence; if it holds this message, it is the duplicate.
                seq = await _stored_at(js, stream, error.current_version, headers)
                if seq is not None:
                    return PubAck(stream=stream, seq=seq, duplicate=True)
            raise tries.final(error) from exc


class _Tries:
    """The attempts of one publish, and what their failures mean."""

    def __init__(self, what: str, attempts: int, deadline: float) -> None:
        self.what = what
        self.left = attempts
        self.deadline = deadline  # a leaderless stream is asked again until then
        self.backoff = _FIRST_BACKOFF_S
        self.unanswered = 0  # attempts sent whose acknowledgement never came: maybe stored

    async def again(self, exc: BaseException, error: ContextStoreError) -> bool:
        """Whether to try once more after ``exc`` (waiting first for a leaderless stream)."""
        if _leaderless(exc) and time.monotonic() + self.backoff < self.deadline:
            # Not an attempt used up: nothing was stored (nobody took the message).
            await asyncio.sleep(self.backoff)
            self.backoff = min(self.backoff * 2, _MAX_BACKOFF_S)
            return True
        self.left -= 1
        # Worth another attempt: a lost acknowledgement, or a connection that is gone (the
        # source may hand out a new one); not a refusal, which would come again.
        if isinstance(error, StoreTimeoutError):
            self.unanswered += 1
        lost = isinstance(error, StoreTimeoutError) or isinstance(exc, _CONNECTION_LOST)
        return lost and self.left > 0

    def unreachable(self, exc: StoreUnavailableError) -> ContextStoreError:
        """No connection to try with: a timeout if an earlier attempt may have landed."""
        return _timed_out(self.what, self.unanswered) if self.unanswered else exc

    def final(self, error: ContextStoreError) -> ContextStoreError:
        if self.unanswered and isinstance(error, StoreTimeoutError | StoreUnavailableError):
            return _timed_out(self.what, self.unanswered)
        return error


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


_CHUNK_HEADERS: Final = 320  # room for a chunk's own headers (id, i/n, size, digest, encoding)


def write_id_of(msg_id: str) -> str:
    """A chunked write's ``Ctxstore-Write-Id``, from its ``Nats-Msg-Id``: a retry with the
    same message id continues the same write."""
    return hashlib.sha256(msg_id.encode()).hexdigest()[:32]


async def publish_write(
    jetstream: JetStreamSource,
    subject: str,
    data: bytes,
    headers: Mapping[str, str],
    *,
    max_payload: int,
    what: str | None = None,
    compress_over: int = COMPRESS_OVER,
    failover: float = 0.0,
) -> PubAck:
    """Publish a write whose JSON body is ``data``: in one message, compressed if large
    (``contracts.framing``), or in chunks when it does not fit in ``max_payload`` (the
    smaller of the server's and the stream's limits). Returns the acknowledgement of its
    last message: its ``seq`` is the write's; ``duplicate`` when every message was.

    ``headers`` must hold a ``Nats-Msg-Id``; each chunk gets ``<it>.<i>``. A guard
    (``Nats-Expected-Last-Subject-Sequence``) applies to the first chunk; each next chunk
    expects the one before it, so nothing else can come between them on what the guard
    covers (the guarded write stays one change). ``failover`` and errors as ``publish``."""
    what = what or subject
    msg_id = headers.get(HEADER_MSG_ID)
    if msg_id is None:
        raise ValueError("a write needs a Nats-Msg-Id")
    room = max_payload - message_size(b"", headers) - _CHUNK_HEADERS
    frames = frame_write(
        data, room=max(room, 1), write_id=write_id_of(msg_id), compress_over=compress_over
    )
    if len(frames) == 1:
        return await publish(
            jetstream,
            subject,
            frames[0].data,
            {**headers, **frames[0].headers},
            max_payload=max_payload,
            what=what,
            failover=failover,
        )
    if room < 1024:
        raise PayloadTooLargeError(
            f"{what}: the server's max_payload of {max_payload} bytes leaves no room for a chunk"
        )
    guarded = HEADER_EXPECTED_LAST_SUBJECT_SEQ in headers
    i, last, duplicate = 0, None, True
    while i < len(frames):
        frame = frames[i]
        chunk_headers = {**headers, **frame.headers, HEADER_MSG_ID: f"{msg_id}.{i + 1}"}
        if guarded and last is not None:
            chunk_headers[HEADER_EXPECTED_LAST_SUBJECT_SEQ] = str(last.seq)
        try:
            ack = await publish(
                jetstream,
                subject,
                frame.data,
                chunk_headers,
                max_payload=max_payload,
                what=f"{what} (chunk {i + 1} of {len(frames)})",
                failover=failover,
            )
        except ConflictError as exc:
            # A retry of a write that got further than this chunk: its later chunks are
            # stored (the guard, checked before duplicates, names the last one).
            stored = await _stored_chunk(jetstream, exc.current_version, msg_id)
            if stored is None or stored < i + 1 or exc.current_version is None:
                raise
            i, last = stored, PubAck(stream=WRITES_STREAM, seq=exc.current_version, duplicate=True)
            continue
        duplicate = duplicate and bool(ack.duplicate)
        last = ack
        i += 1
    assert last is not None
    return PubAck(stream=last.stream, seq=last.seq, duplicate=duplicate)


async def _stored_chunk(jetstream: JetStreamSource, seq: int | None, msg_id: str) -> int | None:
    """Which chunk of the write ``msg_id`` the message at ``seq`` is, if it is one."""
    if not seq:
        return None
    js = await jetstream()
    try:
        stored = await js.get_msg(WRITES_STREAM, seq)
    except Exception as exc:
        error = store_error(exc, f"reading message {seq} of {WRITES_STREAM}")
        if error is None:
            raise
        if isinstance(error, RequestError):
            return None
        raise error from exc
    found = (stored.headers or {}).get(HEADER_MSG_ID, "")
    prefix = f"{msg_id}."
    if not found.startswith(prefix) or not found[len(prefix) :].isdigit():
        return None
    return int(found[len(prefix) :])
