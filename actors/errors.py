"""Exceptions raised by the SharedContextStore client.

::

    ContextStoreError                 every error the client raises
    ├── StoreClosedError              the client was closed; make a new one
    ├── StoreUnavailableError         no NATS server, no JetStream, or no store actor answering
    ├── StoreTimeoutError             the server or the actor did not answer in time
    └── RequestError                  the store answered, and said no (``.code``)
        ├── InvalidWriteError         a write or request failed validation (names the field)
        │   └── PayloadTooLargeError  over the configured payload limit
        ├── ContextNotFoundError      unknown evolution id (or no context at all)
        ├── ConflictError             the id exists, or the context moved past the expected version
        └── CapacityError             the store is full and nothing can be pruned

Invalid writes are caught by the client before anything is sent where the contracts allow;
writes the actor rejects raise the same exceptions once their outcome is known.
"""

from __future__ import annotations

from contracts import ErrorCode

__all__ = [
    "CapacityError",
    "ConflictError",
    "ContextNotFoundError",
    "ContextStoreError",
    "InvalidWriteError",
    "PayloadTooLargeError",
    "RequestError",
    "StoreClosedError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "error_for",
]


class ContextStoreError(Exception):
    """Base of every error raised by the store client."""


class StoreClosedError(ContextStoreError):
    pass


class StoreUnavailableError(ContextStoreError):
    pass


class StoreTimeoutError(ContextStoreError, TimeoutError):
    pass


class RequestError(ContextStoreError):
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
