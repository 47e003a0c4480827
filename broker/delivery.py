"""JetStream deliveries read straight from the protocol's fields (the raw intake's parsing).

The status of a pull request's end (``NATS/1.0 404 No Messages``...), header values, and the
stream position carried by the ack subject. nats-py builds a ``Msg``, a header dict and a
metadata object per message for the same facts; at tens of thousands of messages a second
that is most of the store actor's CPU (see ``broker.intake``).
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "ACK",
    "HEARTBEAT",
    "NO_RESPONDERS",
    "DeliveryError",
    "ack_fields",
    "consumer_seq",
    "header",
    "js_position",
    "pull_request",
    "pull_subject",
    "status",
]

ACK: Final = b"+ACK"
HEARTBEAT: Final = b"100"  # a status that does not end a pull request
NO_RESPONDERS: Final = b"503"  # no consumer took the request: it does not exist (any more)
_STATUS_AT: Final = len(b"NATS/1.0 ")
_ACK_TOKENS_V1: Final = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
_ACK_TOKENS_V2: Final = 11  # with <domain>.<account hash> after ACK (and a trailing token)


class DeliveryError(ValueError):
    """A message that is not a JetStream delivery (its reply is no ack subject)."""


def pull_subject(stream: str, consumer: str) -> str:
    """Where pull requests for ``consumer`` go."""
    return f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"


def pull_request(batch: int, *, expires: float, max_bytes: int) -> bytes:
    """A pull request: up to ``batch`` messages and ``max_bytes`` bytes within ``expires`` s."""
    return msgspec.json.encode(
        {"batch": batch, "expires": int(expires * 1_000_000_000), "max_bytes": max_bytes}
    )


def status(headers: bytes | None) -> bytes | None:
    """The status code of a server notice (``b"404"``, ``b"408"``, ``b"100"``...), or None
    for a message."""
    if headers is None or headers[_STATUS_AT - 1 : _STATUS_AT] != b" ":
        return None
    return headers[_STATUS_AT : _STATUS_AT + 3]


def header(headers: bytes | None, name: bytes) -> str | None:
    """The value of header ``name`` (exact case; the last one if repeated), or None."""
    if not headers:
        return None
    key = b"\r\n" + name + b":"
    at = headers.rfind(key)
    if at < 0:
        return None
    start = at + len(key)
    end = headers.find(b"\r\n", start)
    value = headers[start:end] if end >= 0 else headers[start:]
    return value.strip().decode("utf-8", "replace")


def js_position(reply: bytes) -> tuple[int, int, int]:
    """(stream sequence, stored time in ns since the epoch, messages pending) from an ack
    subject."""
    tokens = reply.split(b".")
    try:
        if len(tokens) == _ACK_TOKENS_V1 and tokens[1] == b"ACK":
            return int(tokens[5]), int(tokens[7]), int(tokens[8])
        if len(tokens) >= _ACK_TOKENS_V2 and tokens[0] == b"$JS" and tokens[1] == b"ACK":
            return int(tokens[7]), int(tokens[9]), int(tokens[10])
    except ValueError:
        pass
    raise DeliveryError(f"not a JetStream delivery: reply {reply[:120]!r}")


def ack_fields(reply: bytes) -> tuple[int, int, int, int]:
    """``js_position`` and ``consumer_seq`` at once (the intake's hot path: one split)."""
    tokens = reply.split(b".")
    try:
        if len(tokens) == _ACK_TOKENS_V1 and tokens[1] == b"ACK":
            return int(tokens[5]), int(tokens[7]), int(tokens[8]), int(tokens[6])
        if len(tokens) >= _ACK_TOKENS_V2 and tokens[0] == b"$JS" and tokens[1] == b"ACK":
            return int(tokens[7]), int(tokens[9]), int(tokens[10]), int(tokens[8])
    except ValueError:
        pass
    raise DeliveryError(f"not a JetStream delivery: reply {reply[:120]!r}")


def consumer_seq(reply: bytes) -> int:
    """The consumer's own sequence of a delivery (from its ack subject), 0 if unreadable.
    Each delivery of a consumer has the next one: a jump means deliveries went elsewhere (a
    pull whose answer was lost) or the consumer was made anew (lost with its server)."""
    tokens = reply.split(b".")
    try:
        if len(tokens) == _ACK_TOKENS_V1 and tokens[1] == b"ACK":
            return int(tokens[6])
        if len(tokens) >= _ACK_TOKENS_V2 and tokens[0] == b"$JS" and tokens[1] == b"ACK":
            return int(tokens[8])
    except ValueError:
        pass
    return 0
