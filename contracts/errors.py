"""Errors: the codes on the wire, and the one exception hierarchy every failure maps into.

On the wire, a failed query is answered the NATS-micro way: headers ``Nats-Service-Error-Code``
(the numeric ``status``) and ``Nats-Service-Error`` (the message), and an ``ErrorBody`` JSON
body. A rejected write is reported as a ``WriteRejected`` event and in the outcome of its
sequence. Both carry an ``ErrorCode``.

In Python, every failure of this package (client, store actor, broker, evolution, CLI)
raises one of these; no exception of nats-py or of a validation library reaches a caller::

    ContextStoreError                  every error raised by this package
    ├── ConfigError                    a setting that cannot be used (names the setting)
    ├── StoreClosedError               the client was closed; make a new one
    ├── StoreUnavailableError          no NATS server, no JetStream, or no store actor answering
    │   └── BrokerError                the embedded nats-server could not be started or reached
    ├── StoreTimeoutError              the server or the actor did not answer in time
    ├── BundleError                    a bundle file that cannot be read or imported
    ├── AgentError                     an evolution agent failed, is missing or did not answer
    └── RequestError                   the store answered, and said no (``.code``)
        ├── InvalidWriteError          a write or request failed validation (names the field)
        │   └── PayloadTooLargeError   over a size limit
        ├── ContextNotFoundError       unknown evolution id (or no context at all)
        ├── ConflictError              the id exists, or the context moved past the expected version
        └── CapacityError              the store is full and nothing can be pruned

``error_for(code, message)`` is the exception for a code received from the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

import msgspec

__all__ = [
    "HEADER_SERVICE_ERROR",
    "HEADER_SERVICE_ERROR_CODE",
    "AgentError",
    "BrokerError",
    "BundleError",
    "CapacityError",
    "ConfigError",
    "ConflictError",
    "ContextNotFoundError",
    "ContextStoreError",
    "ErrorBody",
    "ErrorCode",
    "InvalidWriteError",
    "PayloadTooLargeError",
    "RequestError",
    "StoreClosedError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "error_for",
    "service_error",
]

HEADER_SERVICE_ERROR: Final = "Nats-Service-Error"
HEADER_SERVICE_ERROR_CODE: Final = "Nats-Service-Error-Code"


class ErrorCode(StrEnum):
    """Why the store said no. In a query's error reply (with the numeric status in the
    ``Nats-Service-Error-Code`` header), in a rejected write's event, outcome and history entry:

    - ``invalid`` (400): malformed JSON, wrong type, out of range, unknown field, unknown kind
    - ``too_large`` (413): over the store's max_payload
    - ``not_found`` (404): no such context (a write to one, or a query for one)
    - ``conflict`` (409): the evolution id exists (create, import without replace)
    - ``capacity`` (507): the store holds max_contexts and none is finished, so none can go
    - ``timeout`` (504): the store had not applied ``min_seq`` in time (queries only)
    - ``internal`` (500): a failure of the store itself"""

    INVALID = "invalid"  # malformed JSON, wrong type, out of range, unknown field
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # id exists, or expected version moved on
    CAPACITY = "capacity"  # max contexts reached and nothing can be pruned
    TIMEOUT = "timeout"  # the actor did not reach the requested sequence in time
    INTERNAL = "internal"

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS = {
    ErrorCode.INVALID: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.CAPACITY: 507,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.INTERNAL: 500,
}


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The body of every error reply (with headers ``Nats-Service-Error-Code``, the status,
    and ``Nats-Service-Error``, the message)."""

    code: ErrorCode
    message: str


def service_error(headers: Mapping[str, str] | None, data: bytes) -> ErrorBody | None:
    """The error a reply carries (NATS-micro headers), or ``None`` for a successful reply.
    A body that is not an ``ErrorBody`` still gives an error, with the header's message."""
    if not headers or HEADER_SERVICE_ERROR_CODE not in headers:
        return None
    try:
        return msgspec.json.decode(data, type=ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = headers.get(HEADER_SERVICE_ERROR) or f"error {headers[HEADER_SERVICE_ERROR_CODE]}"
        return ErrorBody(code=ErrorCode.INTERNAL, message=message)


# -- the exception hierarchy (drawn in the module docstring) --------------------------------


class ContextStoreError(Exception):
    """Base of every error raised by this package."""


class ConfigError(ContextStoreError, ValueError):
    """A configuration value that cannot be used; the message names the setting."""


class StoreClosedError(ContextStoreError):
    """The client was closed; a closed client is never reopened."""


class StoreUnavailableError(ContextStoreError):
    """No NATS server, no JetStream, or no store actor answering."""


class BrokerError(StoreUnavailableError):
    """The embedded nats-server could not be started or reached."""


class StoreTimeoutError(ContextStoreError, TimeoutError):
    """The server or the store actor did not answer in time. A write that timed out may
    still have been applied: retry it with the same idempotency key."""


class BundleError(ContextStoreError):
    """A bundle file that cannot be read or imported; the message says what is wrong."""


class AgentError(ContextStoreError):
    """An evolution agent failed, is not running, or did not answer in time."""

    def __init__(self, agent: str, message: str) -> None:
        super().__init__(f"{agent}: {message}")
        self.agent = agent


class RequestError(ContextStoreError):
    """The store answered and said no; ``code`` says why."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message


class InvalidWriteError(RequestError):
    code = ErrorCode.INVALID


class PayloadTooLargeError(InvalidWriteError):
    code = ErrorCode.TOO_LARGE


class ContextNotFoundError(RequestError):
    code = ErrorCode.NOT_FOUND


class ConflictError(RequestError):
    code = ErrorCode.CONFLICT

    def __init__(self, message: str, *, current_version: int | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version


class CapacityError(RequestError):
    code = ErrorCode.CAPACITY


_BY_CODE: dict[ErrorCode, type[RequestError]] = {
    ErrorCode.INVALID: InvalidWriteError,
    ErrorCode.TOO_LARGE: PayloadTooLargeError,
    ErrorCode.NOT_FOUND: ContextNotFoundError,
    ErrorCode.CONFLICT: ConflictError,
    ErrorCode.CAPACITY: CapacityError,
}


def error_for(code: ErrorCode | str, message: str) -> ContextStoreError:
    """The exception for an error code received from the store."""
    try:
        code = ErrorCode(code)
    except ValueError:
        return RequestError(f"{code}: {message}")
    if code is ErrorCode.TIMEOUT:
        return StoreTimeoutError(message)
    cls = _BY_CODE.get(code)
    if cls is None:
        return RequestError(message, code=code)
    return cls(message)
