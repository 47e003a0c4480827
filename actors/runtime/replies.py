"""Replies on the bus, one shape for every responder, and never a reason to stop one.

Errors take the NATS-micro form (headers ``Nats-Service-Error-Code`` and ``Nats-Service-Error``
and an ``ErrorBody``, read back by ``contracts.service_error``). Every reply is bounded by the
connection's max payload: an error message is cut to ``MESSAGE_LIMIT`` characters (errors
quote what the caller sent, and a reply over the server's limit makes the server drop the
responder's connection), and data larger than one message goes as numbered chunks to a
requester that accepts them, or is refused with a ``too_large`` error. Sending a reply never
raises: a requester that left, a closed connection or a missing reply subject is logged, and
the responder goes on serving others.
"""

from __future__ import annotations

import logging
from typing import Final

from nats.micro.request import Request

from contracts import (
    HEADER_CHUNK,
    HEADER_REPLY_BYTES,
    HEADER_SERVICE_ERROR,
    HEADER_SERVICE_ERROR_CODE,
    ErrorBody,
    ErrorCode,
    encode,
)

__all__ = ["HEADROOM", "MESSAGE_LIMIT", "bounded", "fits", "reply", "reply_error"]

log = logging.getLogger("ctxstore.replies")

MESSAGE_LIMIT: Final = 1024
HEADROOM: Final = 4096  # room for the headers of a reply within the max payload


def bounded(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` cut to ``limit`` characters, saying how long it was."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message)} characters)"


async def _send(req: Request, data: bytes, headers: dict[str, str] | None) -> None:
    try:
        await req.respond(data, headers=headers)
    except Exception as exc:  # no reply subject, the requester or the connection is gone
        log.warning("reply to %s not sent: %r", bounded(req.subject, 200), exc)


async def reply_error(
    req: Request,
    code: ErrorCode,
    message: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer ``req`` with an error; ``status`` overrides the code's usual status."""
    message = bounded(message)
    headers = {
        **(headers or {}),
        # A header value is one line.
        HEADER_SERVICE_ERROR: message.replace("\r", " ").replace("\n", " "),
        HEADER_SERVICE_ERROR_CODE: str(status or code.status),
    }
    await _send(req, encode(ErrorBody(code=code, message=message)), headers)


def _room(max_payload: int) -> int:
    return max(max_payload - HEADROOM, 1024)


def fits(size: int, max_payload: int) -> bool:
    """Whether a reply of ``size`` bytes goes as one message under ``max_payload``."""
    return size <= _room(max_payload)


async def reply(
    req: Request,
    data: bytes,
    *,
    max_payload: int,
    accept_chunks: bool = False,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer ``req`` with ``data``: one message if it fits ``max_payload`` (the
    connection's), else chunks (if the requester accepts them) or a ``too_large`` error."""
    room = _room(max_payload)
    if len(data) <= room:
        await _send(req, data, headers)
        return
    if not accept_chunks:
        await reply_error(
            req,
            ErrorCode.TOO_LARGE,
            f"the reply is {len(data)} bytes, over the server's max payload of "
            f"{max_payload} bytes: ask with accept_chunks to receive it in chunks",
            headers={HEADER_REPLY_BYTES: str(len(data))},
        )
        return
    count = -(-len(data) // room)
    for i in range(count):
        chunk_headers = {
            **(headers or {}),
            HEADER_CHUNK: f"{i + 1}/{count}",
            HEADER_REPLY_BYTES: str(len(data)),
        }
        await _send(req, data[i * room : (i + 1) * room], chunk_headers)
