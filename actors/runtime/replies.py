"""Error replies on the bus, one shape for every responder: the NATS-micro headers and an
``ErrorBody`` (read back by ``contracts.service_error``)."""

from __future__ import annotations

from nats.micro.request import Request

from contracts import ErrorBody, ErrorCode, encode

__all__ = ["respond_error"]


async def respond_error(
    req: Request, code: ErrorCode, message: str, *, status: int | None = None
) -> None:
    """Answer ``req`` with an error; ``status`` overrides the code's usual status."""
    await req.respond_error(
        str(status or code.status), message, data=encode(ErrorBody(code=code, message=message))
    )
