"""Error codes on the wire.

A failed query is answered the NATS-micro way: headers ``Nats-Service-Error-Code`` (the
numeric ``status``) and ``Nats-Service-Error`` (the message), and an ``ErrorBody`` JSON body.
A rejected write is reported as a ``WriteRejected`` event and in the outcome of its sequence.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ["ErrorBody", "ErrorCode"]


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
