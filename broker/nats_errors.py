"""nats-py's exceptions, mapped into the one hierarchy of ``contracts.errors``.

JetStream refusals are told apart by their numeric error code (``JSErrorCode``, from
nats-server's ``server/errors.json``), never by their text, which servers may reword.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from enum import IntEnum
from typing import Final

import nats.errors
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from contracts.errors import (
    CapacityError,
    ConflictError,
    ContextStoreError,
    PayloadTooLargeError,
    RequestError,
    StoreTimeoutError,
    StoreUnavailableError,
)

__all__ = ["JSErrorCode", "js_code", "nats_errors", "store_error"]


class JSErrorCode(IntEnum):
    """The JetStream API error codes this package acts on (``err_code`` of an ``APIError``)."""

    CLUSTER_NOT_AVAILABLE = 10008  # JetStream system temporarily unavailable
    INSUFFICIENT_RESOURCES = 10023
    MEMORY_RESOURCES_EXCEEDED = 10028
    NOT_ENABLED_FOR_ACCOUNT = 10039
    STORAGE_RESOURCES_EXCEEDED = 10047
    MESSAGE_SIZE_EXCEEDS_MAXIMUM = 10054  # over the stream's max_msg_size
    STREAM_NOT_FOUND = 10059
    WRONG_LAST_MSG_ID = 10070  # Nats-Expected-Last-Msg-Id refused
    WRONG_LAST_SEQUENCE = 10071  # Nats-Expected-Last-(Subject-)Sequence refused
    NOT_ENABLED = 10076
    STREAM_STORE_FAILED = 10077
    HEADER_SIZE_EXCEEDS_MAXIMUM = 10097


def js_code(exc: APIError) -> JSErrorCode | None:
    """The error's JetStream code, if it is one this package knows."""
    try:
        return None if exc.err_code is None else JSErrorCode(exc.err_code)
    except ValueError:
        return None


_UNAVAILABLE: Final = frozenset(
    {
        JSErrorCode.CLUSTER_NOT_AVAILABLE,
        JSErrorCode.NOT_ENABLED,
        JSErrorCode.NOT_ENABLED_FOR_ACCOUNT,
        JSErrorCode.STREAM_NOT_FOUND,
    }
)
_FULL: Final = frozenset(
    {
        JSErrorCode.INSUFFICIENT_RESOURCES,
        JSErrorCode.MEMORY_RESOURCES_EXCEEDED,
        JSErrorCode.STORAGE_RESOURCES_EXCEEDED,
        JSErrorCode.STREAM_STORE_FAILED,
    }
)
# The code says what went wrong; the number in the server's words is only read as data.
_LAST_SEQ: Final = re.compile(r"(\d+)\s*$")


def _last_sequence(exc: APIError) -> int | None:
    found = _LAST_SEQ.search(exc.description or "")
    return int(found.group(1)) if found else None


def store_error(exc: BaseException, doing: str) -> ContextStoreError | None:
    """Our exception for a failure of nats-py while ``doing`` something (e.g. "reading the
    history of evo-1"), or ``None`` when ``exc`` is not a NATS failure."""
    match exc:
        case ContextStoreError():
            return exc
        case nats.errors.MaxPayloadError():
            return PayloadTooLargeError(f"{doing}: the message is over the server's max_payload")
        case nats.errors.NoRespondersError() | NoStreamResponseError():
            return StoreUnavailableError(f"{doing}: nothing on the server answered")
        case APIError():
            return _api_error(exc, doing)
        case TimeoutError():  # nats.errors.TimeoutError is one too
            return StoreTimeoutError(f"{doing}: no answer in time")
        case nats.errors.Error() | OSError():
            return StoreUnavailableError(f"{doing}: {_describe(exc)}")
    return None


def _api_error(exc: APIError, doing: str) -> ContextStoreError:
    code = js_code(exc)
    said = f"{doing}: JetStream said {exc.description!r} (error {exc.err_code})"
    if code in (JSErrorCode.MESSAGE_SIZE_EXCEEDS_MAXIMUM, JSErrorCode.HEADER_SIZE_EXCEEDS_MAXIMUM):
        return PayloadTooLargeError(said)
    if code is JSErrorCode.WRONG_LAST_SEQUENCE:
        return ConflictError(said, current_version=_last_sequence(exc))
    if code is JSErrorCode.WRONG_LAST_MSG_ID:
        return ConflictError(said)
    if code in _UNAVAILABLE or isinstance(exc, ServiceUnavailableError):
        return StoreUnavailableError(said)
    if code in _FULL:
        return CapacityError(said)
    return RequestError(said)


def _describe(exc: BaseException) -> str:
    match exc:
        case nats.errors.ConnectionClosedError():
            return "the connection to NATS is closed"
        case nats.errors.NoServersError():
            return "no NATS server could be reached"
        case nats.errors.OutboundBufferLimitError():
            return "disconnected from NATS, and too much is waiting to be sent"
    return f"NATS failed: {exc!r}"


@contextlib.contextmanager
def nats_errors(doing: str) -> Iterator[None]:
    """Raise NATS failures inside the block as ``contracts.errors`` exceptions."""
    try:
        yield
    except ContextStoreError:
        raise
    except Exception as exc:
        translated = store_error(exc, doing)
        if translated is None:
            raise
        raise translated from exc
