"""Error codes on the wire.

A failed query is answered the NATS-micro way: headers ``Nats-Service-Error-Code`` (the
numeric ``status``) and ``Nats-Service-Error`` (the message), and an ``ErrorBody`` JSON body.
A rejected write is reported as a ``WriteRejected`` event and in the outcome of its sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

import msgspec

__all__ = [
    "HEADER_SERVICE_ERROR",
    "HEADER_SERVICE_ERROR_CODE",
    "ErrorBody",
    "ErrorCode",
    "service_error",
]

HEADER_SERVICE_ERROR: Final = "Nats-Service-Error"
HEADER_SERVICE_ERROR_CODE: Final = "Nats-Service-Error-Code"


class ErrorCode(StrEnum):
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
